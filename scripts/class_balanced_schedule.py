#!/usr/bin/env python
"""The hand-set yardstick of an imbalanced suite: LAW's weighting fitted to class-balanced weights.

A search on an imbalanced suite is worth something only if it beats what a user
could set by hand inside the same weighting function. This writes that schedule:
the ``(theta_label, b)`` of the suite's search box whose weights come closest,
in log scale over batches drawn from the search draw's class sizes, to the
class-balanced baseline's (``MethodConfig.cb_beta``), held at every stage
after the warm-up. It reads the class counts only: no training, no validation
or test score. Then run it like any policy:

    python scripts/class_balanced_schedule.py --suite cifar10-longtail --profile cpu --data-root DIR \\
        --out cb_schedule.pt
    law compare --suite cifar10-longtail --profile cpu --data-root DIR --methods law \\
        --policy cb_schedule.pt --name cifar10-longtail__cpu__cb_schedule
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import SchedulePolicy  # noqa: E402
from law.bench.experiment import CompareConfig, build_experiment  # noqa: E402
from law.bench.policy import search_configs  # noqa: E402
from law.config import to_dict  # noqa: E402
from law.data import load_data  # noqa: E402
from law.features import FEATURE_NAMES  # noqa: E402
from law.io import atomic_save, check_writable_dir  # noqa: E402
from law.policy_file import policy_file  # noqa: E402
from law.search.priors import constant_schedule, fit_to_class_balanced  # noqa: E402

LABEL = FEATURE_NAMES.index("label")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="cifar10-longtail")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--data-root", default="")
    parser.add_argument("--out", required=True, help="policy file to write")
    args = parser.parse_args(argv)
    check_writable_dir(Path(args.out).resolve().parent, "out")
    exp = build_experiment(CompareConfig(suite=args.suite, profile=args.profile, data_root=args.data_root,
                                         methods="law"))
    configs = search_configs(exp)
    env, data = configs[1], configs[2]
    counts = load_data(data, env.data_seed).class_counts
    action, error = fit_to_class_balanced(counts, env, exp.profile.method.cb_beta, data.batch_size)
    table = constant_schedule(env, action)
    theta = env.theta(action)
    atomic_save(policy_file(SchedulePolicy(table).state_dict(), env, to_dict(*configs),
                            selection={"hand_set": "class-balanced fit", "action": action.tolist(),
                                       "log_weight_rmse": error}), Path(args.out))
    print(f"class counts {counts.tolist()}; nearest to class-balanced (beta {exp.profile.method.cb_beta:g}): "
          f"theta_label {theta[LABEL]:+.2f}, b {theta[-1]:+.2f} (log-weight RMSE {error:.3f}) from stage "
          f"{env.warmup_stages} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
