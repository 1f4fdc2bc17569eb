"""law inspect: detectors of mislabelled samples judged on a known mask, and clear refusals."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from law.cli import main
from law.detection import auroc, precision_recall_at_k, read_sample_table
from law.errors import LawError
from law.sample_weights import COLUMNS, FILENAME


def test_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 5, 300).astype(float)  # many ties
    truth = rng.random(300) < 0.3
    assert auroc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    assert auroc(np.ones(10), truth[:10]) == 0.5
    assert np.isnan(auroc(scores[:5], np.zeros(5, bool)))


def test_precision_and_recall_at_k():
    truth = np.array([1, 0, 1, 0, 0], bool)
    assert precision_recall_at_k(np.array([5, 4, 3, 2, 1.0]), truth, 2) == (0.5, 0.5)
    assert precision_recall_at_k(np.array([5, 1, 4, 2, 1.0]), truth, 2) == (1.0, 1.0)


def write_run(folder: Path, weights: list[list[float]], noisy: list[int] | None, losses=None) -> Path:
    """A run folder in the real on-disk format: results.json and sample_weights.csv."""
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps({"kind": "train"}))
    with open(folder / FILENAME, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for stage, stage_weights in enumerate(weights):
            for i, w in enumerate(stage_weights):
                loss = losses[stage][i] if losses else 1.0
                writer.writerow([stage, 100 + i, f"img/{i}.jpg", 0, "" if noisy is None else noisy[i],
                                 "" if noisy is None else noisy[i], loss, w])
    return folder


def test_a_perfect_detector_scores_one_and_a_constant_one_half(tmp_path, capsys):
    noisy = [1, 0, 0, 1, 0, 0, 0, 1]
    perfect = [0.2 if n else 1.5 for n in noisy]
    run = write_run(tmp_path / "run", [[1.0] * 8, perfect, perfect], noisy,
                    losses=[[1.0] * 8, [2.0] * 8, [2.0] * 8])
    assert main(["inspect", str(run), "--no-plots"]) == 0
    out = capsys.readouterr().out
    report = json.loads((run / "inspection.json").read_text())
    assert report["acting_stages"] == [1, 2]  # stage 0 weights nothing
    assert report["stages"][0]["weight"]["auroc"] == 0.5
    assert report["run"]["weight"] == {"auroc": 1.0, "precision_at_k": 1.0, "recall_at_k": 1.0}
    assert report["run"]["small-loss"]["auroc"] == 0.5  # the loss is the same for everyone
    suspects = list(csv.DictReader(open(run / "suspects.csv")))
    assert sorted(int(s["index"]) for s in suspects) == [100, 103, 107]  # k = the 3 known-wrong labels
    assert suspects[0]["path"] == "img/0.jpg" and "AUROC" in out


def test_without_a_known_truth_only_suspects_are_listed(tmp_path, capsys):
    run = write_run(tmp_path / "run", [[1.0, 0.1, 2.0, 0.9] * 10], None)
    assert main(["inspect", str(run), "--top", "3", "--no-plots"]) == 0
    assert "label truth unknown" in capsys.readouterr().out
    suspects = list(csv.DictReader(open(run / "suspects.csv")))
    assert [s["index"] for s in suspects] == ["101", "105", "109"]
    assert json.loads((run / "inspection.json").read_text())["run"] == {}


def test_inspect_writes_the_plot(tmp_path):
    pytest.importorskip("matplotlib")
    run = write_run(tmp_path / "run", [[0.5, 1.5, 1.0, 1.0]], [1, 0, 0, 0])
    assert main(["inspect", str(run)]) == 0
    assert (run / "inspection.png").stat().st_size > 0


@pytest.mark.parametrize("make, message", [
    (lambda p: p, "is not a folder"),
    (lambda p: (p.mkdir(), p)[1], "is not a LAW run folder (no results.json)"),
    (lambda p: (p.mkdir(), (p / "results.json").write_text("{}"), p)[2], "has no exported weights"),
])
def test_bad_input_gets_one_clear_line(tmp_path, capsys, make, message):
    folder = make(tmp_path / "x")
    assert main(["inspect", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_file_that_is_not_a_sample_table_is_named(tmp_path):
    (tmp_path / FILENAME).write_text("a,b\n1,2\n")
    with pytest.raises(LawError, match="is not a LAW sample_weights.csv"):
        read_sample_table(tmp_path / FILENAME)


def test_an_unknown_rule_is_refused(tmp_path, capsys):
    run = write_run(tmp_path / "run", [[1.0, 0.5]], [1, 0])
    assert main(["inspect", str(run), "--rule", "magic"]) == 2
    assert "rule: unknown rule 'magic'" in capsys.readouterr().err
