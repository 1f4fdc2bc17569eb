"""One smoke test per benchmark script, with a microscopic budget (profile `smoke`).

Each script runs on a tiny ImageFolder tree written here, so the real data path
(folder -> decoded or streamed images -> splits -> runs -> table) is exercised.
The scripts are run in-process (their ``main(argv)``) so the tests share one
Python and one local Ray instance.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torchvision.io import write_png

from agents import DDPG, DDPGConfig
from envs import EnvConfig
from law.io import atomic_save
from law.policy import ACTION_SIZE
from law.policy_file import policy_file
from law.suites import get_suite

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
CLASSES = ("cat", "dog", "frog", "ship")


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the script defines them
    spec.loader.exec_module(module)
    return module


def write_tree(root: Path, side: int, train_per_class: int, test_per_class: int) -> Path:
    """train/<class>/*.png and test/<class>/*.png: a class-coloured square plus noise."""
    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", train_per_class), ("test", test_per_class)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            colour = torch.tensor([(label * 70) % 256, (label * 130 + 40) % 256, (255 - label * 60) % 256])
            for i in range(count):
                noise = torch.randint(-40, 41, (3, side, side), generator=generator)
                image = (colour.view(3, 1, 1) + noise).clamp(0, 255).to(torch.uint8)
                write_png(image, str(folder / f"{i:03d}.png"))
    return root


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory) -> str:
    return str(write_tree(tmp_path_factory.mktemp("cifar_like"), side=8, train_per_class=60, test_per_class=8))


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> str:
    schedule = get_suite("cifar10-noisy").profile("smoke").schedule
    agent = DDPG(schedule.num_stages, -1.0, 1.0, DDPGConfig(), action_dim=ACTION_SIZE)
    path = tmp_path_factory.mktemp("policy") / "policy.pt"
    atomic_save(policy_file(agent.greedy_state(), EnvConfig.from_schedule(schedule, "mlp", 100), {}), path)
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def isolated_cache_and_ray(tmp_path_factory):
    import os

    old = os.environ.get("LAW_CACHE_DIR")
    os.environ["LAW_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("LAW_CACHE_DIR", None)
    else:
        os.environ["LAW_CACHE_DIR"] = old
    import ray

    if ray.is_initialized():
        ray.shutdown()


def rows(folder: Path) -> list[dict]:
    with open(folder / "results.csv") as f:
        return list(csv.DictReader(f))


def test_suite_noisy_cifar_searches_then_compares(small_tree, tmp_path):
    """The full path: a (one-episode) search on the validation split, then CE and LAW."""
    main = load_script("suite_noisy_cifar").main
    assert main(["--data-path", small_tree, "--profile", "smoke", "--methods", "ce,law", "--seeds", "0",
                 "--output-dir", str(tmp_path), "--no-plots", "--no-progress"]) == 0
    out = tmp_path / "cifar10-noisy__smoke"
    assert (out / "search" / "policy.pt").is_file()
    assert {r["method"] for r in rows(out)} == {"ce", "law", "law-twin"}
    table = (out / "table.md").read_text()
    assert "profile `smoke`" in table and "imagefolder" in table
    search = json.loads((out / "search" / "results.json").read_text())
    assert search["config"]["SearchConfig"]["episodes"] >= 1


def test_suite_imbalanced_cifar(small_tree, policy, tmp_path):
    main = load_script("suite_imbalanced_cifar").main
    assert main(["--data-path", small_tree, "--imbalance", "step", "--profile", "smoke", "--methods", "ce,cb,law",
                 "--seeds", "0", "--policy", policy, "--output-dir", str(tmp_path), "--no-plots", "--no-progress"]) == 0
    out = tmp_path / "cifar10-step__smoke"
    table = (out / "table.md").read_text()
    assert "balanced acc" in table and "| CB | 1 |" in table
    assert len(rows(out)) == 4


def test_transfer_script_trains_network_b(small_tree, policy, tmp_path):
    main = load_script("transfer").main
    assert main(["--suite", "cifar10-noisy", "--search-model", "mlp", "--model", "small_cnn", "--policy", policy,
                 "--data-path", small_tree, "--profile", "smoke", "--seeds", "0", "--output-dir", str(tmp_path),
                 "--no-plots", "--no-progress"]) == 0
    out = tmp_path / "cifar10-noisy__smoke__transfer_mlp_to_small_cnn"
    law = json.loads((out / "runs" / "law__seed0" / "results.json").read_text())
    assert law["config"]["EnvConfig"]["model"] == "small_cnn"
    assert {r["method"] for r in rows(out)} == {"ce", "law", "law-twin"}
    # Without --search-model the folder is named after the network the policy was searched with.
    assert main(["--suite", "cifar10-noisy", "--model", "small_cnn", "--policy", policy, "--methods", "law",
                 "--data-path", small_tree, "--profile", "smoke", "--seeds", "0", "--output-dir", str(tmp_path / "b"),
                 "--no-plots", "--no-progress"]) == 0
    assert (tmp_path / "b" / "cifar10-noisy__smoke__transfer_mlp_to_small_cnn" / "table.md").is_file()


def test_suite_imagenet_trains_data_parallel_on_two_cpu_workers(tmp_path, policy):
    """Streamed ImageFolder images; LAW's transferred policy on Ray Train, 2 gloo workers."""
    tree = write_tree(tmp_path / "imagenet_like", side=20, train_per_class=20, test_per_class=4)
    main = load_script("suite_imagenet").main
    assert main(["--data-path", str(tree), "--profile", "smoke", "--methods", "law", "--seeds", "0",
                 "--policy", policy, "--output-dir", str(tmp_path / "out"), "--no-plots", "--no-progress"]) == 0
    out = tmp_path / "out" / "imagenet-noisy__smoke"
    law = json.loads((out / "runs" / "law__seed0" / "results.json").read_text())
    assert law["distributed"] == {"workers": 2, "use_gpu": False}
    assert law["kind"] == "train-data-parallel" and len(law["history"]) == 3
    acting = [h for h in law["history"] if "action" in h]
    assert len(acting) == 2  # one action per stage after the warm-up, the same on both workers
    assert law["history"][-1]["train"]["samples"] == 48  # both shards counted (2 x 24)


def test_bench_search_quality_reports_searches_and_hand_set_schedules_and_refuses_another_budget(tmp_path, capsys):
    bench = load_script("bench_search_quality")
    tiny = ["--task", "quick", "--agents", "random", "--search-seeds", "0", "--eval-seeds", "1", "--jobs", "1",
            "--output-dir", str(tmp_path), "--no-plots", "--quiet", "--episodes", "4"]
    for setting in ("DataConfig.synthetic_train_size=256", "DataConfig.synthetic_test_size=64", "DataConfig.val_size=64",
                    "DataConfig.batch_size=32", "DataConfig.eval_batch_size=64", "EnvConfig.num_stages=4",
                    "EnvConfig.steps_per_stage=3", "SearchConfig.eval_every=2", "SearchConfig.seed_pool=2",
                    "SearchConfig.min_buffer=2", "DDPGConfig.fdu_batch_size=8"):
        tiny += ["--set", setting]
    assert bench.main(tiny) == 0
    folder = tmp_path / "quick"
    table = (folder / "table.md").read_text()
    summary = json.loads((folder / "results.json").read_text())["summary"]
    # The search's kept policy and every hand-set schedule (neutral, constant, from stages 2 and 3) were run.
    for row in ("search: random", "hand-set: neutral", "hand-set: constant", "hand-set: from stage 2",
                "hand-set: from stage 3"):
        assert f"| {row}" in table
    assert summary["hand-set: neutral"]["val_gap"][0] == 0.0, "all weights 1: the target is its twin"
    assert summary["best_hand_set"] in {"neutral", "constant", "from stage 2", "from stage 3"}
    assert len(summary["random"]["per_search_val"]) == 1
    # The pick a user could make with the search's information: every schedule on the search's own
    # greedy evaluation episodes (neutral is its twin there too), the best mean kept.
    assert "| hand-set: picked on each search's evaluation episodes | 1 picks" in table
    pick = summary["hand_set_picked_per_search"]["picks"]["0"]
    episodes = [json.loads((folder / "hand_set_on_search_episodes" / f"episode_seed{e}.json").read_text())["gaps"]
                for e in pick["episode_seeds"]]
    assert all(gaps["neutral"] == 0.0 for gaps in episodes)
    scores = {name: sum(gaps[name] for gaps in episodes) / len(episodes) for name in episodes[0]}
    assert pick["schedule"] == max(scores, key=scores.get)
    assert pick["score"] == pytest.approx(scores[pick["schedule"]])
    searched = json.loads((folder / "searches" / "random__seed0" / "results.json").read_text())
    assert pick["episode_seeds"] == searched["evaluation_seeds"]

    # A kept search of another budget is refused by name, and nothing is rewritten.
    before = (folder / "results.json").read_bytes()
    capsys.readouterr()
    assert bench.main([a if a != "4" else "6" for a in tiny]) == 2
    assert "SearchConfig.episodes" in capsys.readouterr().err
    assert (folder / "results.json").read_bytes() == before
    # So are the kept hand-set gaps of another task.
    other = [a if a != "EnvConfig.steps_per_stage=3" else "EnvConfig.steps_per_stage=4" for a in tiny]
    assert bench.main([a if a != "random" else "none" for a in other]) == 2
    assert "hand-set schedules of another task" in capsys.readouterr().err
    assert (folder / "results.json").read_bytes() == before


def test_l2rw_weights_reports_zero_shares_and_shows_the_tail_up_weighted(tmp_path):
    script = load_script("l2rw_weights")
    out = tmp_path / "weights.json"
    assert script.main(["--suite", "cifar10-longtail", "--profile", "smoke", "--epochs", "0,1", "--threads", "1",
                        "--output", str(out)]) == 0
    figures = json.loads(out.read_text())["figures"]
    assert set(figures) == {f"epoch {e}, meta batch {m}" for e in (0, 1) for m in (16, 32)}  # the smoke meta sizes
    for row in figures.values():
        assert row["all samples"]["mean_weight"] == pytest.approx(1.0, abs=0.05)  # batch mean 1
        assert all(0.0 <= group["zero_share"] <= 1.0 for group in row.values())
    # A balanced clean meta batch pulls the weights towards the rare classes once CE has learnt the head.
    trained = figures["epoch 1, meta batch 32"]
    assert trained["tail half of classes"]["mean_weight"] > 2 * trained["head half of classes"]["mean_weight"]


def test_class_balanced_schedule_fits_cb_weights_inside_the_imbalanced_search_box(tmp_path, capsys):
    script = load_script("class_balanced_schedule")
    from baselines.class_balanced import class_balanced_weights
    from law.errors import ConfigError
    from law.features import FEATURE_NAMES, log_frequency_by_class, zscore_columns
    from law.policy_file import greedy_policy, load_policy
    from law.search.priors import fit_to_class_balanced

    counts = torch.tensor([1209, 725, 434, 260, 156, 94, 56, 34, 20, 12])
    centred = EnvConfig(features=("loss", "label"), bias_range=(-2.0, 2.0))
    action, error = fit_to_class_balanced(counts, centred, 0.9999, batch_size=128)
    _, error_default_box = fit_to_class_balanced(counts, EnvConfig(features=("loss", "label")), 0.9999, 128)
    assert action[centred.features.index("loss")] == 0.0 and action[1] < 0  # up-weights rare labels only
    assert error < 0.25 < 2 * error < error_default_box  # the default box cannot express CB's weights
    # The fitted weights, computed by the policy itself, order the classes as CB does.
    from law.policy import policy_weights
    labels = torch.arange(10).repeat(13)[:128]
    features = torch.zeros(128, len(FEATURE_NAMES))
    features[:, FEATURE_NAMES.index("label")] = zscore_columns(
        log_frequency_by_class(counts)[labels][:, None])[:, 0]
    theta = torch.from_numpy(centred.theta(action))
    per_class = torch.stack([policy_weights(features, theta[:-1], theta[-1])[labels == c].mean() for c in range(10)])
    cb = class_balanced_weights(counts, 0.9999)
    assert torch.equal(per_class.argsort(), cb.argsort())
    with pytest.raises(ConfigError, match="label"):
        fit_to_class_balanced(counts, EnvConfig(features=("loss",)), 0.9999, 128)

    out = tmp_path / "cb.pt"
    assert script.main(["--suite", "cifar10-longtail", "--profile", "smoke", "--out", str(out)]) == 0
    assert "nearest to class-balanced" in capsys.readouterr().out
    policy = load_policy(out)
    schedule = greedy_policy(policy)
    assert schedule.num_stages == policy["env"]["num_stages"] and policy["selection"]["hand_set"]


def test_ship_policy_records_provenance_and_says_when_a_schedule_was_not_searched(tmp_path, monkeypatch, capsys):
    import law.policy_file
    from law.policy_file import load_policy, policy_path, shipped_policies

    ship = load_script("ship_policy")
    shelf = tmp_path / "shipped"
    shelf.mkdir()
    monkeypatch.setattr(law.policy_file, "SHIPPED", shelf)  # the package's own shelf stays untouched
    monkeypatch.setattr(ship, "SHIPPED", shelf)
    hand_set = tmp_path / "cb.pt"
    assert load_script("class_balanced_schedule").main(["--suite", "cifar10-longtail", "--profile", "smoke",
                                                         "--out", str(hand_set)]) == 0
    assert ship.main(["--name", "lt", "--policy", str(hand_set), "--description", "d", "--measured", "m"]) == 0
    entry = shipped_policies()["lt"]
    assert entry["searched"].startswith("not searched: a hand-set schedule (class-balanced fit)")
    assert policy_path("lt") == shelf / "lt.pt"
    assert torch.equal(torch.as_tensor(load_policy("lt")["policy"]["actions"]),
                       torch.as_tensor(load_policy(hand_set)["policy"]["actions"]))


def test_bench_search_accounts_for_every_worker_second(monkeypatch):
    """The breakdown's worker rows add up to workers x the learner's time in worker calls, whatever the phases."""
    monkeypatch.setenv("LAW_PHASE_TIMES", "1")  # the script sets it on import; restored after the test
    bench = load_script("bench_search")
    phases = lambda **seconds: {name.replace("_", " "): {"seconds": value, "count": 1}
                                for name, value in seconds.items()}
    worker = phases(worker_call=30.0, sgd_target=12.0, features_and_weights=2.0, sgd_twin=6.0, data=3.0,
                    val_evaluation=1.0)
    result = {"workers": 2, "calls": 20, "seconds": 50.0, "search_seconds": 40.0,
              "phase_times": {"learner": phases(waiting_for_workers=30.0, fdu=4.0, checkpoint=1.0),
                              "workers": [worker, phases(worker_call=20.0, sgd_target=15.0)]}}
    rows = dict(bench.breakdown(result, ping=0.01))
    workers_rows = [v for k, v in rows.items() if not k.startswith("learner")]
    assert sum(workers_rows) == pytest.approx(2 * 40.0)
    assert rows["SGD target, acting stages (features and weights excluded)"] == pytest.approx(25.0)
    assert rows["workers idle (no episode to run: the in-flight limit, the last ones)"] == \
        pytest.approx(80.0 - 50.0 - 0.2)
    assert rows["learner: start-up, logging, final files (wall time outside the loop)"] == pytest.approx(10.0)


@pytest.mark.parametrize("model", ["mlp", "small_cnn"])  # small_cnn: batch-norm buffers batched too
def test_bench_step_vectorised_networks_train_as_one_by_one_ones_do(model, tmp_path):
    figures = load_script("bench_step").main(["--model", model, "--image-size", "16", "--batch-size", "16",
                                              "--k", "1", "3", "--steps", "2", "--output", str(tmp_path / "f.json")])
    assert [row["k"] for row in figures["vectorised"]] == [1, 3]
    for row in figures["vectorised"]:
        assert row["max_difference"] < 1e-4  # float rounding of the batched kernels, not a different training
        assert row["one_by_one_ms"] > 0 and row["vectorised_ms"] > 0
    assert figures["layout"]["standard_ms"] > 0 and figures["layout"]["channels_last_ms"] > 0
    assert json.loads((tmp_path / "f.json").read_text()) == figures


def test_gpu_check_runs_its_cpu_checks_and_skips_the_cuda_ones(capsys):
    if torch.cuda.is_available():
        pytest.skip("on a GPU the script is run by hand (minutes), not by the suite")
    assert load_script("gpu_check").main(["--small"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line[:4] in ("PASS", "SKIP", "FAIL")]
    assert [line.split()[0] for line in lines] == ["PASS", "SKIP", "SKIP", "PASS", "PASS", "PASS"]
    assert "no-op pair bit-identical in every stack" in lines[-1] and "K=2" in lines[-1]


def test_bench_search_quality_runs_on_cifar10n_with_the_label_file_and_names_it_when_missing(tmp_path, capsys):
    from test_data import write_cifar10n, write_cifar10n_tree

    write_cifar10n(tmp_path / "human.pt", write_cifar10n_tree(tmp_path / "tree"))
    bench = load_script("bench_search_quality")
    args = ["--task", "cifar10n", "--profile", "smoke", "--data-root", str(tmp_path / "tree"), "--agents", "random",
            "--search-seeds", "0", "--eval-seeds", "1", "--jobs", "1", "--episodes", "2",
            "--output-dir", str(tmp_path / "out"), "--no-plots", "--quiet"]
    assert bench.main(args) == 2
    assert "noise_file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # refused before any work
    assert bench.main(args + ["--noise-file", str(tmp_path / "human.pt")]) == 0
    folder = tmp_path / "out" / "cifar10n__smoke"
    searched = json.loads((folder / "searches" / "random__seed0" / "results.json").read_text())
    assert searched["config"]["DataConfig"]["noise_file"] == str(tmp_path / "human.pt")
    assert "hand-set: neutral" in json.loads((folder / "results.json").read_text())["summary"]
