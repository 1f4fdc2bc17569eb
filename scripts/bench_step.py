"""What one SGD step of a search's networks costs, and two ways to make it cheaper.

1. Memory layout: one step (forward, backward, SGD with momentum) with the
   convolution weights in the standard (C, H, W) layout against channels-last,
   the layout ``build_model`` gives on the CPU.
2. Vectorised networks: K networks of one architecture trained one by one
   against one stack of them (``law.stacked``: ``torch.func.stack_module_state``
   + ``vmap`` over ``functional_call``), each network with its own batch, as a
   worker running K episodes at once trains them. Prints the time per network-step both ways, the speed-up
   (above 1: vectorising pays) and how far the batched networks' parameters are
   from the one-by-one ones after the timed steps (0: bit for bit).

Every variant runs interleaved with its baseline, step by step, in one process,
so a busy machine slows both alike; times are medians.

    python scripts/bench_step.py                          # small_cnn, 1 thread, K = 1 2 4 8
    python scripts/bench_step.py --model resnet20 --k 1 2
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from law.models import build_model  # noqa: E402
from law.stacked import StackedLearners  # noqa: E402
from law.stats import WeightStats  # noqa: E402
from law.trainer import Learner, OptimConfig, make_optimizer  # noqa: E402
from law.weighting import Progress, Weighter  # noqa: E402


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=add_help)
    parser.add_argument("--model", default="small_cnn", help="architecture (default: small_cnn)")
    parser.add_argument("--batch-size", type=int, default=128, help="batch size (default: 128)")
    parser.add_argument("--image-size", type=int, default=32, help="image side, 3 channels (default: 32)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, as a search worker (default: 1)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps of each kind (default: 6)")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 4, 8], help="networks per batched model")
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    return parser


def networks(args, count: int) -> list[nn.Module]:
    """``count`` freshly seeded networks (seeds 0..count-1), channels-last as the search builds them."""
    built = []
    for seed in range(count):
        torch.manual_seed(seed)
        built.append(build_model(args.model, 10, 3, args.image_size))
    return built


def batches(args, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    inputs = torch.randn(count, args.batch_size, 3, args.image_size, args.image_size, generator=generator)
    return inputs, torch.randint(0, 10, (count, args.batch_size), generator=generator)


def one_by_one(models: list[nn.Module]) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """A step of every network on its own batch, one after the other (what a worker does today)."""
    optimizers = [make_optimizer(model, OptimConfig()) for model in models]

    def step(inputs: torch.Tensor, targets: torch.Tensor) -> None:
        for model, optimizer, x, y in zip(models, optimizers, inputs, targets):
            loss = nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return step


def stacked(models: list[nn.Module]) -> tuple[StackedLearners, list[Learner]]:
    """Copies of ``models`` as one stack (``law.stacked``, what a worker running K episodes trains)."""
    copies = copy.deepcopy(models)
    learners = [Learner(model, make_optimizer(model, OptimConfig()), Weighter(), WeightStats(10))
                for model in copies]
    return StackedLearners(learners), learners


def distance(stack: StackedLearners, learners: list[Learner], models: list[nn.Module]) -> float:
    """Largest absolute difference of a stacked network's parameter or buffer from the one-by-one one's."""
    stack.write_back()
    worst = 0.0
    for learner, model in zip(learners, models):
        for value, expected in zip(learner.model.state_dict().values(), model.state_dict().values()):
            worst = max(worst, (value.double() - expected.double()).abs().max().item())
    return worst


def interleaved(first: Callable[[], None], second: Callable[[], None], steps: int) -> tuple[float, float]:
    """Median seconds of ``first`` and ``second``, run alternately after one warm-up each."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(steps):
        for run, record in zip((first, second), times):
            start = time.perf_counter()
            run()
            record.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def layout_figures(args) -> dict:
    channels_last = networks(args, 1)
    standard = copy.deepcopy(channels_last)
    standard[0].to(memory_format=torch.contiguous_format)
    inputs, targets = batches(args, 1)
    steps = [one_by_one(models) for models in (standard, channels_last)]
    seconds = interleaved(lambda: steps[0](inputs, targets), lambda: steps[1](inputs, targets), args.steps)
    return {"standard_ms": 1e3 * seconds[0], "channels_last_ms": 1e3 * seconds[1],
            "speed_up": seconds[0] / seconds[1]}


def vectorised_figures(args, k: int) -> dict:
    separate = networks(args, k)
    stack, learners = stacked(separate)
    inputs, targets = batches(args, k)
    step = one_by_one(separate)
    seconds = interleaved(lambda: step(inputs, targets), lambda: stack.step(inputs, targets, Progress()),
                          args.steps)
    return {"k": k, "one_by_one_ms": 1e3 * seconds[0] / k, "vectorised_ms": 1e3 * seconds[1] / k,
            "speed_up": seconds[0] / seconds[1], "max_difference": distance(stack, learners, separate),
            "steps_compared": args.steps + 1}


def main(argv: list[str] | None = None) -> dict:
    args = get_args_parser().parse_args(argv)
    if min(args.k) < 1 or args.steps < 1:
        raise SystemExit("--k and --steps must be >= 1")
    torch.set_num_threads(args.threads)
    print(f"{args.model}, batch {args.batch_size} of 3x{args.image_size}x{args.image_size}, {args.threads} "
          f"thread(s), median of {args.steps} steps, CPU\n")
    layout = layout_figures(args)
    print("| layout of the convolution weights | ms per step |\n|---|---:|")
    print(f"| standard (C, H, W) | {layout['standard_ms']:.1f} |")
    print(f"| channels-last (what `build_model` gives on CPU) | {layout['channels_last_ms']:.1f} |")
    print(f"\nchannels-last speed-up: {layout['speed_up']:.2f}x\n")
    print("| K networks | one by one (ms per network-step) | vectorised (ms per network-step) | speed-up | "
          "max parameter difference |\n|---:|---:|---:|---:|---:|")
    rows = []
    for k in args.k:
        row = vectorised_figures(args, k)
        rows.append(row)
        print(f"| {k} | {row['one_by_one_ms']:.1f} | {row['vectorised_ms']:.1f} | {row['speed_up']:.2f}x | "
              f"{row['max_difference']:.1e} after {row['steps_compared']} steps |")
    figures = {"model": args.model, "threads": args.threads, "batch_size": args.batch_size,
               "layout": layout, "vectorised": rows}
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
