"""`law compare`: same data and schedule for every method, honest aggregation, resumability."""
from __future__ import annotations

import csv
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from agents import DDPG, DDPGConfig
from envs import EnvConfig
from law.bench.experiment import CompareConfig, build_experiment, parse_methods, parse_seeds
from law.bench.figures import minority_classes
from law.bench.report import aggregate
from law.records import mean_std, summarise
from law.compare import compare
from law.data import DataConfig
from law.errors import ConfigError
from law.io import atomic_save
from law.policy import ACTION_SIZE
from law.policy_file import policy_file
from law.suites import SUITES, get_suite, resolve_data
from law.trainer import OptimConfig, learning_rate


def write_policy(path, num_stages: int = 3) -> str:
    schedule = get_suite("cifar10-noisy").profile("smoke").schedule
    agent = DDPG(num_stages, -1.0, 1.0, DDPGConfig(), action_dim=ACTION_SIZE)
    atomic_save(policy_file(agent.greedy_state(), EnvConfig.from_schedule(schedule, "mlp", 100), {}), path)
    return str(path)


@pytest.fixture(scope="module")
def policy(tmp_path_factory) -> str:
    return write_policy(tmp_path_factory.mktemp("policy") / "policy.pt")


# ---------------------------------------------------------------------------- schedules


def test_cpu_noisy_schedule_by_hand():
    s = get_suite("cifar10-noisy").profile("cpu").schedule
    assert s.epochs == 30 and s.milestones() == (15.0,)
    assert s.report_epochs() == (6, 9, 12, 15, 18, 21, 24, 27, 30)
    optim = s.baseline_optim(OptimConfig(lr=0.05))
    assert learning_rate(optim, 14.99, s.epochs) == pytest.approx(0.05)
    assert learning_rate(optim, 15.0, s.epochs) == pytest.approx(0.005)


@pytest.mark.parametrize("suite", sorted(SUITES))
@pytest.mark.parametrize("profile", ["cpu", "paper", "smoke"])
def test_baseline_lr_equals_stage_lr_at_every_step(suite, profile):
    """The baselines' step schedule in epochs is the stage schedule LAW trains with."""
    p = get_suite(suite).profile(profile)
    s = p.schedule
    optim = s.baseline_optim(p.optim)
    env = EnvConfig.from_schedule(s, p.model, data_seed=3)
    env.validate()
    assert env.num_stages * env.epochs_per_stage == s.epochs
    steps_per_epoch = 7
    for step in range(s.epochs * steps_per_epoch):
        stage = step // (s.epochs_per_stage * steps_per_epoch)
        assert learning_rate(optim, step / steps_per_epoch, s.epochs) == pytest.approx(
            env.schedule.lr_at(p.optim.lr, stage))
    drops = [env.schedule.lr_at(1.0, stage) for stage in range(s.num_stages)]
    assert drops[0] == 1.0 and len(set(drops)) == len(s.lr_drop_stages) + 1


def test_profiles_are_labelled_and_valid():
    for suite in SUITES.values():
        for name in suite.profiles:
            p = suite.profile(name)
            assert name in p.label and p.budget
            data = replace(p.data, data_root=p.data.data_root or "/data",  # filled in at run time
                           noise_file=p.data.noise_file or "/data/CIFAR-10_human.pt")
            search = replace(p.search, gpus_per_worker=0.0)  # GPU shares only where Ray has GPUs
            for config in (data, p.optim, p.method, search, p.ddpg):
                config.validate()


# ---------------------------------------------------------------------------- data, parsing


def test_resolve_data_recognises_an_image_tree(tmp_path):
    (tmp_path / "tree" / "train").mkdir(parents=True)
    (tmp_path / "pickles").mkdir()
    cifar = DataConfig(dataset="cifar10")
    assert resolve_data(cifar, str(tmp_path / "tree")).dataset == "imagefolder"
    assert resolve_data(cifar, str(tmp_path / "pickles")).dataset == "cifar10"
    with pytest.raises(ConfigError, match="data_root"):
        resolve_data(cifar, "")
    with pytest.raises(ConfigError, match="train/"):
        resolve_data(DataConfig(dataset="imagefolder"), str(tmp_path / "pickles"))


def test_parsing_and_validation_errors_name_the_field():
    assert parse_methods("ce, law") == ["ce", "law"]
    assert parse_seeds("2,0") == [2, 0]
    for field, kwargs in [("methods", {"methods": "ce,mixup"}), ("methods", {"methods": "ce,ce"}),
                          ("seeds", {"seeds": "0,x"}), ("seeds", {"seeds": ""}), ("profile", {"profile": "gpu"}),
                          ("suite", {"suite": "mnist"}), ("jobs", {"jobs": 0}), ("policy", {"policy": "/nope.pt"})]:
        with pytest.raises(ConfigError) as error:
            CompareConfig(**kwargs).validate()
        assert error.value.field == field


def test_mean_std_by_hand():
    mean, std = mean_std([0.5, 0.7])
    assert mean == pytest.approx(0.6) and std == pytest.approx(math.sqrt(0.02))
    mean, std = mean_std([0.4])
    assert mean == pytest.approx(0.4) and math.isnan(std)


def test_minority_classes():
    assert minority_classes(DataConfig(imbalance="step", step_minority_classes=2), 10) == [0, 1]
    assert minority_classes(DataConfig(imbalance="longtail", imbalance_ratio=100.0), 10) == [5, 6, 7, 8, 9]


def test_a_summary_uses_the_shared_evaluation_points():
    """A baseline's best ignores epochs at which LAW is not evaluated."""
    def record(epoch, acc, val):
        return {"epoch": epoch, "val": {"accuracy": val}, "train": {"effective_sample_fraction": acc},
                "test": {"accuracy": acc, "balanced_accuracy": acc, "macro_f1": acc, "mean_auc": 0.9}}

    history = [record(1, 0.9, 0.1), record(2, 0.5, 0.8), record(3, 0.6, 0.2), record(4, 0.4, 0.3)]
    metrics = summarise(history, points=(2, 4))
    assert metrics["best"] == 0.5 and metrics["best_epoch"] == 2
    assert metrics["last"] == 0.4 and metrics["at_best_val"] == 0.5
    assert metrics["best_any_epoch"] == 0.9
    assert metrics["effective_samples"] == pytest.approx((0.9 + 0.5 + 0.6 + 0.4) / 4)
    summary = aggregate([{"method": "ce", "seed": 0, "wall_seconds": 1.0, **metrics},
                         {"method": "ce", "seed": 1, "wall_seconds": 3.0, **metrics | {"last": 0.6}}], ("last",))
    assert summary["ce"]["n"] == 2 and summary["ce"]["last"][0] == pytest.approx(0.5)
    stopped = aggregate([{"method": "spl", "seed": 0, "wall_seconds": 1.0, **metrics},
                         {"method": "spl", "seed": 1, "wall_seconds": 1.0, "diverged": "...", "status": "collapsed"}],
                        ("last",))
    assert stopped["spl"]["n"] == 1 and stopped["spl"]["stopped"] == ["collapsed"], "a collapse is not a divergence"
    everywhere = summarise(history)  # law train: every epoch is a point
    assert everywhere["best"] == 0.9 and everywhere["best_epoch"] == 1 and everywhere["at_best_val"] == 0.5
    without_val = summarise([r | {"val": None} for r in history])
    assert without_val["at_best_val"] is None and without_val["best_val_epoch"] is None
    assert summarise([]) is None


# ---------------------------------------------------------------------------- end to end


def smoke(tmp_path, policy, **fields) -> CompareConfig:
    return CompareConfig(**({"profile": "smoke", "methods": "ce,cb,law", "seeds": "0,1", "policy": policy,
                             "output_dir": str(tmp_path), "progress": False} | fields))


def test_compare_end_to_end_is_fair_and_resumable(tmp_path, policy):
    cfg = smoke(tmp_path, policy)
    results = compare(cfg)
    out = build_experiment(cfg).out

    runs = {(r["method"], r["seed"]): r for r in results["runs"]}
    assert set(runs) == {(m, s) for m in ("ce", "cb", "law", "law-twin") for s in (0, 1)}
    for seed in (0, 1):  # identical data for every method of a seed
        loaded = {m: json.loads((out / "runs" / f"{m}__seed{seed}" / "results.json").read_text())
                  for m in ("ce", "cb", "law")}
        sizes = {m: (r["dataset"]["train"], r["dataset"]["val"], r["dataset"]["test"],
                     round(r["dataset"]["noisy_fraction"], 6)) for m, r in loaded.items()}
        assert len(set(sizes.values())) == 1, sizes
        epochs = [h["epoch"] for h in loaded["law"]["history"]]
        assert tuple(epochs) == build_experiment(cfg).schedule.report_epochs()
        assert all("accuracy" in h["test"] for h in loaded["law"]["history"])
        assert len(loaded["ce"]["history"]) == build_experiment(cfg).schedule.epochs

    # The table's numbers are the mean over seeds of each run's own results.
    ce_last = [runs[("ce", s)]["last"] for s in (0, 1)]
    assert results["summary"]["ce"]["last"][0] == pytest.approx(sum(ce_last) / 2)
    table = (out / "table.md").read_text()
    assert "profile `smoke`" in table and "| CE | 2 |" in table and "LAW" in table
    assert f"{100 * sum(ce_last) / 2:.2f}" in table
    # Unit weights train on the whole batch; LAW's policy on at most all of it.
    assert results["summary"]["ce"]["effective_samples"][0] == 1.0 and "effective batch (%)" in table
    assert 0 < results["summary"]["law"]["effective_samples"][0] <= 1.0
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 8
    saved = json.loads((out / "results.json").read_text())
    assert saved["environment"]["code_revision"] and saved["seeds"] == [0, 1]
    assert any(f.name.startswith("events.out.tfevents") for f in (out / "runs" / "law__seed0").iterdir())

    # Re-running skips finished runs; a run killed mid-way (folder, no results) is redone.
    finished = out / "runs" / "ce__seed0" / "results.json"
    stamp = finished.stat().st_mtime_ns
    killed = out / "runs" / "cb__seed1"
    for f in killed.iterdir():
        if f.name == "results.json":
            f.unlink()
    again = compare(cfg)
    assert finished.stat().st_mtime_ns == stamp
    assert (killed / "results.json").is_file()
    assert again["summary"]["ce"]["last"] == results["summary"]["ce"]["last"]

    # A re-run with fewer methods and seeds still reports every finished run of the comparison.
    subset = compare(smoke(tmp_path, policy, methods="ce", seeds="0"))
    assert {(r["method"], r["seed"]) for r in subset["runs"]} == set(runs)
    assert subset["summary"]["cb"]["last"] == again["summary"]["cb"]["last"] and subset["seeds"] == [0, 1]
    assert "| CB | 2 |" in (out / "table.md").read_text()
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 8

    # Other settings in the same folder are refused.
    with pytest.raises(ConfigError, match="other settings"):
        compare(smoke(tmp_path, policy, model="small_cnn"))


def test_law_can_join_a_finished_baseline_comparison_but_its_policy_is_then_fixed(tmp_path, policy):
    baselines = compare(smoke(tmp_path, None, methods="ce", seeds="0"))
    joined = compare(smoke(tmp_path, policy, methods="ce,law", seeds="0"))
    assert joined["summary"]["ce"] == baselines["summary"]["ce"]
    assert "law" in joined["summary"]
    other = tmp_path / "other_policy.pt"
    other.write_bytes(open(policy, "rb").read())
    with pytest.raises(ConfigError, match="law_policy"):
        compare(smoke(tmp_path, str(other), methods="ce,law", seeds="0"))


def test_parallel_jobs_give_the_same_numbers(tmp_path, policy):
    serial = compare(smoke(tmp_path, policy, methods="ce", seeds="0,1", name="serial", plots=False))
    parallel = compare(smoke(tmp_path, policy, methods="ce", seeds="0,1", name="parallel", plots=False,
                             jobs=2, threads=2))
    for a, b in zip(serial["runs"], parallel["runs"]):
        assert a["last"] == pytest.approx(b["last"], abs=1e-6) and a["best"] == pytest.approx(b["best"], abs=1e-6)


def test_imbalanced_table_has_the_extra_columns_and_minority_plot(tmp_path, policy):
    pytest.importorskip("matplotlib")
    results = compare(smoke(tmp_path, policy, suite="cifar10-step", methods="ce,cb", seeds="0"))
    table = results["table"]
    for column in ("balanced acc", "macro F1", "mean AUC"):
        assert column in table
    assert any(p.endswith("weights_minority.png") for p in results["plots"])


def test_law_compare_flags_are_the_config_fields(tmp_path, policy):
    from law.cli import main

    assert main(["compare", "--suite", "cifar10-noisy", "--profile", "smoke", "--methods", "ce", "--seeds", "3",
                 "--output-dir", str(tmp_path), "--no-plots", "--no-progress"]) == 0
    assert (tmp_path / "cifar10-noisy__smoke" / "runs" / "ce__seed3" / "results.json").is_file()


def test_the_cifar10n_suite_trains_on_the_human_labels(tmp_path, policy):
    from test_data import write_cifar10n, write_cifar10n_tree

    clean = write_cifar10n_tree(tmp_path / "tree")
    labels = write_cifar10n(tmp_path / "human.pt", clean.astype(np.int64))
    with pytest.raises(ConfigError, match="noise_file"):
        compare(smoke(tmp_path, policy, suite="cifar10n", methods="ce", seeds="0", data_root=str(tmp_path / "tree")))
    results = compare(smoke(tmp_path, policy, suite="cifar10n", methods="ce,law", seeds="0",
                            data_root=str(tmp_path / "tree"), noise_file=str(tmp_path / "human.pt")))
    run = json.loads((tmp_path / "cifar10n__smoke" / "runs" / "ce__seed0" / "results.json").read_text())
    assert "CIFAR-10N human labels 'worse'" in run["dataset"]["bias"]
    assert 0.2 < run["dataset"]["noisy_fraction"] < 0.6  # the file's 'worse' set flips ~40 %
    assert {r["method"] for r in results["runs"]} == {"ce", "law", "law-twin"}
    assert (labels["worse_label"] != clean).mean() > 0.2
    table = (tmp_path / "cifar10n__smoke" / "table.md").read_text()
    assert "CIFAR-10N human labels 'worse'" in table and "0 % cifar10n" not in table  # the setup line names it


def test_the_imbalanced_search_box_reaches_class_balanced_tail_weights():
    """A weight is at most 2 before the batch mean rescales it, so up-weighting the tail means pulling the
    head far below 1. The imbalanced profiles' b range lets the search do what class-balanced weighting
    does; the default range (made for down-weighting noisy minorities) cannot even at its corner."""
    from baselines.class_balanced import class_balanced_weights
    from law.features import FEATURE_NAMES, log_frequency_by_class, zscore_columns
    from law.methods import MethodConfig
    from law.policy import policy_weights

    profile = get_suite("cifar10-longtail").profile("cpu")
    counts = torch.tensor([int(1209 * 100 ** (-c / 9)) for c in range(10)])  # the profile's class sizes
    head, tail = torch.arange(3), torch.arange(7, 10)
    batches = torch.multinomial(counts.float(), 100 * 128, replacement=True,
                                generator=torch.Generator().manual_seed(0)).reshape(100, 128)
    label = FEATURE_NAMES.index("label")

    def tail_over_head(env: EnvConfig, action_label: float, action_b: float) -> float:
        action = np.zeros(env.action_dim, np.float32)
        action[env.features.index("label")], action[-1] = action_label, action_b
        full = torch.from_numpy(env.theta(action))
        in_tail, in_head = torch.isin(batches, tail), torch.isin(batches, head)
        features = torch.zeros(*batches.shape, len(FEATURE_NAMES))
        features[..., label] = torch.stack([zscore_columns(log_frequency_by_class(counts)[labels][:, None])[:, 0]
                                            for labels in batches])
        weights = policy_weights(features, full[:-1], full[-1])  # each batch scaled to mean 1
        return (weights[in_tail].mean() / weights[in_head].mean()).item()  # pooled over the batches

    cb = class_balanced_weights(counts, MethodConfig().cb_beta)
    cb_ratio = (cb[tail].mean() / cb[head].mean()).item()
    imbalanced, default = EnvConfig(**profile.search_env), EnvConfig(features=("loss", "label"))
    grid = [(a, b) for a in (-1.0, -0.6, -0.3, -0.1) for b in (-1.0, 0.0)]
    assert max(tail_over_head(imbalanced, a, b) for a, b in grid) > cb_ratio
    assert max(tail_over_head(default, a, b) for a, b in grid) < cb_ratio / 4
    # An exploring action near the neutral one (action 0) moves weight to the tail only in the centred box.
    assert tail_over_head(imbalanced, -0.3, 0.0) > 3.0 > 1.2 > tail_over_head(default, -0.3, 0.0)
