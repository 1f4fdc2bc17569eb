"""--export-weights: every training sample's loss and weight per stage, as the trainer applied them."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torchvision.io import write_png

from law.cli import main
from law.compare import compare
from law.bench.experiment import CompareConfig
from law.data import DataConfig, load_data
from law.errors import ConfigError
from law.sample_weights import COLUMNS, FILENAME, SampleWeightsLog
from law.stats import WeightStats


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_weight_stats_keep_each_samples_sums_by_index():
    stats = WeightStats(num_classes=2, keep_weights=False, num_samples=4)
    stats.update(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 1.5]), torch.tensor([0, 1]), indices=torch.tensor([3, 1]))
    stats.update(torch.tensor([3.0, 4.0]), torch.tensor([1.0, 1.0]), torch.tensor([0, 1]), indices=torch.tensor([3, 0]))
    loss, weight, count = stats.sample_sums()
    assert loss.tolist() == [4.0, 2.0, 0.0, 4.0]
    assert weight.tolist() == [1.0, 1.5, 0.0, 1.5]
    assert count.tolist() == [1.0, 1.0, 0.0, 2.0]
    stats.reset()
    assert stats.sample_sums()[2].sum() == 0


def test_the_quick_policy_exports_lower_weights_for_mislabelled_samples_and_inspect_agrees(tmp_path, capsys):
    """The issue's acceptance run: the shipped quick policy on an unseen seed, its weights exported."""
    run = tmp_path / "run"
    assert main(["apply", "--policy", "quick-synthetic-noise60", "--seed", "1", "--export-weights",
                 "--output-dir", str(tmp_path), "--run-name", "run", "--no-progress"]) == 0
    assert f"sample weights: {run / FILENAME}" in capsys.readouterr().out
    results = json.loads((run / "results.json").read_text())
    rows = read_rows(run / FILENAME)
    assert tuple(rows[0]) == COLUMNS + ("loss_twin",)
    train_size = results["config"]["DataConfig"]["train_size"] or None
    stages = sorted({int(r["stage"]) for r in rows})
    num_stages = results["config"]["EnvConfig"]["num_stages"]
    warmup = results["config"]["EnvConfig"]["warmup_stages"]
    assert stages == list(range(num_stages))
    per_stage = len(rows) // num_stages
    assert train_size is None or per_stage == train_size
    assert all(len({r["index"] for r in rows if int(r["stage"]) == s}) == per_stage for s in stages)

    for stage in stages:
        mine = [r for r in rows if int(r["stage"]) == stage and r["weight"]]
        noisy = np.mean([float(r["weight"]) for r in mine if r["noisy"] == "1"])
        clean = np.mean([float(r["weight"]) for r in mine if r["noisy"] == "0"])
        assert abs(np.mean([float(r["weight"]) for r in mine]) - 1) < 0.02  # batch mean 1, as applied
        if stage < warmup:  # unweighted, and the twin is the target itself
            assert noisy == clean == 1.0
            assert all(r["loss"] == r["loss_twin"] for r in mine)
        else:
            assert noisy < clean
    # The truth columns follow the injected noise.
    assert all((r["label"] != r["true_label"]) == (r["noisy"] == "1") for r in rows)

    assert main(["inspect", str(run), "--no-plots"]) == 0
    report = json.loads((run / "inspection.json").read_text())
    acting = [s for s in stages if s >= warmup]
    assert report["acting_stages"] == acting
    first = [r for r in rows if int(r["stage"]) == stages[0]]
    mean_weight = np.mean([[float(r["weight"]) for r in rows if int(r["stage"]) == s] for s in acting], axis=0)
    truth = [r["noisy"] == "1" for r in first]
    assert report["run"]["weight"]["auroc"] == pytest.approx(roc_auc_score(truth, -mean_weight), abs=1e-9)
    last = [r for r in rows if int(r["stage"]) == acting[-1]]
    assert report["stages"][-1]["small-loss"]["auroc"] == pytest.approx(
        roc_auc_score([r["noisy"] == "1" for r in last], [float(r["loss"]) for r in last]), abs=1e-9)
    suspects = read_rows(run / "suspects.csv")
    assert len(suspects) == sum(truth) and list(suspects[0]) == ["index", "path", "label", "score", "weight", "loss"]
    lowest = {r["index"] for r, w in sorted(zip(first, mean_weight), key=lambda p: p[1])[:10]}
    assert {r["index"] for r in suspects[:10]} == lowest


def write_tree(root: Path, per_class: int = 4) -> None:
    for split in ("train", "test"):
        for c, name in enumerate(("cat", "dog", "emu")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                write_png(torch.full((3, 8, 8), 40 * c + 10 * i, dtype=torch.uint8), str(folder / f"{i}.png"))


@pytest.mark.parametrize("noise", ["symmetric", "none"])
def test_law_train_exports_a_row_per_sample_and_stage_with_its_file(tmp_path, monkeypatch, noise):
    monkeypatch.setenv("LAW_CACHE_DIR", str(tmp_path / "cache"))
    write_tree(tmp_path / "tree")
    args = ["train", "--dataset", "imagefolder", "--data-root", str(tmp_path / "tree"), "--val-size", "3",
            "--batch-size", "4", "--epochs", "4", "--stage-epochs", "3", "--export-weights", "--no-progress",
            "--output-dir", str(tmp_path / "out"), "--run-name", "run", "--noise", noise, "--noise-rate", "0.9"]
    assert main(args) == 0
    rows = read_rows(tmp_path / "out" / "run" / FILENAME)
    bundle = load_data(DataConfig(dataset="imagefolder", data_root=str(tmp_path / "tree"), val_size=3,
                                  batch_size=4, noise=noise, noise_rate=0.9), seed=0)
    assert [int(r["stage"]) for r in rows] == [0] * 9 + [1] * 9  # epochs 1-3, then 4
    classes = ["cat", "dog", "emu"]
    for r, label in zip(rows, bundle.train.labels.tolist() * 2):
        assert Path(r["path"]).is_file() and int(r["label"]) == label
        if noise == "none":  # nothing applied: the truth is not known, so not claimed
            assert r["true_label"] == r["noisy"] == ""
        else:
            assert classes[int(r["true_label"])] == Path(r["path"]).parent.name
    # 9 samples in batches of 4: each epoch leaves one out, and a sample left out of a whole stage has no values.
    one_epoch = [r for r in rows if int(r["stage"]) == 1]
    assert sum(r["weight"] == "" for r in one_epoch) == 1 and sum(r["loss"] == "" for r in one_epoch) == 1
    assert all(float(r["weight"]) == 1.0 for r in rows if r["weight"])  # CE: every weight is 1


def test_a_failed_run_leaves_no_sample_file(tmp_path):
    bundle = load_data(DataConfig(synthetic_train_size=60, synthetic_test_size=10, val_size=10), seed=0)
    with pytest.raises(RuntimeError):
        with SampleWeightsLog(tmp_path, bundle) as log:
            stats = WeightStats(bundle.num_classes, keep_weights=False, num_samples=len(bundle.train))
            log.add_stage(0, stats)
            raise RuntimeError("the run died")
    assert list(tmp_path.iterdir()) == []


def test_law_compare_exports_every_runs_weights_and_inspect_reads_the_folder(tmp_path, capsys):
    cfg = CompareConfig(suite="cifar10-noisy", profile="smoke", methods="ce,law", seeds="0", episodes=2,
                        output_dir=str(tmp_path), plots=False, progress=False, export_weights=True)
    compare(cfg)
    folder = tmp_path / "cifar10-noisy__smoke"
    law_rows = read_rows(folder / "runs" / "law__seed0" / FILENAME)
    assert "loss_twin" in law_rows[0] and "loss_twin" not in read_rows(folder / "runs" / "ce__seed0" / FILENAME)[0]
    assert {int(r["stage"]) for r in law_rows} == {0, 1, 2}
    capsys.readouterr()
    assert main(["inspect", str(folder), "--no-plots"]) == 0
    table = (folder / "detection.md").read_text()
    assert "| CE | small-loss |" in table and "| CE (LAW's twin) | small-loss (twin) |" in table
    assert (folder / "runs" / "law__seed0" / "suspects.csv").is_file()


def test_law_compare_refuses_to_export_from_data_parallel_runs_before_any_work(tmp_path):
    cfg = CompareConfig(suite="cifar10-noisy", profile="smoke", methods="ce", seeds="0", train_workers=2,
                        output_dir=str(tmp_path), progress=False, export_weights=True)
    with pytest.raises(ConfigError, match="export_weights"):
        compare(cfg)
    assert list(tmp_path.iterdir()) == []
