#!/usr/bin/env python
"""Which samples L2RW keeps: its weights over a suite's training data at CE checkpoints.

L2RW (Ren et al. 2018) weights each sample of a batch by the positive part of the
alignment of its gradient with the gradient of one clean meta batch. This script
trains plain CE on a suite's data (one seed, the suite's optimiser at its first
learning rate) and, at the given epochs, computes L2RW's weights for one epoch of
training batches against meta batches of each given size, drawn as the method
draws them (from its meta set, the first ``meta_size`` clean validation images).
Per group of samples it prints the share weighted exactly 0 and the mean weight
(batch mean 1): clean / noisy labels where the suite has label noise, the head and
tail halves of the classes (by training count) and the 3 rarest classes where it
is imbalanced.

    python scripts/l2rw_weights.py --suite cifar10-longtail --profile cpu --data-root DIR
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from baselines.l2rw import l2rw_weights  # noqa: E402
from law.bench.experiment import CompareConfig, build_experiment  # noqa: E402
from law.data import load_data  # noqa: E402
from law.errors import LawError  # noqa: E402
from law.io import atomic_write_json  # noqa: E402
from law.models import build_model  # noqa: E402
from law.trainer import make_optimizer, train_step  # noqa: E402
from law.weighting import Progress, Weighter  # noqa: E402


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="cifar10-longtail")
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--data-root", "--data-path", dest="data_root", default="")
    parser.add_argument("--noise-file", default="", help="suite cifar10n: the CIFAR-10N label file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", default="0,3,12", help="CE epochs after which the weights are read")
    parser.add_argument("--meta-batch-sizes", default="", help="default: the suite's, and its whole meta set")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default="", help="also write the figures as JSON here")
    return parser


def sample_groups(bundle) -> dict[str, torch.Tensor]:
    """Boolean masks over the training split of the groups worth comparing."""
    train = bundle.train
    groups = {"all samples": torch.ones(len(train), dtype=torch.bool)}
    if train.noise_mask.any():
        groups["clean labels"], groups["noisy labels"] = ~train.noise_mask, train.noise_mask
    counts = bundle.class_counts
    if counts.max() > 2 * counts.min():
        order = torch.argsort(counts, descending=True, stable=True)
        half = len(order) // 2
        for name, classes in (("head half of classes", order[:half]), ("tail half of classes", order[half:]),
                              ("3 rarest classes", order[-3:])):
            groups[name] = torch.isin(train.labels, classes)
    return groups


def weight_profile(model, bundle, stream, meta, groups, batches: int) -> dict[str, dict[str, float]]:
    """Zero share and mean weight (batch mean 1) per group over ``batches`` training batches."""
    weights = torch.full((len(bundle.train),), float("nan"))
    seen = torch.zeros(len(bundle.train), dtype=torch.bool)
    zero, total = torch.zeros(len(bundle.train)), torch.zeros(len(bundle.train))
    for _ in range(batches):
        batch = next(stream)
        w = l2rw_weights(model, batch.inputs, batch.targets, *next(meta)) * len(batch.targets)
        weights[batch.indices] = w
        zero[batch.indices] += (w == 0).float()
        total[batch.indices] += 1
        seen[batch.indices] = True
    out = {}
    for name, mask in groups.items():
        mask = mask & seen
        out[name] = {"samples": int(mask.sum()), "zero_share": float(zero[mask].sum() / total[mask].sum()),
                     "mean_weight": float(weights[mask].mean())}
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        exp = build_experiment(CompareConfig(suite=args.suite, profile=args.profile, data_root=args.data_root,
                                             noise_file=args.noise_file, seeds=str(args.seed)))
        epochs = sorted(int(e) for e in args.epochs.split(","))
        bundle = load_data(exp.data, seed=args.seed)
    except (LawError, ValueError) as error:
        print(f"l2rw_weights: error: {error}", file=sys.stderr)
        return 2
    method = exp.profile.method
    sizes = [int(s) for s in args.meta_batch_sizes.split(",")] if args.meta_batch_sizes else \
        sorted({method.meta_batch_size, method.meta_size})
    print(bundle.describe(), f"\nL2RW meta set: the first {method.meta_size} clean validation images; "
                             f"meta batch sizes {sizes}", file=sys.stderr)
    groups = sample_groups(bundle)
    torch.manual_seed(args.seed)
    model = build_model(exp.model, bundle.num_classes, bundle.in_channels, bundle.image_size)
    optimizer = make_optimizer(model, exp.profile.optim)
    train_stream, progress, ce = bundle.train_stream(args.seed), Progress(), Weighter()
    steps_per_epoch = train_stream.steps_per_epoch
    figures = {}
    for epoch in epochs:
        while progress.step < epoch * steps_per_epoch:
            batch = next(train_stream)
            train_step(model, optimizer, ce, batch.inputs, batch.targets, progress)
            progress.step += 1
        model.train()  # L2RW runs in the training step: batch statistics, as the method does
        for size in sizes:
            meta = bundle.meta_stream(args.seed + 1, method.meta_size, size)
            probe = bundle.train_stream(args.seed + 1000 + epoch)  # its own batches: CE's stream is not touched
            figures[f"epoch {epoch}, meta batch {size}"] = weight_profile(model, bundle, probe, meta, groups,
                                                                          steps_per_epoch)
    print(f"\n{'':34s}" + "".join(f"{name:>24s}" for name in groups))
    for key, row in figures.items():
        print(f"{key:34s}" + "".join(f"{100 * g['zero_share']:9.0f}% zero, w {g['mean_weight']:4.2f}"
                                     for g in row.values()))
    if args.output:
        atomic_write_json({"suite": args.suite, "profile": args.profile, "seed": args.seed, "figures": figures},
                          Path(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
