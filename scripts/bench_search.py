"""Search throughput: episodes per hour with 1 and with N workers, with and without the twin cache.

Runs the `quick` search preset (embedded data, offline) several ways in one
process, on one local Ray, and prints the ratios:

* twin cache = episodes/hour when training episodes cycle through a pool of
  seeds (each seed's unweighted twin and warm-up trained once, then replayed)
  divided by episodes/hour with a new seed, and so a new twin, every episode;
* scaling = episodes/hour with N workers (1 CPU and 1 torch thread each)
  divided by episodes/hour with 1 worker (1 CPU, 1 thread);
* also 1 worker given all N CPUs (N threads), the alternative use of the cores;
* the full-data update's time as a fraction of the stage training time.

Every run ends with the same single greedy evaluation (2 episodes), counted in its time.

    python scripts/bench_search.py                 # on this machine: 2 workers
    python scripts/bench_search.py --episodes-per-worker 4 --output bench_search.json
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


def run(workers: int, cpus_per_worker: float, episodes: int, out_dir: str, seed_pool: int) -> dict:
    preset = search_preset("quick")
    search_cfg = dataclasses.replace(preset["SearchConfig"], workers=workers, cpus_per_worker=cpus_per_worker,
                                     episodes=episodes, output_dir=out_dir, progress=False, eval_every=episodes,
                                     seed_pool=seed_pool, run_name=f"w{workers}_c{cpus_per_worker:g}_p{seed_pool}")
    started = time.perf_counter()
    results = search(search_cfg, preset["EnvConfig"], preset["DataConfig"], preset["OptimConfig"],
                     preset["DDPGConfig"])
    seconds = time.perf_counter() - started
    return {"workers": workers, "cpus_per_worker": cpus_per_worker, "seed_pool": seed_pool,
            "episodes": episodes, "seconds": seconds, "episodes_per_hour": episodes / seconds * 3600,
            "fdu_fraction": results["fdu_fraction_of_training"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (= CPUs used)")
    parser.add_argument("--episodes-per-worker", type=int, default=4)
    parser.add_argument("--seed-pool", type=int, default=0, help="pool of the cached runs (0: the preset's)")
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the learner; workers set their own thread counts
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    n, per = args.workers, args.episodes_per_worker
    pool = args.seed_pool or search_preset("quick")["SearchConfig"].seed_pool
    with tempfile.TemporaryDirectory() as out:
        uncached = run(n, 1.0, per * n, out, seed_pool=0)
        parallel = run(n, 1.0, per * n, out, seed_pool=pool)
        single = run(1, 1.0, per, out, seed_pool=pool)
        single_all_cpus = run(1, float(n), per, out, seed_pool=pool)
    ray.shutdown()

    rows = [uncached, parallel, single, single_all_cpus]
    print(f"{'workers':>7} {'cpus/worker':>11} {'seed pool':>9} {'episodes':>8} {'seconds':>8} {'episodes/h':>10} "
          f"{'FDU/train':>9}")
    for r in rows:
        print(f"{r['workers']:>7} {r['cpus_per_worker']:>11g} {r['seed_pool'] or 'none':>9} {r['episodes']:>8} "
              f"{r['seconds']:>8.1f} {r['episodes_per_hour']:>10.1f} {r['fdu_fraction']:>9.2%}")
    cache = parallel["episodes_per_hour"] / uncached["episodes_per_hour"]
    scaling = parallel["episodes_per_hour"] / single["episodes_per_hour"]
    versus_threads = parallel["episodes_per_hour"] / single_all_cpus["episodes_per_hour"]
    print(f"twin cache: seed pool {pool} / a new seed every episode ({n} workers) = {cache:.2f}x")
    print(f"scaling: {n} workers / 1 worker (1 CPU each) = {scaling:.2f}x; "
          f"{n} workers x 1 CPU / 1 worker x {n} CPUs = {versus_threads:.2f}x")
    if args.output:
        atomic_write_json({"runs": rows, "twin_cache": cache, "scaling": scaling, "versus_threads": versus_threads,
                           "environment": environment_info()}, args.output)


if __name__ == "__main__":
    main()
