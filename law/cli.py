"""The ``law`` command. Each sub-command's flags are generated from its config dataclasses."""
from __future__ import annotations

import argparse
import json
import sys

from law.config import add_config_args, config_from_args
from law.errors import LawError


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from law.data import DataConfig
    from law.methods import MethodConfig
    from law.train import RunConfig
    from law.trainer import OptimConfig

    p = sub.add_parser("train", help="train one network with one weighting method",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Train one network with one weighting method on one data set. "
                                   "With no flags: the embedded synthetic set with 40%% label noise, offline.")
    for cls in (RunConfig, MethodConfig, DataConfig, OptimConfig):
        add_config_args(p, cls, defaults=train_defaults().get(cls.__name__))
    p.set_defaults(handler=_run_train)


def train_defaults() -> dict:
    """`law train` with no flags: the embedded set with 40 % symmetric noise, so the
    default run shows what weighting is for."""
    from law.data import DataConfig

    return {"DataConfig": DataConfig(noise="symmetric", noise_rate=0.4)}


def _run_train(args: argparse.Namespace) -> int:
    from law.data import DataConfig
    from law.methods import MethodConfig
    from law.train import RunConfig, train
    from law.trainer import OptimConfig

    configs = [config_from_args(cls, args, train_defaults().get(cls.__name__))
               for cls in (RunConfig, DataConfig, OptimConfig, MethodConfig)]
    results = train(*configs)
    s = results["summary"]
    print(f"test accuracy  last {s['last']['accuracy']:.4f}  best {s['best']['accuracy']:.4f} "
          f"(epoch {s['best']['epoch']})  balanced {s['last']['balanced_accuracy']:.4f}  "
          f"macro-F1 {s['last']['macro_f1']:.4f}  AUC {s['last']['mean_auc']:.4f}")
    print(f"results: {results['run_dir']}/results.json   tensorboard --logdir {results['run_dir']}")
    return 0


def _models_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the known network architectures")
    p.set_defaults(handler=lambda args: print(json.dumps(_model_names())) or 0)


def _model_names() -> list[str]:
    from law.models import MODEL_NAMES

    return list(MODEL_NAMES)


COMMANDS = [_train_parser, _models_parser]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="law", description="Learning to Auto Weight: search and "
                                     "apply sample-weighting policies; run weighting baselines.")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except LawError as e:
        print(f"law {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"law {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
