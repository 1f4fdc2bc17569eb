"""Cost of paired training: one paired step (target + reference + features +
policy weights) against one plain single-network step, side by side.

Two networks cost 2x by construction; the target is at most 2.1x, i.e. the
LAW features, the tanh weights and the stage statistics add at most 5 % on
top. Both loops run in one process, interleaved step by step (paired, plain,
paired, ...), so a busy machine slows both alike; the ratio is of the medians.
The weighting overhead alone (features + weights of one batch, timed in
isolation) is printed as well, as a share of the plain step.

    python scripts/bench_paired.py                  # small_cnn, batch 128, 3x32x32, CPU, 2 threads
    python scripts/bench_paired.py --threads 1 --steps 60
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from law.data import DataConfig, load_data  # noqa: E402
from law.models import build_model  # noqa: E402
from law.paired import PairedTrainer  # noqa: E402
from law.policy import LAWPolicyWeighter  # noqa: E402
from law.stats import WeightStats  # noqa: E402
from law.trainer import DivergenceGuard, Learner, OptimConfig, make_optimizer, run_steps  # noqa: E402
from law.weighting import Progress, WeightInputs, Weighter  # noqa: E402


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=add_help)
    parser.add_argument("--model", default="small_cnn", help="architecture (default: small_cnn)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--image-size", type=int, default=32, help="image side, 3 channels (default: 32)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--steps", type=int, default=40, help="timed steps of each kind (default: 40)")
    parser.add_argument("--device", default="cpu", help="device (default: cpu)")
    return parser


class PlainLoop:
    """What ``law train`` does per step: one network, uniform weights, the same statistics."""

    def __init__(self, bundle, model_name: str, seed: int, device: torch.device):
        torch.manual_seed(seed)
        self.model = build_model(model_name, bundle.num_classes, bundle.in_channels, bundle.image_size,
                                 device)
        self.optimizer = make_optimizer(self.model, OptimConfig())
        self.stream = bundle.train_stream(seed)
        self.weighter = Weighter()
        self.noise_mask = bundle.train.noise_mask
        self.stats = WeightStats(bundle.num_classes, device, keep_weights=False)
        self.guard = DivergenceGuard(device)

    def train_steps(self, steps: int) -> None:
        learner = Learner(self.model, self.optimizer, self.weighter, self.stats)
        run_steps([learner], self.stream, steps, start_step=0, steps_per_epoch=self.stream.steps_per_epoch,
                  total_epochs=1.0, noise_mask=self.noise_mask, guard=self.guard)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = DataConfig(synthetic_train_size=4 * args.batch_size + 100, val_size=100, synthetic_test_size=100,
                      synthetic_image_size=args.image_size, batch_size=args.batch_size,
                      noise="symmetric", noise_rate=0.4)
    bundle = load_data(data, seed=0, device=device)
    paired = PairedTrainer(bundle, args.model, OptimConfig(), seed=0, device=device, total_epochs=1.0)
    plain = PlainLoop(bundle, args.model, seed=0, device=device)
    weighter = LAWPolicyWeighter(bundle.class_counts)
    weighter.set_action([-3.0, 0.5, 0.5, 0.5, -0.5])  # every feature in use

    paired.train_steps(2, weighter)  # warm caches and allocators, untimed
    plain.train_steps(2)
    paired_times, plain_times = [], []
    for _ in range(args.steps):
        paired_times.append(timed(lambda: paired.train_steps(1, weighter), device))
        plain_times.append(timed(lambda: plain.train_steps(1), device))
    paired.stage_summary("benchmark")
    weighting_ms = 1000 * weighting_seconds(paired, weighter, device)

    paired_ms = 1000 * statistics.median(paired_times)
    plain_ms = 1000 * statistics.median(plain_times)
    ratio = paired_ms / plain_ms
    print(f"{args.model}, batch {args.batch_size}, 3x{args.image_size}x{args.image_size}, {device}, "
          f"{args.threads} threads, medians of {args.steps} interleaved steps each")
    print(f"plain step       {plain_ms:8.2f} ms")
    print(f"paired step      {paired_ms:8.2f} ms")
    print(f"features+weights {weighting_ms:8.3f} ms  ({100 * weighting_ms / plain_ms:.2f} % of a plain step)")
    print(f"ratio            {ratio:8.3f}x  (target <= 2.1x; 2x is the second network)")
    return {"plain_ms": plain_ms, "paired_ms": paired_ms, "weighting_ms": weighting_ms, "ratio": ratio}


def weighting_seconds(paired: PairedTrainer, weighter: LAWPolicyWeighter, device: torch.device,
                      repeats: int = 200) -> float:
    """Seconds per batch of the LAW features and weights alone, on real logits."""
    batch = next(paired.stream)
    with torch.no_grad():
        logits = paired.target(batch.inputs)
    inputs = WeightInputs(logits, batch.targets, weighter.per_sample_loss(logits, batch.targets), Progress())
    weighter.weights(inputs)
    return timed(lambda: [weighter.weights(inputs) for _ in range(repeats)], device) / repeats


if __name__ == "__main__":
    main(get_args_parser().parse_args())
