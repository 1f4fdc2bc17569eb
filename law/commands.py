"""The `law` commands. Each is a dataclass of config dataclasses; tyro makes its flags.

A flag is a config field (``--lr`` is ``OptimConfig.lr``; field names are unique
within a command), its help is the field's docstring, its default the field's
value in the command's starting configuration: the class defaults, a search
preset (``--preset``), or the task recorded in a policy file (``law apply``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, TypeVar

import tyro

from agents import DDPGConfig
from envs import EnvConfig
from law.apply import ApplyConfig, apply_policy
from law.bench.experiment import CompareConfig
from law.compare import compare
from law.data import DataConfig
from law.errors import ConfigError
from law.inspection import InspectConfig, inspect
from law.methods import MethodConfig
from law.models import MODEL_NAMES
from law.policy_file import load_policy, policy_env_config, policy_task, shipped_policies
from law.presets import search_preset
from law.sample_weights import FILENAME as SAMPLE_WEIGHTS
from law.search import OPERATIONAL, SearchConfig, SearchFinished, resume_search, search
from law.train import RunConfig, train
from law.trainer import OptimConfig

T = TypeVar("T")


def parse(command: type[T], argv: list[str], default: T, prog: str, description: str) -> T:
    """``command`` from ``argv``; flags not given keep their value in ``default``."""
    return tyro.cli(tyro.conf.OmitArgPrefixes[command], args=argv, default=default, prog=prog,
                    description=description)


ALIASES = {"data_path": "data_root", "search_workers": "workers"}


def flags_given(argv: list[str]) -> list[str]:
    """The config fields named on the command line (``--no-x`` names ``x``), in order."""
    names = []
    for token in argv:
        if token.startswith("--") and len(token) > 2:
            name = token[2:].split("=", 1)[0].replace("-", "_")
            name = ALIASES.get(name, name)
            names.append(name[3:] if name.startswith("no_") else name)
    return list(dict.fromkeys(names))


def peek(argv: list[str], flag: str, default: str) -> str:
    """The value of one flag, read before the command's defaults are known (they depend on it)."""
    reader = argparse.ArgumentParser(add_help=False)
    reader.add_argument(flag, default=default)
    return getattr(reader.parse_known_args(argv)[0], flag.lstrip("-").replace("-", "_"))


def print_sample_weights(run_dir: str) -> None:
    """Where ``--export-weights`` put the per-sample weights, and what reads them."""
    path = Path(run_dir) / SAMPLE_WEIGHTS
    if path.is_file():
        print(f"sample weights: {path}   suspected-noisy samples: law inspect {run_dir}")


# ------------------------------------------------------------------------------ law train


@dataclass
class Train:
    run: RunConfig = field(default_factory=RunConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


TRAIN_HELP = ("Train one network with one weighting method on one data set. With no flags: the embedded "
              "synthetic demo set, to which the demo adds 40% symmetric label noise (offline). Your own data "
              "gets label noise or imbalance only when you ask for it (--noise, --imbalance).")


def train_data_defaults(dataset: str) -> DataConfig:
    """`law train`'s data: the embedded demo gets 40 % symmetric noise, so the default run shows
    what weighting is for; any other data set is left as it is unless a flag asks for bias."""
    return DataConfig(noise="symmetric", noise_rate=0.4) if dataset == "synthetic" else DataConfig(dataset=dataset)


def run_train(argv: list[str]) -> int:
    default = Train(data=train_data_defaults(peek(argv, "--dataset", "synthetic")))
    cmd = parse(Train, argv, default, "law train", TRAIN_HELP)
    results = train(cmd.run, cmd.data, cmd.optim, cmd.method)
    s = results["summary"]
    print(f"test accuracy  last {s['last']:.4f}  best {s['best']:.4f} (epoch {s['best_epoch']})  "
          f"balanced {s['last_balanced_accuracy']:.4f}  macro-F1 {s['last_macro_f1']:.4f}  "
          f"AUC {s['last_mean_auc']:.4f}")
    print(f"results: {results['run_dir']}/results.json   tensorboard --logdir {results['run_dir']}")
    print_sample_weights(results["run_dir"])
    return 0


# ------------------------------------------------------------------------------ law search


@dataclass
class DDPGFlags(DDPGConfig):
    seed: tyro.conf.Suppress[int] = 0
    """One --seed (the search's) seeds the agent too."""


@dataclass
class Search:
    preset: str = "quick"
    """Starting configuration (quick, cifar10-noisy, cifar100-noisy); the other flags override it."""
    search: SearchConfig = field(default_factory=SearchConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ddpg: DDPGFlags = field(default_factory=DDPGFlags)


SEARCH_HELP = ("Search a stage-wise weighting policy (LAW). With no flags: the offline 'quick' preset on the "
               "embedded data set, 2 workers. --resume DIR continues a search exactly where it stopped.")


def run_search(argv: list[str]) -> int:
    name = peek(argv, "--preset", "quick")
    preset = search_preset(name)
    default = Search(name, preset["SearchConfig"], preset["EnvConfig"], preset["DataConfig"], preset["OptimConfig"],
                     DDPGFlags(**dataclasses.asdict(preset["DDPGConfig"])))
    cmd = parse(Search, argv, default, "law search", SEARCH_HELP)
    if cmd.search.resume:
        results = _resume(cmd, [flag for flag in flags_given(argv) if flag != "resume"])
        if results is None:
            return 0
    else:
        ddpg = DDPGConfig(**dataclasses.asdict(cmd.ddpg))
        results = search(cmd.search, cmd.env, cmd.data, cmd.optim, ddpg)
    summary = Path(results["run_dir"]) / "summary.md"
    print(summary.read_text().split("\n\n| episode")[0])  # the verdict and the greedy evaluations
    print(f"\npolicy: {results['policy']}   episodes: {summary}   tensorboard --logdir {results['run_dir']}")
    print(f"next: law apply --policy {results['policy']} --seed 1   (trains on the searched task, "
          "next to its unweighted twin)")
    return 0


def _resume(cmd: Search, given: list[str]) -> dict | None:
    """Continue ``cmd.search.resume``: only the operational flags may change (the rest would not
    replay what the search started); None when it had finished already."""
    refused = [name for name in given if name not in OPERATIONAL]
    if refused:
        flags = ", ".join("--" + name.replace("_", "-") for name in refused)
        allowed = ", --".join(name.replace("_", "-") for name in OPERATIONAL)
        raise ConfigError("resume", f"{flags} cannot change a search being resumed (it replays exactly what "
                                    f"it started); only --{allowed} may. Start a new search to change the others.")
    try:
        return resume_search(cmd.search.resume, **{name: getattr(cmd.search, name) for name in given})
    except SearchFinished as finished:
        print(f"law search: {finished}", file=sys.stderr)
        print((finished.run_dir / "summary.md").read_text().split("\n\n| episode")[0])
        return None


# ------------------------------------------------------------------------------ law apply


THE_POLICYS = "(default: the policy's; `law apply --policy P --help` shows them)"


@dataclass
class Apply:
    apply: ApplyConfig = field(default_factory=ApplyConfig)
    env: Annotated[EnvConfig, tyro.conf.arg(help=f"The stage schedule and reward {THE_POLICYS}.")] = \
        field(default_factory=EnvConfig)
    data: Annotated[DataConfig, tyro.conf.arg(help=f"The data the policy was searched on {THE_POLICYS}.")] = \
        field(default_factory=DataConfig)
    optim: Annotated[OptimConfig, tyro.conf.arg(help=f"The optimiser the policy was searched with "
                                                     f"{THE_POLICYS}.")] = field(default_factory=OptimConfig)


APPLY_HELP = ("Train a new network with a searched policy acting greedily stage by stage, next to an "
              "unweighted reference of the same seed. With no other flags it trains on the task the policy "
              "was searched on (data, optimiser, stage schedule, all recorded in the policy file); every flag "
              "overrides one setting of that task.")


def run_apply(argv: list[str]) -> int:
    name = peek(argv, "--policy", "")
    default, policy = Apply(), None
    if name:  # the policy's task is every other flag's default (and what --help shows)
        ApplyConfig(policy=name).validate()  # a clear error for a missing file or an unknown name
        policy = load_policy(name)
        data, optim = policy_task(policy)
        default = Apply(ApplyConfig(policy=name), policy_env_config(policy, {}), data, optim)
    cmd = parse(Apply, argv, default, "law apply", APPLY_HELP)
    cmd.apply.validate()
    if policy is None:
        policy = load_policy(cmd.apply.policy)
    own = {f.name for f in dataclasses.fields(ApplyConfig)}
    changed = [flag for flag in flags_given(argv) if flag not in own]
    data, env, optim = cmd.data, cmd.env, cmd.optim
    print(f"law apply: the task the policy was searched on ({data.dataset}, noise {data.noise} "
          f"{data.noise_rate:g}, imbalance {data.imbalance}, {env.model}, lr {optim.lr:g}, "
          f"{env.num_stages} stages), seed {cmd.apply.seed}"
          + (f"; changed by flags: {', '.join(changed)}" if changed else ""), file=sys.stderr)
    results = apply_policy(cmd.apply, env, data, optim, policy)
    target, reference = results["test"]["target"], results["test"]["reference"]
    print(f"test accuracy with policy   {target['accuracy']:.4f}  balanced {target['balanced_accuracy']:.4f}")
    if reference is not None:
        print(f"test accuracy unweighted    {reference['accuracy']:.4f}  balanced "
              f"{reference['balanced_accuracy']:.4f}")
        print(f"policy vs unweighted twin   {100 * (target['accuracy'] - reference['accuracy']):+.1f} test points")
    print(f"results: {results['run_dir']}/results.json")
    print_sample_weights(results["run_dir"])
    return 0


# ------------------------------------------------------------------------------ law compare


COMPARE_HELP = ("Train every method on identical data, schedule and seeds; LAW applies --policy or a policy "
                "searched first. Writes table.md, results.csv, results.json, plots/ and TensorBoard runs; "
                "re-running continues.")


def run_compare(argv: list[str], default: CompareConfig | None = None, prog: str = "law compare",
                description: str = COMPARE_HELP,
                finish: Callable[[CompareConfig], CompareConfig] = lambda cfg: cfg) -> int:
    """`law compare`, and the suite scripts: they start from their own ``default`` (a subclass
    with flags of its own) and ``finish`` turns it into the comparison to run."""
    default = default if default is not None else CompareConfig()
    results = compare(finish(parse(type(default), argv, default, prog, description)))
    print(results["table"])
    print(f"results: {results['out']}/table.md  results.csv  results.json   "
          f"tensorboard --logdir {results['out']}/runs")
    return 0


def as_compare(cfg: CompareConfig, **fields) -> CompareConfig:
    """A script's config (a CompareConfig with flags of its own) as the comparison it asks for."""
    own = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(CompareConfig)}
    return CompareConfig(**(own | fields))


# ------------------------------------------------------------------------------ law inspect


INSPECT_HELP = ("The training samples a run's weighting discounts most (suspects.csv), and, where the label truth "
                "is known (injected noise, CIFAR-10N), how well its weights detect mislabelled samples against the "
                "small-loss criterion. Give a run made with --export-weights, or a law compare folder.")


def run_inspect(argv: list[str]) -> int:
    inspect(parse(InspectConfig, argv, InspectConfig(), "law inspect", INSPECT_HELP))
    return 0


# ------------------------------------------------------------------------------ listings


def run_models(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="law models", description="The known network architectures.").parse_args(argv)
    print(json.dumps(list(MODEL_NAMES)))
    return 0


def run_policies(argv: list[str]) -> int:
    argparse.ArgumentParser(
        prog="law policies", description="Policies that come with LAW: the searched policies behind the README's "
        "measured tables. `law apply --policy NAME` and `law compare --policy NAME` use them without a search "
        "(give your data with --data-root).").parse_args(argv)
    shipped = shipped_policies()
    if not shipped:
        print("no policies are shipped with this installation")
        return 0
    for name, info in shipped.items():
        print(f"{name}\n  {info['description']}\n  searched: {info['searched']}\n  measured: {info['measured']}"
              f"\n  code {info['code_revision']}; use: law apply --policy {name} {info.get('use', '')}".rstrip())
    return 0


RUNNERS: dict[str, Callable[[list[str]], int]] = {
    "train": run_train, "search": run_search, "apply": run_apply, "compare": run_compare,
    "inspect": run_inspect, "policies": run_policies, "models": run_models,
}
