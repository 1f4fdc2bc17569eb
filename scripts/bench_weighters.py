"""Step time and peak memory of the weighting baselines, side by side on CPU.

Small CNN (3 conv + 2 linear), batch 128, clean batch 128, random 3x32x32
data, SGD. Methods, timed interleaved (one step of each in turn, the order
rotated every round, so machine load hits all alike), median over rounds
after warm-up, both wall-clock and process CPU time (all threads; on a
shared machine CPU time is the steadier measure of the work a step does):

    plain       a plain CE step through the trainer's ``train_step``
    low         LOW (lam 1, CE base) through ``train_step``
    l2rw        ``baselines.l2rw.l2rw_step``: clean backward + forward-mode training pass
    l2rw_ref    the published port's step: explicit look-ahead, second forward,
                backprop to eps, then a separate weighted training pass

Memory: each method runs alone in a fresh subprocess. After setup (imports,
model, data) the kernel's resident-set high-water mark is reset
(``/proc/self/clear_refs``, Linux); we report the peak RSS over the steps and
its growth over the RSS just before them: the step's own peak working set
(activations, autograd graphs, gradients, optimiser state, plus whatever the
allocator keeps), without the import-time peak of torch's shared libraries.

    python scripts/bench_weighters.py --steps 20 --threads 2 --output bench.json
"""
from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from baselines.l2rw import (l2rw_step, l2rw_weights, lookahead_scores, lookahead_step,  # noqa: E402
                            normalised_positive_part)
from baselines.low import LOWWeighter  # noqa: E402
from law.models import build_model  # noqa: E402
from law.trainer import train_step  # noqa: E402
from law.weighting import Progress, Weighter  # noqa: E402

METHODS = ("plain", "low", "l2rw", "l2rw_ref")
TARGETS = {"low": 1.03, "l2rw": 2.9}
"""Step-time ratios to plain that issue 5 asks for."""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], add_help=add_help)
    parser.add_argument("--steps", type=int, default=20, help="timed rounds (one step of every method each)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="device of the timed steps (cpu, cuda)")
    parser.add_argument("--batch-size", type=int, default=128, help="training and clean batch size")
    parser.add_argument("--memory-steps", type=int, default=3, help="steps per method in the memory subprocesses")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--output", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument("--memory-of", choices=METHODS, default=None, help=argparse.SUPPRESS)
    return parser


def make_batches(batch_size: int, seed: int = 0, device: str = "cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch_size, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (batch_size,), generator=g)
    xm = torch.randn(batch_size, 3, 32, 32, generator=g)
    ym = torch.randint(0, 10, (batch_size,), generator=g)
    return tuple(t.to(device) for t in (x, y, xm, ym))


def make_step(method: str, model: torch.nn.Module, batches) -> Callable[[], object]:
    """A closure doing one training step of ``method`` on ``model``."""
    x, y, xm, ym = batches
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    progress = Progress(epoch=0.0, total_epochs=1.0)
    if method == "plain":
        weighter = Weighter()
        return lambda: train_step(model, optimizer, weighter, x, y, progress)
    if method == "low":
        weighter = LOWWeighter(lam=1.0)
        return lambda: train_step(model, optimizer, weighter, x, y, progress)
    if method == "l2rw":
        return lambda: l2rw_step(model, optimizer, x, y, xm, ym)
    if method == "l2rw_ref":
        return lambda: lookahead_step(model, optimizer, x, y, xm, ym)
    raise ValueError(method)


def fresh_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("small_cnn", num_classes=10).train()


def time_steps(args) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-step (wall, CPU) seconds of every method, interleaved (synchronised on CUDA)."""
    device = torch.device(getattr(args, "device", "cpu"))
    batches = make_batches(args.batch_size, device=device)
    model = fresh_model().to(device)
    steps = {m: make_step(m, copy.deepcopy(model), batches) for m in METHODS}
    wall: dict[str, list[float]] = {m: [] for m in METHODS}
    cpu: dict[str, list[float]] = {m: [] for m in METHODS}
    for round_ in range(args.warmup + args.steps):
        order = METHODS[round_ % len(METHODS):] + METHODS[:round_ % len(METHODS)]
        for method in order:
            wall_start, cpu_start = time.perf_counter(), time.process_time()
            steps[method]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if round_ >= args.warmup:
                wall[method].append(time.perf_counter() - wall_start)
                cpu[method].append(time.process_time() - cpu_start)
    return wall, cpu


def proc_status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # reported in kB
    raise KeyError(key)


def measure_memory_here(args) -> dict:
    step = make_step(args.memory_of, fresh_model(), make_batches(args.batch_size))
    # Importing torch maps large shared libraries whose peak would hide the step's own.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")  # resets VmHWM to the current RSS
    before = proc_status_mb("VmRSS")
    for _ in range(args.memory_steps):
        step()
    peak = proc_status_mb("VmHWM")
    return {"peak_rss_mb": peak, "step_growth_mb": peak - before}


def measure_memory(args) -> dict[str, dict]:
    results = {}
    for method in METHODS:
        out = subprocess.run(
            [sys.executable, __file__, "--memory-of", method, "--threads", str(args.threads),
             "--batch-size", str(args.batch_size), "--memory-steps", str(args.memory_steps)],
            check=True, capture_output=True, text=True)
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def weights_agreement(batch_size: int) -> float:
    """Max |w_fast - w_lookahead| on one batch: the fast path is the same method."""
    model = fresh_model()
    x, y, xm, ym = make_batches(batch_size)
    fast = l2rw_weights(model, x, y, xm, ym)
    reference = normalised_positive_part(lookahead_scores(model, x, y, xm, ym).detach())
    return (fast - reference).abs().max().item()


def main(argv=None) -> dict:
    args = get_args_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(measure_memory_here(args)))
        return {}

    wall, cpu = time_steps(args)
    median_ms = {m: 1000 * statistics.median(t) for m, t in wall.items()}
    cpu_ms = {m: 1000 * statistics.median(t) for m, t in cpu.items()}
    ratio = {m: median_ms[m] / median_ms["plain"] for m in METHODS}
    cpu_ratio = {m: cpu_ms[m] / cpu_ms["plain"] for m in METHODS}
    memory = {} if args.no_memory else measure_memory(args)
    results = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "memory_of"},
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "torch": torch.__version__},
        "median_step_ms": median_ms,
        "ratio_to_plain": ratio,
        "median_step_cpu_ms": cpu_ms,
        "cpu_ratio_to_plain": cpu_ratio,
        "targets": TARGETS,
        "memory": memory,
        "l2rw_weights_max_abs_diff_vs_lookahead": weights_agreement(args.batch_size),
    }

    print(f"small_cnn, batch {args.batch_size}, clean batch {args.batch_size}, {args.threads} threads, "
          f"median of {args.steps} interleaved rounds after {args.warmup} warm-up")
    print(f"{'method':10s} {'wall ms':>8s} {'x plain':>8s} {'cpu ms':>8s} {'x plain':>8s} {'target':>7s} "
          f"{'peak RSS MB':>12s} {'step growth MB':>15s}")
    for m in METHODS:
        target = f"<={TARGETS[m]:.2f}" if m in TARGETS else ""
        mem = memory.get(m, {})
        print(f"{m:10s} {median_ms[m]:8.1f} {ratio[m]:8.2f} {cpu_ms[m]:8.1f} {cpu_ratio[m]:8.2f} {target:>7s} "
              f"{mem.get('peak_rss_mb', float('nan')):12.0f} {mem.get('step_growth_mb', float('nan')):15.0f}")
    print(f"fast vs look-ahead L2RW weights: max abs diff {results['l2rw_weights_max_abs_diff_vs_lookahead']:.2e}")
    if args.output:
        args.output.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
