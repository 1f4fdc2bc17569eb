"""`law` end to end on tiny data: results files, and clear errors before any work."""
import json

import pytest

from law.cli import main

TINY = ["--model", "mlp", "--epochs", "2", "--synthetic-train-size", "300", "--val-size", "60",
        "--synthetic-test-size", "100", "--batch-size", "32", "--no-progress"]


@pytest.mark.parametrize("method", ["ce", "focal", "cb", "low", "l2rw", "spl", "ohem"])
def test_train_every_method_end_to_end(method, tmp_path, capsys):
    assert main(["train", "--method", method, "--output-dir", str(tmp_path), "--run-name", "run",
                 "--meta-size", "60", "--meta-batch-size", "30", *TINY]) == 0
    assert "test accuracy  last" in capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["MethodConfig"]["method"] == method
    assert results["seed"] == 0 and results["environment"]["torch"]
    assert len(results["history"]) == 2
    assert 0 <= results["summary"]["last"] <= 1
    assert results["dataset"]["noisy_fraction"] > 0.2  # `law train` defaults to 40 % symmetric noise


def test_same_seed_same_results(tmp_path):
    for name in ("a", "b"):
        assert main(["train", "--output-dir", str(tmp_path), "--run-name", name, *TINY]) == 0
    a, b = (json.loads((tmp_path / n / "results.json").read_text()) for n in ("a", "b"))
    assert [r["train"]["mean_loss"] for r in a["history"]] == [r["train"]["mean_loss"] for r in b["history"]]
    assert a["summary"] == b["summary"]


@pytest.mark.parametrize("argv, message", [
    (["--method", "magic"], "method: unknown method 'magic'; known: ce"),
    (["--model", "resnet9000"], "model: unknown model 'resnet9000'; known:"),
    (["--lr", "-1"], "lr: must be > 0"),
    (["--dataset", "imagefolder", "--data-root", "/nonexistent/law"], "/nonexistent/law"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/law"], "--download"),
])
def test_bad_input_fails_before_training_with_a_clear_message(argv, message, tmp_path, capsys):
    assert main(["train", "--output-dir", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not any(tmp_path.rglob("results.json"))


def test_existing_run_folder_is_not_overwritten(tmp_path, capsys):
    assert main(["train", "--output-dir", str(tmp_path), "--run-name", "run", *TINY]) == 0
    assert main(["train", "--output-dir", str(tmp_path), "--run-name", "run", *TINY]) == 2
    assert "already exists" in capsys.readouterr().err


def test_help_of_every_command_renders(capsys):
    for command in ("train", "search", "apply", "models"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--noise-rate" in out and "--gpus-per-worker" in out and "--policy" in out
