"""A comparison resolved: its settings, the folder it lives in, and the settings lock."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated

import tyro

from law.data import DataConfig
from law.errors import ConfigError
from law.io import atomic_write_json, check_writable_dir
from law.methods import METHODS
from law.models import check_model
from law.policy_file import policy_path
from law.schedule import StageSchedule
from law.suites import PROFILES, Profile, Suite, get_suite, resolve_data

METHOD_ORDER = ("ce", "focal", "cb", "low", "l2rw", "spl", "ohem", "law")
DISPLAY = {"ce": "CE", "focal": "Focal", "cb": "CB", "low": "LOW", "l2rw": "L2RW", "spl": "SPL",
           "ohem": "OHEM", "law": "LAW", "law-twin": "CE (LAW's twin)"}
RESULTS = "results.json"
RUN_INFO = "compare_run.json"


@dataclass
class CompareConfig:
    """Which suite, budget, methods and seeds to compare, and where the results go."""

    suite: str = "cifar10-noisy"
    """Benchmark suite: cifar10-noisy, cifar100-noisy, cifar10-step, cifar100-step, cifar10-longtail,
    cifar100-longtail, imagenet-noisy."""
    profile: str = "cpu"
    """Budget: cpu (about two hours on 2 cores), paper (the paper's settings, GPUs), smoke (seconds; tests)."""
    methods: str = ",".join(METHOD_ORDER)
    """Comma-separated methods: ce, focal, cb, low, l2rw, spl, ohem, law."""
    seeds: str = "0,1,2"
    """Comma-separated seeds; each seed fixes data draw, noise, initialisation and batch order."""
    data_root: Annotated[str, tyro.conf.arg(aliases=("--data-path",))] = ""
    """Data folder: train/<class>/ and test/<class>/ images (ImageFolder), or torchvision's CIFAR files."""
    noise_file: str = ""
    """Suite cifar10n: the CIFAR-10N label file (CIFAR-10_human.pt)."""
    policy: str = ""
    """LAW policy file (or shipped policy name, see `law policies`) to apply; empty: search one first."""
    model: str = ""
    """Network every method trains (empty: the suite's); with a searched policy this is a transfer."""
    search_model: str = ""
    """Network the policy is searched with (empty: the suite's)."""
    episodes: int = 0
    """Search episodes (0: the suite's)."""
    workers: Annotated[int, tyro.conf.arg(aliases=("--search-workers",))] = 0
    """Search env workers (0: the suite's)."""
    address: str = ""
    """Ray cluster for the search and data-parallel training (host:port or 'auto'); empty: local."""
    device: str = "auto"
    """Training device of the runs: auto | cpu | cuda | cuda:N."""
    threads: int = 0
    """Torch threads per run (0: the suite's, else torch's default)."""
    jobs: int = 1
    """Runs trained at the same time, in separate processes (threads are split between them)."""
    train_workers: int = -1
    """Data-parallel Ray Train workers per run (-1: the suite's; 0: one process; ImageNet paper: 8, one per GPU)."""
    output_dir: str = "runs/compare"
    """Folder that receives the comparison folder."""
    name: str = ""
    """Comparison folder name (default: {suite}__{profile})."""
    export_weights: bool = False
    """Each run writes sample_weights.csv: every training sample's mean loss and weight per stage (`law inspect`
    reads it; LAW runs add the twin's loss). Runs finished before are not redone."""
    plots: bool = True
    """Write PNG plots (needs matplotlib)."""
    progress: bool = True
    """Show progress lines."""

    def validate(self) -> None:
        suite = get_suite(self.suite)
        if self.profile not in suite.profiles:
            raise ConfigError("profile", f"unknown profile '{self.profile}'; known: {', '.join(PROFILES)}")
        parse_methods(self.methods)
        parse_seeds(self.seeds)
        for name in ("model", "search_model"):
            value = getattr(self, name)
            if value:
                check_model(value, name)
        if self.policy:
            policy_path(self.policy)
        if self.train_workers < -1:
            raise ConfigError("train_workers", f"must be -1 (the suite's), 0 or more, got {self.train_workers}")
        for name in ("episodes", "workers", "threads"):
            if getattr(self, name) < 0:
                raise ConfigError(name, f"must be >= 0, got {getattr(self, name)}")
        if self.jobs < 1:
            raise ConfigError("jobs", f"must be >= 1, got {self.jobs}")
        check_writable_dir(self.output_dir, "output_dir")


def parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    known = set(METHODS) | {"law"}
    unknown = [m for m in methods if m not in known]
    if not methods or unknown:
        raise ConfigError("methods", f"unknown method(s) {unknown or '(none given)'}; "
                                     f"choose from {','.join(METHOD_ORDER)}")
    if len(set(methods)) != len(methods):
        raise ConfigError("methods", f"a method is listed twice: {text}")
    return methods


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as error:
        raise ConfigError("seeds", f"comma-separated integers, e.g. 0,1,2; got '{text}'") from error
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ConfigError("seeds", f"distinct non-negative integers, e.g. 0,1,2; got '{text}'")
    return seeds


@dataclass
class Experiment:
    """A comparison with every setting decided: what each of its runs trains on."""

    cfg: CompareConfig
    suite: Suite
    profile: Profile
    model: str
    search_model: str
    data: DataConfig
    search_data: DataConfig
    methods: list[str]
    seeds: list[int]
    out: Path

    @property
    def schedule(self) -> StageSchedule:
        return self.profile.schedule

    @property
    def threads(self) -> int:
        return self.cfg.threads or self.profile.threads

    @property
    def train_workers(self) -> int:
        """Data-parallel workers per run; 0 trains in this process."""
        return self.profile.distributed_workers if self.cfg.train_workers < 0 else self.cfg.train_workers

    def spec(self) -> dict:
        """What a re-run must share with the runs already in the folder."""
        p = self.profile
        return {
            "suite": self.suite.name, "profile": self.cfg.profile, "model": self.model,
            "data": asdict(self.data), "optim": asdict(p.optim), "schedule": asdict(p.schedule),
            "method": asdict(p.method), "law_reference": p.law_reference,
            "train_workers": self.train_workers,
            "law_policy": self._policy_spec(),
        }

    def _policy_spec(self):
        if self.cfg.policy:
            return str(policy_path(self.cfg.policy).resolve())
        p = self.profile
        return {"search_model": self.search_model, "search_data": asdict(self.search_data),
                "search_data_seed": p.search_data_seed, "search_env": p.search_env,
                "episodes": self.cfg.episodes or p.search.episodes, "ddpg": asdict(p.ddpg)}

    def run_dir(self, method: str, seed: int) -> Path:
        return self.out / "runs" / f"{method}__seed{seed}"


def build_experiment(cfg: CompareConfig) -> Experiment:
    cfg.validate()
    suite = get_suite(cfg.suite)
    profile = suite.profile(cfg.profile)
    data = resolve_data(profile.data, cfg.data_root, cfg.noise_file)
    search_data = resolve_data(profile.search_data or profile.data, cfg.data_root, cfg.noise_file)
    out = Path(cfg.output_dir) / (cfg.name or f"{suite.name}__{cfg.profile}")
    return Experiment(cfg, suite, profile, cfg.model or profile.model,
                      cfg.search_model or profile.search_model or cfg.model or profile.model,
                      data, search_data, parse_methods(cfg.methods), parse_seeds(cfg.seeds), out)


def check_spec(exp: Experiment) -> None:
    """Refuse to mix runs of different settings in one folder; record the settings."""
    path = exp.out / "compare.json"
    spec = json.loads(json.dumps(exp.spec(), default=str))
    if path.is_file():
        saved = json.loads(path.read_text())["spec"]
        changed = sorted(k for k in set(spec) | set(saved) if spec.get(k) != saved.get(k))
        if changed == ["law_policy"] and not _has_law_runs(exp):
            changed = []  # the policy only shapes LAW runs, and there are none yet
        if changed:
            raise ConfigError("name", f"{exp.out} holds a comparison made with other settings "
                                      f"({', '.join(changed)} differ); pass another --name or "
                                      "--output-dir, or delete that folder")
    atomic_write_json({"spec": spec, "config": asdict(exp.cfg)}, path)


def _has_law_runs(exp: Experiment) -> bool:
    """Whether anything in the folder already depends on the LAW policy."""
    return (exp.out / "search").exists() or any((exp.out / "runs").glob("law__seed*"))


def reported(exp: Experiment) -> tuple[list[str], list[int]]:
    """Methods and seeds of the report: those asked for now and every run the folder finished
    before (a re-run with fewer methods or seeds still reports the whole comparison)."""
    methods, seeds = set(exp.methods), set(exp.seeds)
    for results in (exp.out / "runs").glob(f"*__seed*/{RESULTS}"):
        method, _, seed = results.parent.name.rpartition("__seed")
        if method in METHOD_ORDER and seed.isdigit():
            methods.add(method)
            seeds.add(int(seed))
    return [m for m in METHOD_ORDER if m in methods], sorted(seeds)


def say(exp: Experiment, message: str) -> None:
    """A line of the comparison's progress (silent with --no-progress)."""
    if exp.cfg.progress:
        print(f"law compare: {message}", flush=True)
