"""Benchmark suites: the paper's experiments as complete, named configurations.

A *suite* is one experiment of the LAW paper (noisy CIFAR, imbalanced CIFAR,
noisy ImageNet). A *profile* is one budget for it:

* ``paper`` — the paper's settings (networks, data sizes, 20 stages, lr
  schedule, search budget), for GPU clusters;
* ``cpu`` — scaled so that a whole comparison (8 methods x 3 seeds plus a
  LAW search) finishes on a 2-core machine in two to three hours, while keeping
  the regime in which weighting matters (see ``law compare``'s docs);
* ``smoke`` — a microscopic budget that only proves the plumbing works
  (tests). Its numbers mean nothing.

Every method of a comparison trains on the same data with the same schedule.
The schedule is defined once, in stages (``StageSchedule``): LAW acts once per
stage, and the baselines get the very same learning-rate drops as a step
schedule in epochs (the drops fall on stage boundaries, so both are identical).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional

from agents import DDPGConfig
from law.data import DataConfig
from law.errors import ConfigError
from law.methods import MethodConfig
from law.schedule import StageSchedule
from law.search import SearchConfig
from law.trainer import OptimConfig

PROFILES = ("cpu", "paper", "smoke")


@dataclass(frozen=True)
class Profile:
    """One budget of a suite: everything a comparison needs, fully specified."""

    label: str
    """One line printed in every output (table, plots, results), so numbers are never mistaken for the paper's."""
    budget: str
    """What running the whole comparison takes (hardware, time)."""
    model: str
    """Network every method trains."""
    data: DataConfig
    """Data of the comparison (the data root is filled in at run time)."""
    optim: OptimConfig
    """Base optimiser (its lr is the rate before the first drop)."""
    schedule: StageSchedule
    """Training length and lr drops, shared by every method."""
    search: SearchConfig
    """Budget and resources of the LAW search (GPU shares apply where the Ray cluster has GPUs)."""
    method: MethodConfig = field(default_factory=MethodConfig)
    """Hyper-parameters of the baselines."""
    ddpg: DDPGConfig = field(default_factory=DDPGConfig)
    """The LAW agent."""
    search_model: str = ""
    """Network the policy is searched with ("" = model); transfer searches a small one."""
    search_data: Optional[DataConfig] = None
    """Data of the search (None = data); e.g. a per-class subset of ImageNet."""
    search_data_seed: int = 100
    """Seed of the search's data split and noise: a draw of its own, unlike any evaluation seed."""
    search_env: dict = field(default_factory=dict)
    """EnvConfig fields of the search beyond the schedule (reward shape, action range)."""
    law_reference: bool = True
    """LAW runs train an unweighted twin (same init, same batches) alongside: loss-gap plot, paired check."""
    distributed_workers: int = 0
    """> 0: train every network data-parallel with Ray Train on this many workers (one GPU each, if any)."""
    threads: int = 0
    """Torch threads per run (0 = torch default)."""


@dataclass(frozen=True)
class Suite:
    """One experiment of the paper, with its profiles."""

    name: str
    title: str
    """Human title, e.g. "Noisy CIFAR-10, 40 % symmetric label noise"."""
    paper: str
    """Where the paper reports it."""
    imbalanced: bool
    """Class-imbalanced suites also report balanced accuracy, macro F1 and mean AUC."""
    profiles: dict[str, Callable[[], Profile]]

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise ConfigError("profile", f"suite {self.name} has no profile '{name}'; "
                                         f"known: {', '.join(self.profiles)}")
        return self.profiles[name]()


# ----------------------------------------------------------------------------------------
# Shared pieces


def _smoke(data: DataConfig, **profile) -> Profile:
    """A microscopic budget on a tiny data set: proves the plumbing, measures nothing."""
    return Profile(
        label="smoke (microscopic test budget; the numbers mean nothing)",
        budget="seconds",
        model=profile.pop("model", "mlp"),
        data=data,
        optim=OptimConfig(lr=0.05),
        schedule=StageSchedule(num_stages=3, warmup_stages=1, epochs_per_stage=1, lr_drop_stages=(2,)),
        search=SearchConfig(episodes=1, workers=1, min_buffer=1, progress=False, seed_pool=1, eval_every=1,
                            eval_seeds=1),
        method=MethodConfig(meta_size=32, meta_batch_size=16),
        ddpg=DDPGConfig(fdu_epochs=1, fdu_batch_size=8),
        threads=1,
        **profile,
    )


def _smoke_data(**fields) -> DataConfig:
    base = dict(dataset="synthetic", synthetic_train_size=240, synthetic_test_size=64, synthetic_image_size=8,
                synthetic_classes=4, train_size=160, val_size=48, batch_size=32, eval_batch_size=256)
    return DataConfig(**(base | fields))


# ----------------------------------------------------------------------------------------
# Noisy CIFAR (LAW Tables 1-2)

NOISY = dict(noise="symmetric", noise_rate=0.4)

# The CPU regime: plain CE must reach the memorisation phase of the noisy labels for
# weighting to matter, at a cost that fits a comparison in about an hour on 2 cores
# (the calibration runs: docs/design.md, "The noisy CIFAR cpu profile").
EVAL_BATCH_CPU = 128
"""Evaluation batch on CPU (activations that fit the cache; docs/design.md)."""
CPU_NOISY_SCHEDULE = StageSchedule(num_stages=10, warmup_stages=2, epochs_per_stage=3, lr_drop_stages=(5,))
PAPER_CIFAR_SCHEDULE = StageSchedule(num_stages=20, warmup_stages=2, epochs_per_stage=10,
                                     lr_drop_stages=(10, 13, 16))


# CPU searches: training episodes cycle through 4 seeds (each twin trained once), and the
# greedy actor is judged on 4 other seeds every 16 episodes; the best one is kept. Plain
# DDPG (no pull towards the box centre). 64 episodes, because with 32 only some search
# seeds found a good policy on noisy CIFAR-10; 4 judging seeds rather than 2 every 8
# episodes (the same 16 greedy episodes), because keeping the best of 8 actors judged on
# 2 seeds kept lucky ones: see README, "Search quality".
CPU_SEARCH = SearchConfig(episodes=64, workers=2, cpus_per_worker=1.0, seed_pool=4, eval_every=16, eval_seeds=4)

# A small search budget explores few dimensions: theta on the features that carry the
# bias, plus b; and each stage is paid the change of the gap it made, so an episode's
# return is its final gap (why: docs/design.md, "Search settings of the CPU profiles").
CPU_NOISY_SEARCH_ENV = {"features": ("loss",), "reward": "change", "reward_k": 0.0}
# b centred on 0: a weight is at most 2 before the batch mean, so up-weighting a rare class means
# pulling the head far below 1, which the default b in [0, 4] (neutral b = 2) barely can
# (docs/design.md, "Search settings of the CPU profiles").
CPU_IMBALANCED_SEARCH_ENV = {"features": ("loss", "label"), "reward": "change", "reward_k": 0.0,
                             "bias_range": (-2.0, 2.0)}


def _noisy_cifar_cpu(dataset: str) -> Profile:
    classes = 100 if dataset == "cifar100" else 10
    return Profile(
        label="cpu (scaled for a 2-core CPU; not comparable with the paper's numbers)",
        budget=("about 1.3 h on 2 CPU cores (8 methods x 3 seeds: 45 min, measured before the channels-last "
                "layout; a 64-episode search: 30 min, measured)"
                if classes == 10 else "roughly 3 h on 2 CPU cores (2.5x the CIFAR-10 images; not measured)"),
        model="small_cnn",
        data=DataConfig(dataset=dataset, **NOISY, train_size=2000 if classes == 10 else 5000,
                        val_size=1000, test_size=2000, batch_size=128, eval_batch_size=EVAL_BATCH_CPU,
                        augment=False),
        optim=OptimConfig(lr=0.05, momentum=0.9, weight_decay=5e-4),
        schedule=CPU_NOISY_SCHEDULE,
        search=CPU_SEARCH,
        search_env=CPU_NOISY_SEARCH_ENV,
        method=MethodConfig(meta_size=500, meta_batch_size=100),
        threads=2,
    )


def _noisy_cifar_paper(dataset: str) -> Profile:
    return Profile(
        label="paper (LAW settings: ResNet-18, 20 stages x 10 epochs, 8 search workers)",
        budget="rough estimate: search ~180 GPU-hours (200 episodes, 8 workers on 4 GPUs: ~2 days); "
               "comparison ~35 GPU-hours (a ResNet-18 run ~1 GPU-hour; L2RW ~2.6x, LAW with twin ~2x)",
        model="resnet18",
        # The search uses a 20k-image subset (LAW); the comparison trains on all but validation.
        data=DataConfig(dataset=dataset, **NOISY, train_size=0, val_size=5000),
        search_data=DataConfig(dataset=dataset, **NOISY, train_size=20000, val_size=5000),
        optim=OptimConfig(lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True),
        schedule=PAPER_CIFAR_SCHEDULE,
        search=SearchConfig(episodes=200, workers=8, fdu_every=8, gpus_per_worker=0.5, seed_pool=8, eval_every=20,
                            eval_seeds=4),
        method=MethodConfig(meta_size=1000, meta_batch_size=100),
    )


# ----------------------------------------------------------------------------------------
# Imbalanced CIFAR (LAW Table 4: step profile; Table 5: long-tailed, ratio 100, ResNet-32)

STEP = dict(imbalance="step", step_minority_classes=2, step_keep_fraction=0.04)
LONGTAIL = dict(imbalance="longtail", imbalance_ratio=100.0)
PAPER_LT_SCHEDULE = StageSchedule(num_stages=20, warmup_stages=2, epochs_per_stage=10, lr_drop_stages=(16, 18))


def _imbalanced_cpu(dataset: str, profile: dict) -> Profile:
    return Profile(
        label="cpu (scaled for a 2-core CPU; not comparable with the paper's numbers)",
        budget=("about 2.5-3 h on 2 CPU cores (long tail, measured: the 21 baseline runs 53 min, the 64-episode "
                "search 66 min from priors beside other runs, the 3 LAW runs 10 min)"),
        model="small_cnn",
        # Imbalance keeps ~12k (longtail 100) or ~40k (step) CIFAR-10 images; a stratified
        # 3,000 of them keep the profile (smallest long-tail class ~10 images). Not calibrated
        # like the noisy profile: crop+flip kept, as class imbalance needs no memorisation phase.
        data=DataConfig(dataset=dataset, **profile, train_size=3000, val_size=1000, test_size=2000,
                        eval_batch_size=EVAL_BATCH_CPU),
        optim=OptimConfig(lr=0.05, momentum=0.9, weight_decay=5e-4),
        schedule=StageSchedule(num_stages=10, warmup_stages=2, epochs_per_stage=3, lr_drop_stages=(8,)),
        search=CPU_SEARCH,
        search_env=CPU_IMBALANCED_SEARCH_ENV,
        method=MethodConfig(meta_size=500, meta_batch_size=100),
        threads=2,
    )


def _imbalanced_paper(dataset: str, profile: dict) -> Profile:
    return Profile(
        label="paper (LAW settings: ResNet-32, 20 stages x 10 epochs, 8 search workers)",
        budget="rough estimate: search ~50 GPU-hours (200 episodes, 8 workers on 4 GPUs); comparison "
               "~10 GPU-hours (a ResNet-32 run 10-40 min; L2RW ~2.6x, LAW with twin ~2x)",
        model="resnet32",
        data=DataConfig(dataset=dataset, **profile, val_size=5000),
        optim=OptimConfig(lr=0.1, momentum=0.9, weight_decay=2e-4),
        schedule=PAPER_LT_SCHEDULE,
        search=SearchConfig(episodes=200, workers=8, fdu_every=8, gpus_per_worker=0.5, seed_pool=8, eval_every=20,
                            eval_seeds=4),
        method=MethodConfig(meta_size=1000, meta_batch_size=100),
    )


# ----------------------------------------------------------------------------------------
# Noisy ImageNet, ImageFolder layout (LAW Table 3): search small, transfer big


def _imagenet_cpu() -> Profile:
    data = DataConfig(dataset="imagefolder", **NOISY, in_memory="never", image_size=64, train_size=2000,
                      val_size=500, test_size=1000, batch_size=64, eval_batch_size=256, loader_workers=2)
    return Profile(
        label="cpu (64-px crops of a small ImageNet-layout tree on a 2-core CPU; not the paper's numbers)",
        budget="a few hours on 2 CPU cores for a 10-class tree; ImageNet itself needs GPUs",
        model="resnet34",
        search_model="resnet18",
        data=data,
        search_data=replace(data, train_size=1000),
        optim=OptimConfig(lr=0.05, momentum=0.9, weight_decay=1e-4),
        schedule=StageSchedule(num_stages=10, warmup_stages=2, epochs_per_stage=2, lr_drop_stages=(7,)),
        search=replace(CPU_SEARCH, episodes=8, eval_every=4, eval_seeds=1),
        method=MethodConfig(meta_size=250, meta_batch_size=50),
        threads=2,
    )


def _imagenet_paper() -> Profile:
    # LAW: the policy is searched with ResNet-18 on a 100k-image subset (100 per
    # class) and transferred to ResNet-50 trained on all of ImageNet. The schedule
    # is the usual 30/60/90 drops, over 20 stages of 5 epochs.
    data = DataConfig(dataset="imagefolder", **NOISY, in_memory="never", image_size=224, val_size=10000,
                      batch_size=64, eval_batch_size=256, loader_workers=8)
    return Profile(
        label="paper (LAW settings: search ResNet-18 on 100 img/class, transfer to ResNet-50, 8 GPUs)",
        budget="rough estimate: search ~800 GPU-hours (100 paired ResNet-18 episodes on 100k images); "
               "each ResNet-50 run ~8 GPUs x 1 day, 6 methods x seeds (use --seeds 0 for one table)",
        model="resnet50",
        search_model="resnet18",
        data=data,
        search_data=replace(data, train_size=100000),
        optim=OptimConfig(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
        schedule=StageSchedule(num_stages=20, warmup_stages=2, epochs_per_stage=5, lr_drop_stages=(6, 12, 18)),
        search=SearchConfig(episodes=100, workers=8, fdu_every=8, gpus_per_worker=1.0, seed_pool=8, eval_every=20,
                            eval_seeds=2),
        method=MethodConfig(meta_size=5000, meta_batch_size=64),
        distributed_workers=8,
    )


# CIFAR-10N: the noisy CIFAR-10 cpu/paper budgets with real human labels instead of synthetic
# symmetric noise ('worse': 40.2 % of the labels wrong, class-dependent, on hard images).
HUMAN = dict(noise="cifar10n", noise_label="worse")


def _cifar10n(profile: Profile) -> Profile:
    data = replace(profile.data, noise_rate=0.0, **HUMAN)
    return replace(profile, data=data, search_data=replace(profile.search_data, noise_rate=0.0, **HUMAN)
                   if profile.search_data else None)


SUITES: dict[str, Suite] = {
    s.name: s for s in (
        Suite("cifar10-noisy", "Noisy CIFAR-10, 40 % symmetric label noise", "LAW Table 1", False,
              {"cpu": lambda: _noisy_cifar_cpu("cifar10"), "paper": lambda: _noisy_cifar_paper("cifar10"),
               "smoke": lambda: _smoke(_smoke_data(**NOISY))}),
        Suite("cifar100-noisy", "Noisy CIFAR-100, 40 % symmetric label noise", "LAW Table 2", False,
              {"cpu": lambda: _noisy_cifar_cpu("cifar100"), "paper": lambda: _noisy_cifar_paper("cifar100"),
               "smoke": lambda: _smoke(_smoke_data(**NOISY))}),
        Suite("cifar10n", "CIFAR-10N, real human label noise (label set 'worse', 40 %)",
              "CIFAR-10N (Wei et al. 2022); not in the LAW paper", False,
              {"cpu": lambda: _cifar10n(_noisy_cifar_cpu("cifar10")),
               "paper": lambda: _cifar10n(_noisy_cifar_paper("cifar10")),
               "smoke": lambda: _smoke(_smoke_data(dataset="imagefolder", train_size=160, **HUMAN),
                                       model="mlp")}),
        Suite("cifar10-step", "Imbalanced CIFAR-10, step profile (2 minority classes at 4 %)",
              "LAW Table 4", True,
              {"cpu": lambda: _imbalanced_cpu("cifar10", STEP), "paper": lambda: _imbalanced_paper("cifar10", STEP),
               "smoke": lambda: _smoke(_smoke_data(imbalance="step", step_minority_classes=1,
                                                   step_keep_fraction=0.25, train_size=0))}),
        Suite("cifar100-step", "Imbalanced CIFAR-100, step profile (2 minority classes at 4 %)",
              "LAW Table 4", True,
              {"cpu": lambda: _imbalanced_cpu("cifar100", STEP), "paper": lambda: _imbalanced_paper("cifar100", STEP),
               "smoke": lambda: _smoke(_smoke_data(imbalance="step", step_minority_classes=1,
                                                   step_keep_fraction=0.25, train_size=0))}),
        Suite("cifar10-longtail", "Long-tailed CIFAR-10, imbalance ratio 100", "LAW Table 5", True,
              {"cpu": lambda: _imbalanced_cpu("cifar10", LONGTAIL),
               "paper": lambda: _imbalanced_paper("cifar10", LONGTAIL),
               "smoke": lambda: _smoke(_smoke_data(imbalance="longtail", imbalance_ratio=5.0, train_size=0))}),
        Suite("cifar100-longtail", "Long-tailed CIFAR-100, imbalance ratio 100", "LAW Table 5", True,
              {"cpu": lambda: _imbalanced_cpu("cifar100", LONGTAIL),
               "paper": lambda: _imbalanced_paper("cifar100", LONGTAIL),
               "smoke": lambda: _smoke(_smoke_data(imbalance="longtail", imbalance_ratio=5.0, train_size=0))}),
        Suite("imagenet-noisy", "Noisy ImageNet (ImageFolder layout), 40 % symmetric label noise, "
                                "policy transferred from ResNet-18", "LAW Table 3", False,
              {"cpu": _imagenet_cpu, "paper": _imagenet_paper,
               "smoke": lambda: _smoke(DataConfig(dataset="imagefolder", **NOISY, in_memory="never",
                                                  image_size=16, train_size=48, val_size=16, batch_size=8,
                                                  eval_batch_size=32, loader_workers=0),
                                       model="small_cnn", search_model="mlp", distributed_workers=2)}),
    )
}


def get_suite(name: str) -> Suite:
    if name not in SUITES:
        raise ConfigError("suite", f"unknown suite '{name}'; known: {', '.join(SUITES)}")
    return SUITES[name]


def resolve_data(data: DataConfig, data_root: str, noise_file: str = "") -> DataConfig:
    """The profile's data pointed at the user's folder.

    CIFAR suites read either torchvision's files (``cifar-10-batches-py/`` under
    the root) or an ImageFolder tree of the images (``train/<class>/``,
    ``test/<class>/``): the tree is recognised by its ``train/`` folder. Class
    order is alphabetical in a tree, which for CIFAR-10 is the canonical order.
    """
    if not data_root:
        if data.dataset == "synthetic":
            return data
        raise ConfigError("data_root", f"this suite reads {data.dataset} images: pass --data-root DIR, a "
                                       "folder with train/<class>/ and test/<class>/ (ImageFolder)"
                          + (" or torchvision's CIFAR files" if data.dataset.startswith("cifar") else ""))
    if data.noise == "cifar10n":
        if not noise_file:
            raise ConfigError("noise_file", "this suite trains on CIFAR-10N's human labels: pass --noise-file "
                                            "PATH/CIFAR-10_human.pt (published with CIFAR-10N, Wei et al. 2022)")
        data = replace(data, noise_file=str(Path(noise_file).expanduser()))
    root = Path(data_root).expanduser()
    if not root.is_dir():
        raise ConfigError("data_root", f"'{data_root}' is not a folder")
    is_tree = (root / "train").is_dir()
    if data.dataset == "imagefolder" and not is_tree:
        raise ConfigError("data_root", f"'{data_root}' has no train/ folder (ImageFolder layout: "
                                       "train/<class>/*.jpg and test/<class>/*.jpg or val/<class>/*.jpg)")
    if is_tree:
        return replace(data, dataset="imagefolder", data_root=str(root))
    if data.dataset == "synthetic":
        raise ConfigError("data_root", f"'{data_root}' has no train/ folder to read images from")
    return replace(data, data_root=str(root))
