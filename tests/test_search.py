"""The distributed search on a real local Ray: completes, evaluates and keeps the best
greedy policy, reproduces itself, replays a dead worker's episode and a killed
driver's search exactly, and writes a policy `law apply` accepts."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import DDPGConfig, SchedulePolicy
from envs import EnvConfig
from law.apply import ApplyConfig, apply_policy
from law.policy_file import greedy_policy, load_policy, policy_env_config, policy_task
from law.data import DataConfig
from law.errors import ConfigError, DataError, LawError
from law.features import FEATURE_NAMES
from law.search import (CHECKPOINT, LAST_POLICY, POLICY, SearchConfig, evaluation_seeds, final_seeds, noise_rng, search,
                        training_seed)
from law.search.learner import best_distinct, make_agent
from law.search.report import paired_differences
from law.trainer import OptimConfig

ray = pytest.importorskip("ray")

TINY_DATA = dict(dataset="synthetic", noise="symmetric", noise_rate=0.4, synthetic_train_size=256,
                 synthetic_test_size=64, val_size=64, batch_size=32, eval_batch_size=64)
TINY_ENV = dict(model="mlp", num_stages=4, warmup_stages=1, steps_per_stage=3, lr_drop_stages=(3,))
SEARCHED_STAGES = TINY_ENV["num_stages"] - TINY_ENV["warmup_stages"]


def tiny_configs(tmp_path, num_stages=TINY_ENV["num_stages"], features=FEATURE_NAMES, run_name="search",
                 **search_overrides):
    # Without priors or a final judging unless a test asks: they are the subject of their own tests.
    fields = dict(episodes=4, workers=2, seed_pool=2, eval_every=2, eval_seeds=2, output_dir=str(tmp_path),
                  run_name=run_name, progress=False, min_buffer=2, priors=False, finalists=0)
    search_cfg = SearchConfig(**{**fields, **search_overrides})
    env_cfg = EnvConfig(**{**TINY_ENV, "num_stages": num_stages, "features": features})
    return (search_cfg, env_cfg, DataConfig(**TINY_DATA), OptimConfig(lr=0.05),
            DDPGConfig(fdu_epochs=2, fdu_batch_size=8))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def assert_complete(results, episodes, searched_stages=SEARCHED_STAGES):
    finished = sorted(e["episode"] for e in results["episodes"])
    assert finished == list(range(episodes)), "every episode finished exactly once"
    assert results["transitions"] == episodes * searched_stages
    assert all(len(e["rewards"]) == searched_stages for e in results["episodes"])


def fingerprint(results) -> tuple:
    """Everything that must match between two runs that should be the same run."""
    run = Path(results["run_dir"])
    policy = torch.load(run / POLICY, weights_only=True)["policy"]
    weights = [t.numpy().tobytes() for t in policy["actor"]["weights"].values()] if "actor" in policy else []
    return ([(e["episode"], e["rewards"]) for e in results["episodes"]],
            [(r["after_episodes"], r["gaps"]) for r in results["evaluations"]],
            [(r["prior"], r["gaps"]) for r in results["priors"]], results["start_point"],
            [(r.get("prior"), r.get("after_episodes"), r["gaps"]) for r in results.get("finalists", [])], weights)


def test_search_completes_evaluates_and_keeps_the_best_greedy_policy(local_ray, tmp_path):
    results = search(*tiny_configs(tmp_path, seed=3))
    assert_complete(results, 4)
    assert results["worker_failures"] == 0 and results["redone_episodes"] == 0
    # Common random numbers: 4 episodes over a pool of 2 seeds, 2 evaluation seeds.
    assert {e["seed"] for e in results["episodes"]} == {training_seed(SearchConfig(seed=3, seed_pool=2), n)
                                                        for n in range(2)}
    assert results["cached_twins"] == 4
    assert not set(results["evaluation_seeds"]) & {e["seed"] for e in results["episodes"]}
    evaluations = results["evaluations"]
    assert [r["after_episodes"] for r in evaluations] == [2, 4]
    assert all(len(r["gaps"]) == 2 and r["score"] == pytest.approx(np.mean(r["gaps"])) for r in evaluations)
    best = max(evaluations, key=lambda r: r["score"])
    assert results["best"] == {"after_episodes": best["after_episodes"], "val_gap": best["score"], "seeds": 2}

    run = Path(results["run_dir"])
    policy = torch.load(run / POLICY, weights_only=True)  # plain tensors and primitives only
    assert policy["selection"]["after_episodes"] == best["after_episodes"]
    assert policy["selection"]["val_gap"] == best["score"]
    assert torch.load(run / LAST_POLICY, weights_only=True)["selection"]["after_episodes"] == 4
    action = greedy_policy(load_policy(run / POLICY))(np.array([1.0, 2.0, 0.5], np.float32))
    assert action.shape == (5,) and np.abs(action).max() <= 1
    saved = json.loads((run / "results.json").read_text())
    assert saved["config"]["SearchConfig"]["seed"] == 3 and saved["environment"]["torch"]
    assert saved["config"]["DDPGConfig"]["seed"] == 3, "one --seed seeds the agent too"
    summary = (run / "summary.md").read_text()
    assert summary.startswith(f"**policy vs unweighted twin: {100 * best['score']:+.1f} validation points**")
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run))


def test_a_seeded_search_is_reproducible(local_ray, tmp_path):
    first = search(*tiny_configs(tmp_path, run_name="a", seed=5))
    second = search(*tiny_configs(tmp_path, run_name="b", seed=5))
    other = search(*tiny_configs(tmp_path, run_name="c", seed=6))
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first)[0] != fingerprint(other)[0]


def test_what_a_search_computes_does_not_depend_on_its_workers(local_ray, tmp_path):
    # Episode n acts with the agent after episodes 0..n-in_flight, whoever runs it and
    # whenever it finishes: one worker or three, the same search.
    one = search(*tiny_configs(tmp_path, run_name="one", workers=1, in_flight=3, episodes=5))
    three = search(*tiny_configs(tmp_path, run_name="three", workers=3, cpus_per_worker=0.5, in_flight=3,
                                 episodes=5))
    assert fingerprint(one) == fingerprint(three)
    assert {e["worker"] for e in three["episodes"]} != {0}, "the three workers shared the episodes"
    serial = search(*tiny_configs(tmp_path, run_name="serial", workers=1, in_flight=1, episodes=5))
    assert fingerprint(serial)[0][:1] == fingerprint(one)[0][:1], "episode 0 acts with the initial agent in both"
    assert fingerprint(serial)[0] != fingerprint(one)[0], "later ones with a less stale agent"
    assert json.loads((Path(one["run_dir"]) / "results.json").read_text())["config"]["SearchConfig"]["in_flight"] == 3


def test_vectorised_episodes_compute_one_search_at_every_k_and_k1_within_float_noise(local_ray, tmp_path):
    # K episodes per worker train as one stack: K = 2 on two workers and K = 3 on one are the same
    # search bit for bit. K = 1 trains the networks one by one, whose floats differ in the last bits:
    # the same search up to that (gaps within two validation samples, the actor within 1e-4).
    common = dict(in_flight=3, episodes=5)
    two = search(*tiny_configs(tmp_path, run_name="k2", episodes_per_worker=2, **common))
    three = search(*tiny_configs(tmp_path, run_name="k3", workers=1, episodes_per_worker=3, **common))
    one = search(*tiny_configs(tmp_path, run_name="k1", **common))
    assert fingerprint(two) == fingerprint(three)
    assert_complete(two, 5)
    assert {e["worker"] for e in two["episodes"]} == {0, 1}
    for vectorised, plain in zip(sorted(two["episodes"], key=lambda e: e["episode"]),
                                 sorted(one["episodes"], key=lambda e: e["episode"])):
        assert vectorised["gap"] == pytest.approx(plain["gap"], abs=2 / TINY_DATA["val_size"])
    actor = lambda results: [np.frombuffer(w, np.float32) for w in fingerprint(results)[4]]
    assert all(np.allclose(a, b, rtol=0, atol=1e-4) for a, b in zip(actor(two), actor(one)))
    saved = json.loads((Path(two["run_dir"]) / "results.json").read_text())["config"]["SearchConfig"]
    assert saved["episodes_per_worker"] == 2


def test_random_search_keeps_its_best_schedule_and_apply_runs_it(local_ray, tmp_path):
    results = search(*tiny_configs(tmp_path, agent="random", episodes=5, eval_every=5, eval_seeds=1))
    assert_complete(results, 5)
    policy = load_policy(results["policy"])
    assert policy["policy"]["kind"] == "schedule"
    best_episode = max(results["episodes"], key=lambda e: e["gap"])
    schedule = greedy_policy(policy)
    assert isinstance(schedule, SchedulePolicy) and schedule.actions.shape == (4, 5)
    assert not schedule.actions[0].any(), "warm-up stages are not acted on"
    # The kept schedule is the one the best training episode drew (the same seeded uniform draws).
    drawn = [noise_rng(0, best_episode["episode"], stage).uniform(-1, 1, 5) for stage in range(1, 4)]
    np.testing.assert_allclose(schedule.actions[1:], np.asarray(drawn, np.float32))
    env_cfg = policy_env_config(policy, {})
    applied = apply_policy(ApplyConfig(policy=results["policy"], output_dir=str(tmp_path), run_name="apply",
                                       progress=False), env_cfg, DataConfig(**TINY_DATA), OptimConfig(lr=0.05),
                           policy)
    np.testing.assert_array_equal([s["action"] for s in applied["stages"]], schedule.actions[1:])


def _worker_pids():
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ray::EnvWorker" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray worker processes through /proc")
def test_a_killed_worker_replays_its_episode_and_the_search_ends_as_if_nothing_happened(local_ray, tmp_path):
    # Long episodes, so the kill lands mid-episode.
    uninterrupted = search(*tiny_configs(tmp_path, num_stages=12, run_name="clean"))
    configs = tiny_configs(tmp_path, num_stages=12, run_name="killed")
    before = set(_worker_pids())  # workers of earlier searches may still be exiting
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(results=search(*configs)))
    thread.start()
    checkpoint = tmp_path / "killed" / CHECKPOINT
    deadline = time.time() + 120
    while time.time() < deadline:  # mid-search: once the first episode has been learned from
        try:
            if torch.load(checkpoint, weights_only=True)["search"]["learned"] >= 1:
                break
        except Exception:  # not written yet, or mid-rename on a slow disk
            pass
        time.sleep(0.05)
    ours = sorted(set(_worker_pids()) - before)
    assert ours, "the search's workers are running"
    os.kill(ours[0], signal.SIGKILL)
    thread.join(timeout=300)
    results = outcome["results"]
    assert results["worker_failures"] >= 1 and results["redone_episodes"] >= 1
    assert_complete(results, 4, searched_stages=11)
    assert fingerprint(results) == fingerprint(uninterrupted)


def _law(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "law.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


TINY_FLAGS = ["--model", "mlp", "--num-stages", "4", "--warmup-stages", "1", "--steps-per-stage", "3",
              "--lr-drop-stages", "3", "--synthetic-train-size", "256", "--synthetic-test-size", "64",
              "--val-size", "64", "--batch-size", "32", "--eval-batch-size", "64", "--fdu-batch-size", "8",
              "--min-buffer", "2", "--eval-every", "2", "--no-progress"]


@pytest.mark.parametrize("killed", ["judging its priors", "training", "judging its finalists"])
def test_a_killed_driver_resumes_and_replays_exactly_what_an_uninterrupted_search_does(tmp_path, killed):
    episodes = "6"
    wider = {"judging its priors": ["--eval-seeds", "4"], "judging its finalists": ["--final-seeds", "4"]}
    flags = [*TINY_FLAGS, *wider.get(killed, [])]  # a wider window to kill in
    clean = _law("search", "--output-dir", str(tmp_path), "--run-name", "clean", "--episodes", episodes, *flags)
    output, _ = clean.communicate(timeout=300)
    assert clean.returncode == 0, output

    driver = _law("search", "--output-dir", str(tmp_path), "--run-name", "run", "--episodes", episodes, *flags)
    checkpoint = tmp_path / "run" / CHECKPOINT
    deadline = time.time() + 180
    state = {}
    while time.time() < deadline and driver.poll() is None:
        try:
            state = torch.load(checkpoint, weights_only=True)["search"]
        except Exception:  # not written yet, or the first load raced a slow disk
            state = {}
        judged = {kind: [g for r in state.get(kind, []) for g in r["gaps"] if g is not None]
                  for kind in ("priors", "finalists")}
        if {"training": state.get("learned", 0) >= 1,
                "judging its priors": judged["priors"] and not state["started"],
                "judging its finalists": 0 < len(judged["finalists"]) < 4 * len(state["finalists"])}[killed]:
            break
        time.sleep(0.02)
    assert driver.poll() is None, "the driver was still running when killed"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    kinds = {job["kind"] for job in state["jobs"]}
    assert {"judging its priors": kinds == {"prior"}, "training": "train" in kinds,
            "judging its finalists": kinds == {"final"}}[killed], "killed mid-search"

    resumed = _law("search", "--resume", str(tmp_path / "run"))
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    reference = json.loads((tmp_path / "clean" / "results.json").read_text())
    assert_complete(results, int(episodes))
    for saved in (results, reference):
        saved["run_dir"] = str(tmp_path / ("run" if saved is results else "clean"))
    assert fingerprint(results) == fingerprint(reference), "bit for bit the uninterrupted search"


def test_an_error_inside_the_environment_is_reported_once_with_its_own_message(local_ray, tmp_path):
    configs = list(tiny_configs(tmp_path))
    configs[3] = OptimConfig(lr=1e6)
    started = time.perf_counter()
    with pytest.raises(LawError, match="NaN or infinite"):
        search(*configs)
    assert time.perf_counter() - started < 60, "no retries of a deterministic failure"


def test_a_wrong_data_root_fails_before_any_worker_or_folder_is_made(tmp_path):
    configs = list(tiny_configs(tmp_path))
    configs[2] = DataConfig(dataset="imagefolder", data_root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing.*--data-root"):
        search(*configs)
    assert not (tmp_path / "search").exists()


def test_search_config_errors_name_the_field(tmp_path):
    for field, value in (("workers", 0), ("agent", "ppo"), ("seed_pool", -1), ("eval_every", 0),
                         ("eval_seeds", 0), ("episodes_per_worker", 0), ("finalists", -1), ("final_seeds", 0)):
        with pytest.raises(ConfigError, match=field):
            SearchConfig(**{field: value}).validate()
    configs = list(tiny_configs(tmp_path, episodes_per_worker=2))
    configs[1] = EnvConfig(**{**TINY_ENV, "model": "mobilenet_v2"})
    with pytest.raises(ConfigError, match="episodes_per_worker.*dropout"):
        search(*configs)
    assert not list(tmp_path.iterdir()), "refused before any folder was made"
    with pytest.raises(ConfigError, match="resume.*no checkpoint.pt"):
        SearchConfig(resume=str(tmp_path)).validate()
    cfg = SearchConfig(seed=1, seed_pool=3, eval_seeds=4)
    assert len({training_seed(cfg, n) for n in range(12)}) == 3
    assert not set(evaluation_seeds(cfg)) & {training_seed(cfg, n) for n in range(3)}
    assert not set(final_seeds(cfg)) & (set(evaluation_seeds(cfg)) | {training_seed(cfg, n) for n in range(3)})
    assert len(set(final_seeds(cfg))) == cfg.final_seeds and not final_seeds(SearchConfig(finalists=0))


def test_a_policy_searched_on_fewer_features_acts_on_those_only(local_ray, tmp_path):
    policy_path = search(*tiny_configs(tmp_path, episodes=2, features=("loss",)))["policy"]
    policy = load_policy(policy_path)
    assert greedy_policy(policy)(np.array([1.0, 2.0, 0.5], np.float32)).shape == (2,)
    env_cfg = policy_env_config(policy, {})
    assert env_cfg.features == ("loss",)
    applied = apply_policy(ApplyConfig(policy=policy_path, output_dir=str(tmp_path), run_name="apply",
                                       progress=False),
                           env_cfg, DataConfig(**TINY_DATA), OptimConfig(lr=0.05), policy)
    for stage in applied["stages"]:
        assert len(stage["action"]) == 2
        assert stage["theta"][1:4] == [0.0, 0.0, 0.0]
        assert stage["theta"][0] == pytest.approx(env_cfg.action_scale * stage["action"][0])


def test_apply_runs_greedily_on_the_searched_task_and_refuses_foreign_policies(local_ray, tmp_path):
    results = search(*tiny_configs(tmp_path, episodes=2))
    policy_path = results["policy"]
    policy = load_policy(policy_path)
    data_cfg, optim_cfg = policy_task(policy)
    assert data_cfg == DataConfig(**TINY_DATA) and optim_cfg == OptimConfig(lr=0.05)
    env_cfg = policy_env_config(policy, {})
    applied = apply_policy(ApplyConfig(policy=policy_path, output_dir=str(tmp_path), run_name="apply",
                                       progress=False), env_cfg, data_cfg, optim_cfg, policy)
    assert len(applied["stages"]) == SEARCHED_STAGES
    assert 0 <= applied["test"]["target"]["accuracy"] <= 1
    assert applied["test"]["reference"] is not None
    # Greedy: the same seed gives the same actions.
    again = apply_policy(ApplyConfig(policy=policy_path, output_dir=str(tmp_path), run_name="apply2",
                                     progress=False), env_cfg, data_cfg, optim_cfg, policy)
    assert [s["action"] for s in again["stages"]] == [s["action"] for s in applied["stages"]]

    with pytest.raises(ConfigError, match="num_stages.*searched with 4 stages"):
        policy_env_config(policy, {"num_stages": 6, "lr_drop_stages": (3,)})
    with pytest.raises(ConfigError, match="features.*leave --features out"):
        policy_env_config(policy, {"features": ("loss",)})

    foreign = dict(policy, feature_spec=dict(policy["feature_spec"], version=99))
    torch.save(foreign, tmp_path / "foreign.pt")
    with pytest.raises(LawError, match="different feature set.*version"):
        load_policy(tmp_path / "foreign.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "not_a_policy.pt")
    with pytest.raises(LawError, match="not a LAW policy file"):
        load_policy(tmp_path / "not_a_policy.pt")


def test_law_apply_without_flags_trains_on_the_task_recorded_in_the_policy(local_ray, tmp_path):
    policy_path = search(*tiny_configs(tmp_path, episodes=2))["policy"]
    done = subprocess.run([sys.executable, "-m", "law.cli", "apply", "--policy", policy_path, "--seed", "9",
                           "--output-dir", str(tmp_path), "--run-name", "applied", "--no-progress"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "the task the policy was searched on (synthetic, noise symmetric 0.4" in done.stderr
    assert "policy vs unweighted twin" in done.stdout
    saved = json.loads((tmp_path / "applied" / "results.json").read_text())
    assert saved["config"]["DataConfig"]["synthetic_train_size"] == TINY_DATA["synthetic_train_size"]
    assert saved["config"]["OptimConfig"]["lr"] == 0.05 and saved["seed"] == 9


def test_resume_of_a_checkpoint_from_the_lock_step_search_says_so(tmp_path):
    from law.search import resume_search
    torch.save({"search": {"rounds": 3, "slots": []}, "config": {}}, tmp_path / CHECKPOINT)
    with pytest.raises(ConfigError, match="older LAW.*rounds"):
        resume_search(tmp_path)


def _schedule_file(path: Path, env_cfg: EnvConfig, action: np.ndarray) -> Path:
    from law.io import atomic_save
    from law.policy_file import policy_file
    from law.search.priors import constant_schedule
    atomic_save(policy_file(SchedulePolicy(constant_schedule(env_cfg, action)).state_dict(), env_cfg, {}), path)
    return path


def test_a_search_judges_its_priors_first_and_starts_from_the_best(local_ray, tmp_path):
    env_cfg = tiny_configs(tmp_path)[1]
    mine = _schedule_file(tmp_path / "mine.pt", env_cfg, np.array([0.5, 0.0, 0.0, 0.0, 1.0], np.float32))
    # No update before the first greedy evaluation (min_buffer): it judges the actor as the prior left it.
    results = search(*tiny_configs(tmp_path, priors=True, init_policy=(str(mine),), min_buffer=100, seed=2))
    assert_complete(results, 4)
    priors = {r["prior"]: r for r in results["priors"]}
    # (+ the class-balanced fit: 192 noisy samples leave class sizes of 11-27, more than 2x apart)
    assert list(priors) == ["neutral", "sharp loss rule", "class-balanced fit", f"--init-policy {mine}"]
    assert priors["neutral"]["gaps"] == [0.0, 0.0], "theta = 0 trains exactly as the twin"
    best_prior = max(results["priors"], key=lambda r: r["score"])
    assert results["start_point"]["prior"] == best_prior["prior"]
    assert results["start_point"]["val_gap"] == best_prior["score"]
    searched = max(r["score"] for r in results["evaluations"])
    assert results["improvement"] == pytest.approx(searched - best_prior["score"])
    run = Path(results["run_dir"])
    kept = torch.load(run / POLICY, weights_only=True)["selection"]
    assert kept["val_gap"] == max(searched, best_prior["score"]), "policy.pt: the best judged, a prior included"
    assert ("prior" in kept) == (best_prior["score"] >= searched), "a tie keeps the prior"

    # The actor the first evaluation judged is the best prior's actions, fitted (clipped to +-0.95).
    checkpoint = torch.load(run / CHECKPOINT, weights_only=True)["search"]
    trajectories = next(r for r in checkpoint["priors"] if r["prior"] == best_prior["prior"])["trajectories"]
    obs = np.concatenate([t["obs"] for t in trajectories]).astype(np.float32)
    wanted = np.clip(np.concatenate([t["actions"] for t in trajectories]), -0.95, 0.95)
    actor = greedy_policy({"policy": checkpoint["evaluations"][0]["policy"]})
    np.testing.assert_allclose(np.stack([actor(o) for o in obs]), wanted, atol=0.05)
    summary = (run / "summary.md").read_text()
    assert f"started from the best prior, *{best_prior['prior']}*" in summary
    assert ("improved on its starting point by" in summary) == (results["improvement"] > 0)


def test_the_final_judging_keeps_the_finalist_best_over_all_its_seeds(local_ray, tmp_path):
    results = search(*tiny_configs(tmp_path, priors=True, finalists=2, final_seeds=2, episodes=6, seed=5))
    assert_complete(results, 6)
    start = next(r for r in results["priors"] if r["prior"] == results["start_point"]["prior"])
    ranked = sorted(results["evaluations"], key=lambda r: -r["score"])[:2]
    finalists = results["finalists"]
    # The start prior first, then the 2 best evaluations, each with the gaps it was ranked on.
    assert [(f.get("prior"), f.get("after_episodes"), f["evaluation_gaps"]) for f in finalists] == \
        [(start["prior"], None, start["gaps"])] + [(None, r["after_episodes"], r["gaps"]) for r in ranked]
    seen = set(results["evaluation_seeds"]) | {e["seed"] for e in results["episodes"]}
    assert len(results["final_seeds"]) == 2 and not set(results["final_seeds"]) & seen
    for f in finalists:
        assert len(f["gaps"]) == 2 and f["score"] == pytest.approx(np.mean(f["evaluation_gaps"] + f["gaps"]))
    kept = max(finalists, key=lambda f: f["score"])  # the first of equals: the prior
    chosen = {"prior": kept["prior"]} if "prior" in kept else {"after_episodes": kept["after_episodes"]}
    assert results["best"] == {**chosen, "val_gap": kept["score"], "seeds": 4}
    assert results["improvement"] == pytest.approx(max(f["score"] for f in finalists[1:]) - finalists[0]["score"])

    run = Path(results["run_dir"])
    selection = torch.load(run / POLICY, weights_only=True)["selection"]
    assert (selection["val_gap"], selection["final_gaps"], selection["evaluation_gaps"]) == \
        (kept["score"], kept["gaps"], kept["evaluation_gaps"])
    judged = torch.load(run / CHECKPOINT, weights_only=True)["search"]["finalists"][finalists.index(kept)]
    observations = [np.array([stage, 1.0, 0.5], np.float32) for stage in range(TINY_ENV["num_stages"])]
    np.testing.assert_array_equal([greedy_policy(load_policy(run / POLICY))(o) for o in observations],
                                  [greedy_policy({"policy": judged["policy"]})(o) for o in observations])
    summary = (run / "summary.md").read_text()
    assert summary.startswith(f"**policy vs unweighted twin: {100 * kept['score']:+.1f} validation points** "
                              "(mean over its 2 evaluation and 2 final seeds")
    assert "Final judging: the start prior and the best 2 distinct greedy evaluations again on 2 more seeds" in summary
    assert ("better on" in summary) == (results["improvement"] > 0)  # the paired differences, only for a gain


def test_what_a_search_added_is_told_seed_by_seed_against_its_start_prior():
    start = {"prior": "sharp loss rule", "evaluation_gaps": [0.05, 0.07], "gaps": [0.06, 0.06], "score": 0.06}
    weaker = {"after_episodes": 10, "evaluation_gaps": [0.05, 0.05], "gaps": [0.05, 0.05], "score": 0.05}
    best = {"after_episodes": 20, "evaluation_gaps": [0.06, 0.07], "gaps": [0.05, 0.08], "score": 0.065}
    assert paired_differences([start, weaker, best]) == \
        "per seed +1.0 +0.0 -1.0 +2.0: better on 2 of 4 seeds, worse on 1"


def test_the_final_judging_takes_each_policy_once_even_after_a_checkpoint(tmp_path):
    env_cfg = EnvConfig(**TINY_ENV)
    actor = make_agent("ddpg", env_cfg, DDPGConfig()).greedy_state()
    other_actor = make_agent("ddpg", env_cfg, DDPGConfig(seed=1)).greedy_state()
    schedule = make_agent("random", env_cfg, DDPGConfig()).greedy_state()
    torch.save({"policy": actor}, tmp_path / "saved.pt")
    resumed_actor = torch.load(tmp_path / "saved.pt", weights_only=True)["policy"]
    evaluations = [{"round": 0, "score": 0.05, "policy": schedule},
                   {"round": 1, "score": 0.05, "policy": {**schedule}},  # unchanged: random search, no better draw
                   {"round": 2, "score": 0.07, "policy": actor},
                   {"round": 3, "score": 0.07, "policy": resumed_actor},  # the same actor, through a checkpoint
                   {"round": 4, "score": 0.01, "policy": other_actor}]
    assert [r["round"] for r in best_distinct(evaluations, 3)] == [2, 0, 4]
    assert [r["round"] for r in best_distinct(evaluations, 1)] == [2]


def test_priors_are_refused_before_any_work_when_they_cannot_act_here(tmp_path):
    with pytest.raises(ConfigError, match="init_policy.*no-priors"):
        SearchConfig(priors=False, init_policy=("x.pt",)).validate()
    with pytest.raises(ConfigError, match="no policy file at 'nowhere.pt'"):
        search(*tiny_configs(tmp_path, priors=True, init_policy=("nowhere.pt",)))
    foreign_env = EnvConfig(**{**TINY_ENV, "features": ("loss",)})
    foreign = _schedule_file(tmp_path / "foreign.pt", foreign_env, np.array([-1.0, 0.0], np.float32))
    with pytest.raises(ConfigError, match="init_policy.*features"):
        search(*tiny_configs(tmp_path, priors=True, init_policy=(str(foreign),)))
    assert not (tmp_path / "search").exists(), "nothing was started"


def test_a_log_ratio_search_from_priors_applies_in_its_own_box_only(local_ray, tmp_path):
    import dataclasses
    search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg = tiny_configs(tmp_path, priors=True,
                                                                       features=("loss", "label"))
    env_cfg = dataclasses.replace(env_cfg, action_map="log_ratio", bias_range=(-3.0, 3.0))
    results = search(search_cfg, env_cfg, data_cfg, optim_cfg, agent_cfg)
    assert_complete(results, 4)
    assert [r["prior"] for r in results["priors"]] == ["neutral", "sharp loss rule", "class-balanced fit"]
    policy = load_policy(results["policy"])
    assert policy["env"]["action_map"] == "log_ratio"
    applied_env = policy_env_config(policy, {})
    applied = apply_policy(ApplyConfig(policy=results["policy"], output_dir=str(tmp_path), run_name="apply",
                                       progress=False), applied_env, data_cfg, optim_cfg, policy)
    # The same actions become the same weighting: the search's box, not the default one.
    assert [s["theta"] for s in applied["stages"]] == [applied_env.theta(s["action"]).tolist()
                                                        for s in applied["stages"]]
    with pytest.raises(ConfigError, match="action_map log_ratio, this run uses linear"):
        apply_policy(ApplyConfig(policy=results["policy"], output_dir=str(tmp_path), run_name="apply2",
                                 progress=False), policy_env_config(policy, {"action_map": "linear"}),
                     data_cfg, optim_cfg, policy)
    assert not (tmp_path / "apply2").exists(), "refused before any work"
