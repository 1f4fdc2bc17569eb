"""The ``law`` command. Each sub-command's flags are generated from its config dataclasses."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from law.config import add_config_args, config_from_args
from law.errors import Interrupted, LawError


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from law.data import DataConfig
    from law.methods import MethodConfig
    from law.train import RunConfig
    from law.trainer import OptimConfig

    p = sub.add_parser("train", help="train one network with one weighting method",
                       description="Train one network with one weighting method on one data set. "
                                   "With no flags: the embedded synthetic demo set, to which the demo adds "
                                   "40%% symmetric label noise (offline). Your own data gets label noise or "
                                   "imbalance only when you ask for it (--noise, --imbalance).")
    for cls in (RunConfig, MethodConfig, DataConfig, OptimConfig):
        add_config_args(p, cls)
    p.set_defaults(handler=_run_train)


def train_data_defaults(args: argparse.Namespace):
    """`law train`'s data: the embedded demo gets 40 % symmetric noise, so the default run shows
    what weighting is for; any other data set is left as it is unless a flag asks for bias."""
    from law.data import DataConfig

    demo = getattr(args, "dataset", "synthetic") == "synthetic"
    return DataConfig(noise="symmetric", noise_rate=0.4) if demo else DataConfig()


def _run_train(args: argparse.Namespace) -> int:
    from law.data import DataConfig
    from law.methods import MethodConfig
    from law.train import RunConfig, train
    from law.trainer import OptimConfig

    configs = [config_from_args(RunConfig, args), config_from_args(DataConfig, args, train_data_defaults(args)),
               config_from_args(OptimConfig, args), config_from_args(MethodConfig, args)]
    results = train(*configs)
    s = results["summary"]
    print(f"test accuracy  last {s['last']['accuracy']:.4f}  best {s['best']['accuracy']:.4f} "
          f"(epoch {s['best']['epoch']})  balanced {s['last']['balanced_accuracy']:.4f}  "
          f"macro-F1 {s['last']['macro_f1']:.4f}  AUC {s['last']['mean_auc']:.4f}")
    print(f"results: {results['run_dir']}/results.json   tensorboard --logdir {results['run_dir']}")
    return 0


SEARCH_SECTIONS = ("SearchConfig", "EnvConfig", "DataConfig", "OptimConfig", "DDPGConfig")


def _search_classes() -> list:
    from agents import DDPGConfig
    from envs import EnvConfig
    from law.data import DataConfig
    from law.search import SearchConfig
    from law.trainer import OptimConfig

    return [SearchConfig, EnvConfig, DataConfig, OptimConfig, DDPGConfig]


def _search_parser(sub: argparse._SubParsersAction, preset_name: str) -> None:
    from law.presets import SEARCH_PRESETS, search_preset

    preset = search_preset(preset_name)
    p = sub.add_parser("search", help="search a weighting policy with DDPG over paired trainings",
                       description="Search a stage-wise weighting policy (LAW). With no flags: the "
                                   "offline 'quick' preset on the embedded data set, 2 workers.")
    p.add_argument("--preset", default=argparse.SUPPRESS, choices=list(SEARCH_PRESETS),
                   help=f"starting configuration; flags override it (default: {preset_name})")
    for cls in _search_classes():
        # One --seed (SearchConfig's) seeds the agent too.
        exclude = ("seed",) if cls.__name__ == "DDPGConfig" else ()
        add_config_args(p, cls, defaults=preset[cls.__name__], exclude=exclude)
    p.set_defaults(handler=_run_search)


def _run_search(args: argparse.Namespace) -> int:
    import dataclasses

    from law.presets import search_preset
    from law.search import OPERATIONAL, SearchFinished, resume_search, search

    if getattr(args, "resume", ""):
        given = [f.name for cls in _search_classes() for f in dataclasses.fields(cls)
                 if hasattr(args, f.name) and f.name != "resume"]
        refused = [name for name in given if name not in OPERATIONAL]
        if refused or hasattr(args, "preset"):
            flags = ", ".join("--" + name.replace("_", "-") for name in refused + (["preset"] if hasattr(
                args, "preset") else []))
            print(f"law search: error: resume: {flags} cannot change a search being resumed (it replays "
                  f"exactly what it started); only --{', --'.join(n.replace('_', '-') for n in OPERATIONAL)} "
                  "may. Start a new search to change the others.", file=sys.stderr)
            return 2
        try:
            results = resume_search(args.resume, **{name: getattr(args, name) for name in given})
        except SearchFinished as finished:
            print(f"law search: {finished}", file=sys.stderr)
            print((finished.run_dir / "summary.md").read_text().split("\n\n| episode")[0])
            return 0
    else:
        preset = search_preset(getattr(args, "preset", "quick"))
        configs = [config_from_args(cls, args, preset[cls.__name__]) for cls in _search_classes()]
        results = search(*configs)
    summary = Path(results["run_dir"]) / "summary.md"
    print(summary.read_text().split("\n\n| episode")[0])  # the verdict and the greedy evaluations
    print(f"\npolicy: {results['policy']}   episodes: {summary}   tensorboard --logdir {results['run_dir']}")
    print(f"next: law apply --policy {results['policy']} --seed 1   (trains on the searched task, "
          "next to its unweighted twin)")
    return 0


def _apply_parser(sub: argparse._SubParsersAction) -> None:
    from envs import EnvConfig
    from law.apply import ApplyConfig
    from law.data import DataConfig
    from law.trainer import OptimConfig

    p = sub.add_parser("apply", help="train a network with a learned policy (transfer)",
                       description="Train a new network with a searched policy acting greedily stage "
                                   "by stage, next to an unweighted reference of the same seed. With no "
                                   "other flags it trains on the task the policy was searched on (data, "
                                   "optimiser, stage schedule, all recorded in the policy file); every "
                                   "flag overrides one setting of that task.")
    add_config_args(p, ApplyConfig)
    add_config_args(p, EnvConfig, title="EnvConfig (default: the policy's own schedule)",
                    default_text="the policy's")
    add_config_args(p, DataConfig, title="DataConfig (default: the data the policy was searched on)",
                    default_text="the policy's")
    add_config_args(p, OptimConfig, title="OptimConfig (default: the optimiser the policy was searched with)",
                    default_text="the policy's")
    p.set_defaults(handler=_run_apply)


def _run_apply(args: argparse.Namespace) -> int:
    import dataclasses

    from envs import EnvConfig
    from law.apply import ApplyConfig, apply_policy
    from law.policy_file import load_policy, policy_env_config, policy_task
    from law.data import DataConfig
    from law.trainer import OptimConfig

    apply_cfg = config_from_args(ApplyConfig, args)
    apply_cfg.validate()
    policy = load_policy(apply_cfg.policy)
    env_overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(EnvConfig) if hasattr(args, f.name)}
    env_cfg = policy_env_config(policy, {k: tuple(v) if isinstance(v, list) else v
                                         for k, v in env_overrides.items()})
    # With no flags, train on the task the policy was searched on; every flag overrides.
    searched_data, searched_optim = policy_task(policy)
    data_cfg = config_from_args(DataConfig, args, searched_data)
    optim_cfg = config_from_args(OptimConfig, args, searched_optim)
    changed = [f.name for cls in (DataConfig, OptimConfig, EnvConfig) for f in dataclasses.fields(cls)
               if hasattr(args, f.name)]
    print(f"law apply: the task the policy was searched on ({data_cfg.dataset}, noise {data_cfg.noise} "
          f"{data_cfg.noise_rate:g}, imbalance {data_cfg.imbalance}, {env_cfg.model}, lr {optim_cfg.lr:g}, "
          f"{env_cfg.num_stages} stages), seed {apply_cfg.seed}"
          + (f"; changed by flags: {', '.join(changed)}" if changed else ""), file=sys.stderr)
    results = apply_policy(apply_cfg, env_cfg, data_cfg, optim_cfg, policy)
    target, reference = results["test"]["target"], results["test"]["reference"]
    print(f"test accuracy with policy   {target['accuracy']:.4f}  balanced {target['balanced_accuracy']:.4f}")
    if reference is not None:
        print(f"test accuracy unweighted    {reference['accuracy']:.4f}  balanced "
              f"{reference['balanced_accuracy']:.4f}")
        print(f"policy vs unweighted twin   {100 * (target['accuracy'] - reference['accuracy']):+.1f} test points")
    print(f"results: {results['run_dir']}/results.json")
    return 0


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the known network architectures")
    p.set_defaults(handler=lambda args: print(json.dumps(_model_names())) or 0)


def _policies_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("policies", help="list the policies shipped with LAW (use one with --policy NAME)",
                       description="Policies that come with LAW: the searched policies behind the README's "
                                   "measured tables. `law apply --policy NAME` and `law compare --policy NAME` "
                                   "use them without a search (give your data with --data-root).")
    p.set_defaults(handler=_run_policies)


def _run_policies(args: argparse.Namespace) -> int:
    from law.policy_file import shipped_policies

    shipped = shipped_policies()
    if not shipped:
        print("no policies are shipped with this installation")
        return 0
    for name, info in shipped.items():
        print(f"{name}\n  {info['description']}\n  searched: {info['searched']}\n  measured: {info['measured']}"
              f"\n  code {info['code_revision']}; use: law apply --policy {name} {info.get('use', '')}".rstrip())
    return 0


def _model_names() -> list[str]:
    from law.models import MODEL_NAMES

    return list(MODEL_NAMES)


def _requested_preset(argv: list[str]) -> str:
    """`--preset NAME` decides the defaults the other flags start from, so it is read first."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default="quick")
    return pre.parse_known_args(argv)[0].preset


def _compare_parser(sub: argparse._SubParsersAction) -> None:
    from law.compare import add_compare_parser

    add_compare_parser(sub)


# name -> (one-line help, what adds its flags). A command's modules (torch, Ray, ...) load
# only when that command runs or shows its help, so `law --help` starts in a blink.
COMMANDS = {
    "train": ("train one network with one weighting method", _train_parser),
    "search": ("search a weighting policy with DDPG over paired trainings", None),
    "apply": ("train a network with a learned policy (transfer)", _apply_parser),
    "compare": ("compare weighting methods on a benchmark suite (tables, plots)", _compare_parser),
    "policies": ("list the policies shipped with LAW", _policies_parser),
    "models": ("list the known network architectures", _models_parser),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser of `law`, with the flags of the command named in ``argv`` only."""
    parser = argparse.ArgumentParser(prog="law", description="Learning to Auto Weight: search and "
                                     "apply sample-weighting policies; run weighting baselines.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (help_text, add) in COMMANDS.items():
        if name != chosen:
            sub.add_parser(name, help=help_text)
        elif name == "search":
            _search_parser(sub, _requested_preset(argv))
        else:
            add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(argv).parse_args(argv)
    except LawError as e:  # an unknown --preset
        print(f"law: error: {e}", file=sys.stderr)
        return 2
    try:
        return args.handler(args)
    except Interrupted as interrupted:
        print(f"law {args.command}: {interrupted}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"law {args.command}: interrupted", file=sys.stderr)
        return 130
    except LawError as e:
        print(f"law {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
