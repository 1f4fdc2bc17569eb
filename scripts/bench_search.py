"""Search cost: where an episode's time goes, episodes per hour with 1 and N workers, the twin cache.

Runs the `quick` search preset (embedded data, offline) on one local Ray, with
every process timing its phases (``law.timing``), and prints:

* the breakdown of the N-worker search: SGD of the target, of the twin (when
  not cached) and of the warm-up, features and weights, validation and test
  evaluations, data loading, the workers' other work, Ray transfer and
  scheduling, workers idle (no episode ready for them), the learner's FDU updates
  and checkpoints (which run beside the workers); in total and per episode
  (training and greedy episodes);
* twin cache = episodes/hour when training episodes cycle through a pool of
  seeds divided by episodes/hour with a new seed (a new twin) every episode;
* scaling = episodes/hour with N workers (1 CPU each) over 1 worker, and over
  1 worker given all N CPUs.

With ``--cost-ratio`` it runs only the N-worker search (the preset's 60
episodes unless ``--episodes``) and the plain training run it is measured
against, ``law train``'s loop on the same task and seed, timed in the same
process, and ends with

    search wall time / (episodes x one plain training run / workers): R.RRx

With ``--vectorised K ...`` it runs the N-worker search once per K, each worker
running K episodes at once as one stack of networks (``--episodes-per-worker``
of ``law search``; K = 1 trains them one by one), and prints episodes per hour
at each K against K = 1.

    python scripts/bench_search.py                     # on this machine: 2 workers
    python scripts/bench_search.py --cost-ratio
    python scripts/bench_search.py --vectorised 1 2 4 8
"""
from __future__ import annotations

import os

os.environ["LAW_PHASE_TIMES"] = "1"  # before law is imported: every process of the run times its phases

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402

from law.io import atomic_write_json, environment_info  # noqa: E402
from law.methods import MethodConfig  # noqa: E402
from law.presets import search_preset  # noqa: E402
from law.search import search  # noqa: E402
from law.train import RunConfig, train  # noqa: E402

WORKER_PHASES = [  # (row, phase of law.timing); nested phases are subtracted below
    ("SGD target, acting stages (features and weights excluded)", "sgd target"),
    ("features and weights (LAW's policy)", "features and weights"),
    ("SGD twin (episodes that train it; the others replay the cache)", "sgd twin"),
    ("SGD warm-up (target alone, copied into the twin)", "sgd warm-up"),
    ("SGD of stacked networks (K > 1: targets, twins, warm-ups; features and weights excluded)", "sgd stacked"),
    ("validation evaluations", "val evaluation"),
    ("test evaluations (a search needs none)", "test evaluation"),
    ("data loading (batches, augmentation)", "data"),
]


def run(workers: int, cpus_per_worker: float, episodes: int, out_dir: str, seed_pool: int, in_flight: int = 0,
        priors: bool = True, at_once: int = 1) -> dict:
    preset = search_preset("quick")
    search_cfg = dataclasses.replace(preset["SearchConfig"], workers=workers, cpus_per_worker=cpus_per_worker,
                                     episodes=episodes, output_dir=out_dir, progress=False,
                                     eval_every=min(episodes, preset["SearchConfig"].eval_every),
                                     seed_pool=seed_pool, in_flight=in_flight, priors=priors,
                                     episodes_per_worker=at_once,
                                     run_name=f"w{workers}_c{cpus_per_worker:g}_p{seed_pool}_e{episodes}_k{at_once}")
    started = time.perf_counter()
    results = search(search_cfg, preset["EnvConfig"], preset["DataConfig"], preset["OptimConfig"],
                     preset["DDPGConfig"])
    seconds = time.perf_counter() - started
    greedy = ((len(results["evaluations"]) + len(results["priors"])) * len(results["evaluation_seeds"])
              + len(results["finalists"]) * len(results["final_seeds"]))
    return {"workers": workers, "cpus_per_worker": cpus_per_worker, "seed_pool": seed_pool, "at_once": at_once,
            "episodes": episodes, "greedy_episodes": greedy, "calls": episodes + greedy + results["redone_episodes"],
            "seconds": seconds, "search_seconds": results["search_seconds"],
            "episodes_per_hour": episodes / seconds * 3600,
            "fdu_fraction": results["fdu_seconds"] / results["search_seconds"],
            "best_val_gap": results["best"]["val_gap"], "phase_times": results["phase_times"]}


def ping_seconds(calls: int = 20) -> float:
    """One round trip of a no-op actor call: what Ray adds to every call of a round."""
    probe = ray.remote(num_cpus=0)(_Probe).remote()
    ray.get(probe.ping.remote())
    started = time.perf_counter()
    for _ in range(calls):
        ray.get(probe.ping.remote())
    seconds = (time.perf_counter() - started) / calls
    ray.kill(probe)
    return seconds


class _Probe:
    def ping(self) -> None:
        return None


def breakdown(result: dict, ping: float) -> list[tuple[str, float]]:
    """(row, seconds) of one search, from its processes' phase totals.

    The workers' rows add up to workers x the search loop's wall time; the learner's
    FDU updates and checkpoints run beside them (the workers do not wait for them).
    """
    learner = result["phase_times"]["learner"]
    workers = result["phase_times"]["workers"]
    seconds = lambda phases, name: phases.get(name, {}).get("seconds", 0.0)
    total = lambda name: sum(seconds(w, name) for w in workers)
    rows = []
    # The policy's features and weights are timed inside the target's SGD, or the stack's.
    holder = "sgd stacked" if total("sgd stacked") else "sgd target"
    for label, name in WORKER_PHASES:
        value = total(name) - (total("features and weights") if name == holder else 0.0)
        rows.append((label, value))
    busy = total("worker call")
    rows.append(("workers' other work (networks set up, statistics, stage sync)",
                 busy - sum(total(name) for _, name in WORKER_PHASES if name != "features and weights")))
    slot_seconds = result["workers"] * result["search_seconds"]
    transfer = min(result["calls"] * ping, max(slot_seconds - busy, 0.0))
    rows.append(("Ray transfer and scheduling (episodes x a no-op call)", transfer))
    rows.append(("workers idle (no episode to run: the in-flight limit, the last ones)",
                 slot_seconds - busy - transfer))
    rows.append(("learner: FDU updates (beside the workers)", seconds(learner, "fdu")))
    rows.append(("learner: checkpoints and policy files (beside the workers)", seconds(learner, "checkpoint")))
    rows.append(("learner: start-up, logging, final files (wall time outside the loop)",
                 result["seconds"] - result["search_seconds"]))
    return rows


def print_breakdown(result: dict, ping: float) -> None:
    episodes = result["episodes"] + result["greedy_episodes"]
    rows = breakdown(result, ping)
    slot_total = result["workers"] * result["search_seconds"]
    print(f"\nwhere the time goes: {result['workers']} workers x {result['search_seconds']:.1f} s of search "
          f"loop = {slot_total:.1f} "
          f"worker-seconds; {result['episodes']} training + {result['greedy_episodes']} greedy episodes")
    print(f"{'phase':<66} {'total s':>8} {'/episode':>9} {'share':>6}")
    for label, value in rows:
        share = value / slot_total if not label.startswith("learner") else value / result["seconds"]
        print(f"{label:<66} {value:>8.1f} {value / episodes:>9.2f} {share:>6.1%}")
    print("(share: of worker-seconds for the workers' rows, of the search's wall time for the learner's)")


def plain_training_seconds(seed: int = 0, runs: int = 3) -> list[float]:
    """`law train`'s loop on the quick preset's task (same data, network, optimiser, epochs, seed),
    ``runs`` times: one 2-second run varies by a quarter from run to run."""
    preset = search_preset("quick")
    env, data = preset["EnvConfig"], preset["DataConfig"]
    epochs = round(env.num_stages * env.epochs_per_stage)
    times = []
    with tempfile.TemporaryDirectory() as out:
        for n in range(runs):
            run_cfg = RunConfig(model=env.model, epochs=epochs, seed=seed, output_dir=out, run_name=f"plain{n}",
                                progress=False, threads=1)
            started = time.perf_counter()
            train(run_cfg, data, preset["OptimConfig"], MethodConfig(method="ce"))
            times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (= CPUs used)")
    parser.add_argument("--episodes-per-worker", type=int, default=4)
    parser.add_argument("--seed-pool", type=int, default=0, help="pool of the cached runs (0: the preset's)")
    parser.add_argument("--cost-ratio", action="store_true",
                        help="only the N-worker search and the plain run it costs against")
    parser.add_argument("--episodes", type=int, default=0, help="--cost-ratio: episodes (0: the preset's)")
    parser.add_argument("--in-flight", type=int, default=0, help="--cost-ratio: episodes in flight (0: workers + 1)")
    parser.add_argument("--no-priors", dest="priors", action="store_false",
                        help="--cost-ratio: without judging the priors first (the paper's search)")
    parser.add_argument("--vectorised", type=int, nargs="+", default=[], metavar="K",
                        help="only the N-worker search, once per K episodes run at once by each worker")
    parser.add_argument("--output", default="", help="write the figures as JSON here")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the learner; workers set their own thread counts
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"LAW_PHASE_TIMES": "1"}})
    n, per = args.workers, args.episodes_per_worker
    pool = args.seed_pool or search_preset("quick")["SearchConfig"].seed_pool
    ping = ping_seconds()
    figures: dict = {"ping_seconds": ping, "environment": environment_info()}
    with tempfile.TemporaryDirectory() as out:
        if args.vectorised:
            episodes = args.episodes or search_preset("quick")["SearchConfig"].episodes
            rows = [run(n, 1.0, episodes, out, seed_pool=pool, at_once=k) for k in args.vectorised]
            ray.shutdown()
            print(f"quick preset, {n} workers x 1 CPU, {episodes} training episodes; K episodes per worker at once")
            print(f"{'K':>3} {'seconds':>8} {'episodes/h':>10} {'vs K=1':>7} {'stacked SGD share':>17} "
                  f"{'best val gap':>12}")
            base = next((r for r in rows if r["at_once"] == 1), rows[0])
            for r in rows:
                stacked = sum(w.get("sgd stacked", {}).get("seconds", 0.0) for w in r["phase_times"]["workers"])
                print(f"{r['at_once']:>3} {r['seconds']:>8.1f} {r['episodes_per_hour']:>10.1f} "
                      f"{r['episodes_per_hour'] / base['episodes_per_hour']:>6.2f}x "
                      f"{stacked / (n * r['search_seconds']):>17.1%} {100 * r['best_val_gap']:>+12.1f}")
            figures |= {"vectorised": rows}
        elif args.cost_ratio:
            episodes = args.episodes or search_preset("quick")["SearchConfig"].episodes
            # Plain runs before and after the search, so that a machine whose speed drifts over the
            # minutes of the search weighs on both sides of the ratio alike.
            plain_times = plain_training_seconds()
            parallel = run(n, 1.0, episodes, out, seed_pool=pool, in_flight=args.in_flight, priors=args.priors)
            ray.shutdown()
            plain_times += plain_training_seconds()
            plain = float(np.median(plain_times))
            print_breakdown(parallel, ping)
            ratio = parallel["seconds"] / (episodes * plain / n)
            print(f"\none plain training run (law train's loop, same task and seed, 1 thread; median of 3 "
                  f"before and 3 after the search: {', '.join(f'{t:.2f}' for t in plain_times)}): {plain:.2f} s")
            print(f"search wall time / (episodes x one plain training run / workers): {ratio:.2f}x")
            figures |= {"search": parallel, "plain_seconds": plain, "plain_runs": plain_times, "cost_ratio": ratio}
        else:
            uncached = run(n, 1.0, per * n, out, seed_pool=0)
            parallel = run(n, 1.0, per * n, out, seed_pool=pool)
            single = run(1, 1.0, per, out, seed_pool=pool)
            single_all_cpus = run(1, float(n), per, out, seed_pool=pool)
            ray.shutdown()
            rows = [uncached, parallel, single, single_all_cpus]
            print(f"{'workers':>7} {'cpus/worker':>11} {'seed pool':>9} {'episodes':>8} {'seconds':>8} "
                  f"{'episodes/h':>10} {'FDU/train':>9}")
            for r in rows:
                print(f"{r['workers']:>7} {r['cpus_per_worker']:>11g} {r['seed_pool'] or 'none':>9} "
                      f"{r['episodes']:>8} {r['seconds']:>8.1f} {r['episodes_per_hour']:>10.1f} "
                      f"{r['fdu_fraction']:>9.2%}")
            print_breakdown(parallel, ping)
            cache = parallel["episodes_per_hour"] / uncached["episodes_per_hour"]
            scaling = parallel["episodes_per_hour"] / single["episodes_per_hour"]
            versus_threads = parallel["episodes_per_hour"] / single_all_cpus["episodes_per_hour"]
            print(f"\ntwin cache: seed pool {pool} / a new seed every episode ({n} workers) = {cache:.2f}x")
            print(f"scaling: {n} workers / 1 worker (1 CPU each) = {scaling:.2f}x; "
                  f"{n} workers x 1 CPU / 1 worker x {n} CPUs = {versus_threads:.2f}x")
            figures |= {"runs": rows, "twin_cache": cache, "scaling": scaling, "versus_threads": versus_threads}
    if args.output:
        atomic_write_json(figures, args.output)


if __name__ == "__main__":
    main()
