"""Search throughput: episodes per hour with 1 and with N workers, and FDU cost.

Runs the `quick` search preset (embedded data, offline) several ways in one
process, on one local Ray, and prints the ratios:

* scaling = episodes/hour with N workers (1 CPU and 1 torch thread each)
  divided by episodes/hour with 1 worker (1 CPU, 1 thread);
* also 1 worker given all N CPUs (N threads), the alternative use of the cores;
* the full-data update's time as a fraction of the stage training time.

    python scripts/bench_search.py                 # 2 workers vs 1 on this machine
    python scripts/bench_search.py --episodes-per-worker 3 --output bench_search.json
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

import ray
import torch

from law.io import atomic_write_json, environment_info
from law.presets import search_preset
from law.search import search


def run(workers: int, cpus_per_worker: float, episodes: int, out_dir: str) -> dict:
    preset = search_preset("quick")
    search_cfg = dataclasses.replace(preset["SearchConfig"], workers=workers, cpus_per_worker=cpus_per_worker,
                                     episodes=episodes, output_dir=out_dir, progress=False,
                                     run_name=f"w{workers}_c{cpus_per_worker:g}")
    started = time.perf_counter()
    results = search(search_cfg, preset["EnvConfig"], preset["DataConfig"], preset["OptimConfig"],
                     preset["DDPGConfig"])
    seconds = time.perf_counter() - started
    return {"workers": workers, "cpus_per_worker": cpus_per_worker, "episodes": episodes,
            "seconds": seconds, "episodes_per_hour": episodes / seconds * 3600,
            "fdu_fraction": results["fdu_fraction_of_training"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (= CPUs used)")
    parser.add_argument("--episodes-per-worker", type=int, default=2)
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the learner; workers set their own thread counts
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    n, per = args.workers, args.episodes_per_worker
    with tempfile.TemporaryDirectory() as out:
        single = run(1, 1.0, per, out)
        single_all_cpus = run(1, float(n), per, out)
        parallel = run(n, 1.0, per * n, out)
    ray.shutdown()

    rows = [single, single_all_cpus, parallel]
    print(f"{'workers':>7} {'cpus/worker':>11} {'episodes':>8} {'seconds':>8} {'episodes/h':>10} {'FDU/train':>9}")
    for r in rows:
        print(f"{r['workers']:>7} {r['cpus_per_worker']:>11g} {r['episodes']:>8} {r['seconds']:>8.1f} "
              f"{r['episodes_per_hour']:>10.1f} {r['fdu_fraction']:>9.2%}")
    scaling = parallel["episodes_per_hour"] / single["episodes_per_hour"]
    versus_threads = parallel["episodes_per_hour"] / single_all_cpus["episodes_per_hour"]
    print(f"scaling: {n} workers / 1 worker (1 CPU each) = {scaling:.2f}x; "
          f"{n} workers x 1 CPU / 1 worker x {n} CPUs = {versus_threads:.2f}x")
    if args.output:
        atomic_write_json({"runs": rows, "scaling": scaling, "versus_threads": versus_threads,
                           "environment": environment_info()}, args.output)


if __name__ == "__main__":
    main()
