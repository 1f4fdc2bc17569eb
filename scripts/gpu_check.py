#!/usr/bin/env python
"""GPU check: everything LAW runs on a GPU, in one short script, one line per check.

Checks, each PASS / FAIL / SKIP with its figures:

1. ``law train`` on the device (small CNN, a few epochs of the embedded data);
2. paired training of a CIFAR-size episode (32 px, batch 128), in fp32 and with
   bf16 autocast (``--amp``): a no-op policy keeps the two networks bit-identical;
3. a 2-worker search with 0.5 GPU per worker (fractional GPUs on one device);
4. one L2RW and one LOW step (finite losses, weights that sum as they should);
5. step-time ratios on the device: paired / plain (``bench_paired.py``), and
   LOW / plain, L2RW / plain (``bench_weighters.py``);
6. vectorised episodes (``--episodes-per-worker``): K CIFAR-size episodes at
   once as one stack of networks, a no-op policy's target bit-identical to its
   twin inside the stack, and episodes per hour of one worker at K = 1 (one by
   one) and K = 2, 4, 8.

On a machine without CUDA it runs checks 1, 4, 5 and 6 on the CPU (so CI keeps the
script working) and skips 2 and 3 with the reason. Exit status 1 if a check fails.

    python scripts/gpu_check.py                 # on a GPU machine: a few minutes
    python scripts/gpu_check.py --small         # seconds (what the tests run)
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from agents import DDPGConfig  # noqa: E402
from baselines.l2rw import l2rw_step  # noqa: E402
from baselines.low import LOWWeighter  # noqa: E402
from envs import EnvConfig, StageWeightingEnv  # noqa: E402
from law.data import DataConfig  # noqa: E402
from law.methods import MethodConfig  # noqa: E402
from law.models import build_model  # noqa: E402
from law.paired import run_in_lockstep  # noqa: E402
from law.search import SearchConfig, search  # noqa: E402
from law.train import RunConfig, train  # noqa: E402
from law.trainer import OptimConfig, train_step  # noqa: E402
from law.weighting import Progress  # noqa: E402

HERE = Path(__file__).resolve().parent


class Skip(Exception):
    """A check that cannot run here; the message says why."""


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], add_help=add_help)
    parser.add_argument("--small", action="store_true", help="microscopic sizes (seconds; for tests)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of the step-time ratios")
    return parser


def data_config(small: bool) -> DataConfig:
    return DataConfig(dataset="synthetic", noise="symmetric", noise_rate=0.4,
                      synthetic_train_size=400 if small else 5000, synthetic_test_size=100 if small else 1000,
                      val_size=100 if small else 1000, batch_size=32 if small else 128)


def check_train(device: torch.device, small: bool, out: Path) -> str:
    started = time.perf_counter()
    results = train(RunConfig(model="small_cnn", epochs=1 if small else 3, device=str(device), output_dir=str(out),
                              run_name="train", progress=False),
                    data_config(small), OptimConfig(lr=0.05), MethodConfig(method="ce"))
    accuracy = results["summary"]["last"]
    assert math.isfinite(accuracy), "test accuracy is not finite"
    return f"test acc {accuracy:.3f}, {time.perf_counter() - started:.1f} s"


def check_exact_pair(device: torch.device, small: bool) -> str:
    """A no-op policy over a CIFAR-size episode (32 px, batch 128, several stages) keeps the pair
    bit-identical, in fp32 and under bf16 autocast: the duplicate-network reward of doing nothing is 0."""
    if device.type != "cuda":
        raise Skip("the CPU case is pinned by the test suite")
    data = replace(data_config(small), synthetic_image_size=32)
    figures = []
    for amp in (False, True):
        env_cfg = EnvConfig(model="small_cnn", num_stages=4, warmup_stages=1, steps_per_stage=5 if small else 80,
                            lr_drop_stages=(3,), amp=amp)
        env = StageWeightingEnv(env_cfg, data, OptimConfig(lr=0.05), device=device)
        env.reset(seed=0)
        started = time.perf_counter()
        for stage in range(1, env_cfg.num_stages):
            _, reward, *_ = env.step(np.zeros(env_cfg.action_dim, np.float32))
            assert env.trainer.identical(), f"a no-op policy left the pair different at stage {stage} " \
                                            f"(amp={amp}, reward {reward})"
        torch.cuda.synchronize(device)
        figures.append(f"{'bf16' if amp else 'fp32'} {time.perf_counter() - started:.2f} s")
    steps = (env_cfg.num_stages - 1) * env.steps_per_stage
    return f"pair bit-identical after {steps} paired steps ({', '.join(figures)})"


def check_fractional_search(device: torch.device, small: bool, out: Path) -> str:
    if device.type != "cuda":
        raise Skip("fractional GPUs need a CUDA device")
    started = time.perf_counter()
    env_cfg = EnvConfig(model="small_cnn", num_stages=4, warmup_stages=1, steps_per_stage=5 if small else 40,
                        lr_drop_stages=(3,), features=("loss",), reward="change", reward_k=0.0)
    results = search(SearchConfig(episodes=4, workers=2, gpus_per_worker=0.5, eval_every=4, eval_seeds=1,
                                  output_dir=str(out), run_name="search", progress=False, min_buffer=2),
                     env_cfg, data_config(small), OptimConfig(lr=0.05), DDPGConfig(fdu_batch_size=8))
    seconds = time.perf_counter() - started
    assert len(results["episodes"]) == 4, "not every episode finished"
    return f"4 episodes on 2 workers x 0.5 GPU in {seconds:.1f} s ({4 / seconds * 3600:.0f} episodes/h)"


def check_weighters(device: torch.device, small: bool) -> str:
    torch.manual_seed(0)
    model = build_model("small_cnn", num_classes=10, device=device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(32, 3, 32, 32, device=device), torch.randint(0, 10, (32,), device=device)
    clean_x, clean_y = torch.randn(32, 3, 32, 32, device=device), torch.randint(0, 10, (32,), device=device)
    l2rw = l2rw_step(model, optimizer, x, y, clean_x, clean_y)
    low = train_step(model, optimizer, LOWWeighter(lam=1.0), x, y, Progress())
    assert torch.isfinite(l2rw).all() and bool((l2rw >= 0).all()), "L2RW weights are not finite and >= 0"
    assert torch.isfinite(low.loss), "the LOW step's loss is not finite"
    assert all(torch.isfinite(p).all() for p in model.parameters()), "a parameter is not finite"
    return (f"L2RW weights sum {float(l2rw.sum()):.3f} ({int((l2rw > 0).sum())} of 32 kept), "
            f"LOW loss {float(low.loss):.3f}, mean weight {float(low.weights.mean()):.3f}")


def check_ratios(device: torch.device, steps: int) -> str:
    bench_paired = _load("bench_paired")
    bench_weighters = _load("bench_weighters")
    paired = bench_paired.main(bench_paired.get_args_parser().parse_args(
        ["--device", str(device), "--steps", str(steps), "--threads", str(torch.get_num_threads())]))
    args = bench_weighters.get_args_parser().parse_args(["--device", str(device), "--steps", str(steps),
                                                         "--warmup", "2", "--no-memory"])
    wall, _ = bench_weighters.time_steps(args)
    plain = statistics.median(wall["plain"])
    low, l2rw = statistics.median(wall["low"]) / plain, statistics.median(wall["l2rw"]) / plain
    return (f"paired/plain {paired['ratio']:.2f}x ({paired['paired_ms']:.1f} vs {paired['plain_ms']:.1f} ms), "
            f"LOW/plain {low:.2f}x, L2RW/plain {l2rw:.2f}x (plain {1000 * plain:.1f} ms)")


def _episode(env: StageWeightingEnv, seed: int, action: np.ndarray):
    """One whole episode in generator form (what a worker's K run in lockstep); whether the pair
    is still bit-identical at its end."""
    yield from env.reset_requests(seed=seed)
    done = False
    while not done:
        _, _, done, _, _ = yield from env.step_requests(action)
    return env.trainer.identical()


def check_vectorised(device: torch.device, small: bool) -> str:
    data = replace(data_config(small), synthetic_image_size=32)
    env_cfg = EnvConfig(model="small_cnn", num_stages=4, warmup_stages=1, steps_per_stage=5 if small else 40,
                        lr_drop_stages=(3,))
    first = StageWeightingEnv(env_cfg, data, OptimConfig(lr=0.05), device=device)
    neutral = np.zeros(env_cfg.action_dim, np.float32)
    weighted = np.array([-0.5, 0.25, 0.0, 0.0, 0.0], np.float32)
    run_in_lockstep([_episode(first, 0, weighted)], stacked=True)  # untimed: kernels and caches warm up
    rates, envs = {}, [first]
    for k in (1, 2) if small else (1, 2, 4, 8):
        envs += [StageWeightingEnv(env_cfg, data, OptimConfig(lr=0.05), device=device, share_with=first)
                 for _ in range(k - len(envs))]
        started = time.perf_counter()
        identical = run_in_lockstep([_episode(env, j, neutral if j == 0 else weighted)
                                     for j, env in enumerate(envs)], stacked=k > 1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rates[k] = k / (time.perf_counter() - started) * 3600
        assert identical[0], f"a no-op policy left its pair different with K = {k}"
        assert not any(identical[1:]), "a weighted target stayed equal to its twin"
    best = max(rates, key=rates.get)
    return (", ".join(f"K={k} {rate:.0f}" for k, rate in rates.items()) + " episodes/h on one worker "
            f"({env_cfg.num_stages} stages of {first.steps_per_stage} steps); best K={best}, "
            f"{rates[best] / rates[1]:.2f}x K=1; no-op pair bit-identical in every stack")


def _load(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (no CUDA device: GPU-only checks skip)"
    print(f"gpu_check on {name}, torch {torch.__version__}")
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        checks = [("law train", lambda: check_train(device, args.small, out)),
                  ("exact pair, fp32 and bf16 (--amp)", lambda: check_exact_pair(device, args.small)),
                  ("search, 2 workers x 0.5 GPU", lambda: check_fractional_search(device, args.small, out)),
                  ("L2RW and LOW steps", lambda: check_weighters(device, args.small)),
                  ("step-time ratios", lambda: check_ratios(device, 3 if args.small else args.steps)),
                  ("vectorised episodes", lambda: check_vectorised(device, args.small))]
        lines = []
        for label, check in checks:
            try:
                lines.append(f"PASS  {label}: {check()}")
            except Skip as reason:
                lines.append(f"SKIP  {label}: {reason}")
            except Exception as error:  # report every check, whatever broke
                failed += 1
                traceback.print_exc()
                lines.append(f"FAIL  {label}: {type(error).__name__}: {error}")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
