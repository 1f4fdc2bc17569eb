"""The distributed search on a real local Ray: completes, survives a dead worker,
resumes after the driver is killed, and writes a policy `law apply` accepts."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from agents import DDPGConfig, load_actor
from envs import EnvConfig
from law.apply import ApplyConfig, apply_policy, load_policy, policy_env_config
from law.data import DataConfig
from law.errors import ConfigError, DataError, LawError
from law.features import FEATURE_NAMES
from law.search import CHECKPOINT, POLICY, SearchConfig, search
from law.trainer import OptimConfig

ray = pytest.importorskip("ray")

TINY_DATA = dict(dataset="synthetic", noise="symmetric", noise_rate=0.4, synthetic_train_size=256,
                 synthetic_test_size=64, val_size=64, batch_size=32, eval_batch_size=64)
TINY_ENV = dict(model="mlp", num_stages=4, warmup_stages=1, steps_per_stage=3, lr_drop_stages=(3,))
SEARCHED_STAGES = TINY_ENV["num_stages"] - TINY_ENV["warmup_stages"]


def tiny_configs(tmp_path, num_stages=TINY_ENV["num_stages"], features=FEATURE_NAMES, **search_overrides):
    fields = dict(episodes=4, workers=2, output_dir=str(tmp_path), run_name="search", progress=False,
                  min_buffer=2)
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


def test_search_completes_and_writes_a_loadable_policy(local_ray, tmp_path):
    results = search(*tiny_configs(tmp_path, seed=3))
    assert_complete(results, 4)
    assert results["worker_failures"] == 0
    run = Path(results["run_dir"])
    policy = torch.load(run / POLICY, weights_only=True)  # plain tensors and primitives only
    assert policy["env"]["num_stages"] == 4
    actor = load_actor(policy["actor"])
    action = actor(torch.tensor([[1.0, 2.0, 0.5]]))
    assert action.shape == (1, 5) and action.abs().max() <= 1
    saved = json.loads((run / "results.json").read_text())
    assert saved["config"]["SearchConfig"]["seed"] == 3 and saved["environment"]["torch"]
    assert saved["config"]["DDPGConfig"]["seed"] == 3, "one --seed seeds the agent too"
    assert (run / "summary.md").read_text().count("\n") == 4 + 2
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(run))


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
def test_a_killed_worker_is_restarted_and_its_episode_redone(local_ray, tmp_path):
    # Long episodes, so the kill lands mid-episode: a worker killed between episodes
    # loses nothing (Ray restarts it and the next reset just works).
    configs = tiny_configs(tmp_path, num_stages=12)
    before = set(_worker_pids())  # workers of earlier searches may still be exiting
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(results=search(*configs)))
    thread.start()
    checkpoint = tmp_path / "search" / CHECKPOINT
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline:  # mid-search: after the first round
        time.sleep(0.05)
    ours = sorted(set(_worker_pids()) - before)
    assert ours, "the search's workers are running"
    os.kill(ours[0], signal.SIGKILL)
    thread.join(timeout=300)
    results = outcome["results"]
    assert results["episodes_redone"] >= 1
    assert_complete(results, 4, searched_stages=11)


def _law(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "law.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True, **kwargs)


TINY_FLAGS = ["--model", "mlp", "--num-stages", "4", "--warmup-stages", "1", "--steps-per-stage", "3",
              "--lr-drop-stages", "3", "--synthetic-train-size", "256", "--synthetic-test-size", "64",
              "--val-size", "64", "--batch-size", "32", "--eval-batch-size", "64", "--fdu-batch-size", "8",
              "--min-buffer", "2", "--no-progress"]


def test_a_killed_driver_resumes_without_losing_or_repeating_episodes(tmp_path):
    episodes = 6
    driver = _law("search", "--output-dir", str(tmp_path), "--run-name", "run", "--episodes",
                  str(episodes), *TINY_FLAGS)
    checkpoint = tmp_path / "run" / CHECKPOINT
    deadline = time.time() + 180
    rounds = 0
    while time.time() < deadline and driver.poll() is None:
        if checkpoint.exists():
            try:
                state = torch.load(checkpoint, weights_only=True)["search"]
            except Exception:  # the rename is atomic, but the first torch.load may race a slow disk
                continue
            rounds = state["rounds"]
            if len(state["finished"]) >= 1 and state["in_flight"]:
                break
        time.sleep(0.05)
    assert driver.poll() is None, "the driver was still running when killed"
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray it started
    driver.wait()
    assert rounds >= 1

    resumed = _law("search", "--resume", str(tmp_path / "run"))
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert_complete(results, episodes)


def test_a_wrong_data_root_fails_before_any_worker_or_folder_is_made(tmp_path):
    configs = list(tiny_configs(tmp_path))
    configs[2] = DataConfig(dataset="imagefolder", data_root=str(tmp_path / "missing"))
    with pytest.raises(DataError, match="missing.*--data-root"):
        search(*configs)
    assert not (tmp_path / "search").exists()


def test_search_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="workers"):
        SearchConfig(workers=0).validate()
    with pytest.raises(ConfigError, match="resume.*no checkpoint.pt"):
        SearchConfig(resume=str(tmp_path)).validate()


def test_a_policy_searched_on_fewer_features_acts_on_those_only(local_ray, tmp_path):
    policy_path = search(*tiny_configs(tmp_path, episodes=2, features=("loss",)))["policy"]
    policy = load_policy(policy_path)
    assert load_actor(policy["actor"])(torch.tensor([[1.0, 2.0, 0.5]])).shape == (1, 2)
    env_cfg = policy_env_config(policy, {})
    assert env_cfg.features == ("loss",)
    applied = apply_policy(ApplyConfig(policy=policy_path, output_dir=str(tmp_path), run_name="apply",
                                       progress=False),
                           env_cfg, DataConfig(**TINY_DATA), OptimConfig(lr=0.05), policy)
    for stage in applied["stages"]:
        assert len(stage["action"]) == 2
        assert stage["theta"][1:4] == [0.0, 0.0, 0.0]
        assert stage["theta"][0] == pytest.approx(env_cfg.action_scale * stage["action"][0])


def test_apply_runs_greedily_and_refuses_foreign_policies(local_ray, tmp_path):
    results = search(*tiny_configs(tmp_path, episodes=2))
    policy_path = results["policy"]
    policy = load_policy(policy_path)
    env_cfg = policy_env_config(policy, {})
    applied = apply_policy(ApplyConfig(policy=policy_path, output_dir=str(tmp_path), run_name="apply",
                                       progress=False),
                           env_cfg, DataConfig(**TINY_DATA), OptimConfig(lr=0.05), policy)
    assert len(applied["stages"]) == SEARCHED_STAGES
    assert 0 <= applied["test"]["target"]["accuracy"] <= 1
    assert applied["test"]["reference"] is not None
    # Greedy: the same seed gives the same actions.
    again = apply_policy(ApplyConfig(policy=policy_path, output_dir=str(tmp_path), run_name="apply2",
                                     progress=False),
                         env_cfg, DataConfig(**TINY_DATA), OptimConfig(lr=0.05), policy)
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
