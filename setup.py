from setuptools import find_packages, setup

setup(
    name="law",
    version="0.1.0",
    description="Learning to Auto Weight: RL search of sample-weighting policies, "
                "with weighting baselines in the same harness",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["law", "law.*", "envs", "envs.*", "agents", "agents.*",
                                    "baselines", "baselines.*"]),
    package_data={"law": ["policies/*.pt", "policies/index.json"]},
    install_requires=[
        "torch>=2.4",
        "torchvision>=0.19",
        "ray[default,train]>=2.9",
        "numpy>=1.24",
        "tensorboard>=2.14",
        "gymnasium>=1.0",
        "tqdm>=4.60",
        "tyro>=1.0",
    ],
    extras_require={
        "test": ["pytest>=7", "scikit-learn>=1.3"],
        "plots": ["matplotlib>=3.7"],
    },
    entry_points={"console_scripts": ["law=law.cli:main"]},
)
