"""Bad inputs and interruptions: each gets a clear one-line error before any work (or a
clearly marked result), nothing is lost, and nothing is left behind."""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from law.cli import main
from law.policy_file import load_policy
from law.errors import LawError
from law.search import CHECKPOINT

TINY = ["--model", "mlp", "--synthetic-train-size", "300", "--val-size", "60", "--synthetic-test-size", "100",
        "--batch-size", "32", "--no-progress"]
TINY_SEARCH = TINY + ["--num-stages", "4", "--warmup-stages", "1", "--steps-per-stage", "3", "--lr-drop-stages", "3",
                      "--episodes", "2", "--eval-every", "2", "--fdu-batch-size", "8", "--min-buffer", "2"]


def law(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "law.cli", *args], capture_output=True, text=True,
                          timeout=kwargs.pop("timeout", 300), **kwargs)


def one_line_error(result: subprocess.CompletedProcess, command: str, field: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"law {command}: error: {field}: "), line
    return line


# 1. --val-size 0 ---------------------------------------------------------------------------


def test_train_without_a_validation_split_works_and_says_what_it_cannot_report(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "2", "--val-size", "0", "--output-dir", str(tmp_path),
                 "--run-name", "run"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["dataset"]["val"] == 0 and all(r["val"] is None for r in results["history"])
    assert results["summary"]["at_best_val"] is None and results["summary"]["last"] >= 0


@pytest.mark.parametrize("command", ["search", "apply"])
def test_search_and_apply_refuse_no_validation_split_before_any_work(command, tmp_path):
    extra = ["--policy", str(tmp_path / "p.pt")] if command == "apply" else TINY_SEARCH
    if command == "apply":
        write_tiny_policy(tmp_path / "p.pt")
    result = law(command, *extra, "--val-size", "0", "--output-dir", str(tmp_path / "out"))
    assert "validation" in one_line_error(result, command, "val_size")
    assert not (tmp_path / "out").exists()


def write_tiny_policy(path: Path) -> None:
    from agents import DDPG, DDPGConfig
    from envs import EnvConfig
    from law.config import to_dict
    from law.data import DataConfig
    from law.io import atomic_save
    from law.policy_file import policy_file
    from law.trainer import OptimConfig

    env = EnvConfig(model="mlp", num_stages=4, warmup_stages=1, steps_per_stage=3, lr_drop_stages=(3,))
    agent = DDPG(env.num_stages, -1.0, 1.0, DDPGConfig(), action_dim=env.action_dim)
    data = DataConfig(synthetic_train_size=300, val_size=60, synthetic_test_size=100, batch_size=32)
    atomic_save(policy_file(agent.greedy_state(), env, to_dict(data, OptimConfig())), path)


# 2. unusable output folders ----------------------------------------------------------------


@pytest.mark.parametrize("command", ["train", "search", "apply", "compare"])
@pytest.mark.parametrize("where", ["a file", "under a file"])
def test_an_unusable_output_dir_is_refused_before_any_work(command, where, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    output = blocker if where == "a file" else blocker / "runs"
    extra = {"train": TINY + ["--epochs", "1"], "search": TINY_SEARCH,
             "apply": ["--policy", str(tmp_path / "p.pt"), "--no-progress"],
             "compare": ["--profile", "smoke", "--methods", "ce", "--seeds", "0", "--no-progress"]}[command]
    write_tiny_policy(tmp_path / "p.pt")
    result = law(command, *extra, "--output-dir", str(output), timeout=120)
    assert "blocker" in one_line_error(result, command, "output_dir")


def test_an_unusable_cache_dir_is_refused_naming_the_variable(tmp_path):
    from test_data import write_image_tree

    write_image_tree(tmp_path / "tree", side=8)
    (tmp_path / "cache").write_text("a file")
    result = law("train", "--dataset", "imagefolder", "--data-root", str(tmp_path / "tree"), "--val-size", "3",
                 "--batch-size", "4", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path / "out"),
                 env={**os.environ, "LAW_CACHE_DIR": str(tmp_path / "cache")})
    one_line_error(result, "train", "LAW_CACHE_DIR")


# 3. --resume takes operational flags only -----------------------------------------------------


def test_resume_refuses_flags_that_would_change_the_search_and_names_them(tmp_path):
    (tmp_path / "run").mkdir()
    torch.save({}, tmp_path / "run" / CHECKPOINT)
    result = law("search", "--resume", str(tmp_path / "run"), "--lr", "0.05", "--episodes", "9")
    line = one_line_error(result, "search", "resume")
    assert "--lr" in line and "--episodes" in line and "--workers" in line


# 6. Ctrl-C, and --resume of a finished search ----------------------------------------------------


def test_ctrl_c_prints_the_run_folder_and_the_resume_command_and_resume_finishes(tmp_path):
    driver = subprocess.Popen([sys.executable, "-m", "law.cli", "search", *TINY_SEARCH, "--num-stages", "12",
                               "--lr-drop-stages", "6", "--output-dir", str(tmp_path), "--run-name", "run"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              # as from a shell: Ctrl-C at its default, whatever the test process inherited
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 180
    while not (tmp_path / "run" / CHECKPOINT).exists() and time.time() < deadline:
        time.sleep(0.1)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=120)
    assert driver.returncode == 130, err
    assert f"Continue it with: law search --resume {tmp_path / 'run'}" in err

    resumed = law("search", "--resume", str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr
    started = time.perf_counter()
    again = law("search", "--resume", str(tmp_path / "run"))
    assert again.returncode == 0 and "has finished already" in again.stderr
    assert "Started a local Ray" not in again.stderr and time.perf_counter() - started < 60


# 7. early failures leave no debris; late ones are marked --------------------------------------------


def test_a_run_that_fails_at_its_start_leaves_no_folder(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "1", "--batch-size", "100000", "--output-dir", str(tmp_path),
                 "--run-name", "big"]) == 2
    assert "--batch-size" in capsys.readouterr().err
    assert not (tmp_path / "big").exists()


def test_a_diverged_run_keeps_a_results_file_marked_diverged(tmp_path, capsys):
    assert main(["train", *TINY, "--epochs", "2", "--lr", "1e6", "--output-dir", str(tmp_path),
                 "--run-name", "nan"]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    results = json.loads((tmp_path / "nan" / "results.json").read_text())
    assert results["status"] == "diverged" and "NaN" in results["error"]


# 9. noise only where asked for, and every run says what it applied --------------------------------------


def test_own_data_gets_no_label_noise_unless_asked_and_the_run_says_so(tmp_path, capsys):
    from test_data import write_image_tree

    write_image_tree(tmp_path / "tree", side=8, per_class=8)
    os.environ.setdefault("LAW_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["train", "--dataset", "imagefolder", "--data-root", str(tmp_path / "tree"), "--val-size", "3",
                 "--batch-size", "4", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path),
                 "--run-name", "own"]) == 0
    assert "applied: no label noise, no imbalance" in capsys.readouterr().err
    assert json.loads((tmp_path / "own" / "results.json").read_text())["dataset"]["noisy_fraction"] == 0.0
    assert main(["train", *TINY, "--epochs", "1", "--output-dir", str(tmp_path), "--run-name", "demo"]) == 0
    assert "applied: symmetric label noise at rate 0.4" in capsys.readouterr().err


# 10. a collapsed network -------------------------------------------------------------------------------


def test_a_network_that_collapses_to_one_class_is_stopped_and_marked(tmp_path, capsys):
    # Two classes, the minority one kept at 1 %: the network predicts the majority for everything.
    assert main(["train", "--model", "mlp", "--epochs", "8", "--synthetic-train-size", "600", "--val-size", "60",
                 "--synthetic-test-size", "100", "--batch-size", "32", "--synthetic-classes", "2",
                 "--imbalance", "step", "--step-minority-classes", "1", "--step-keep-fraction", "0.01",
                 "--synthetic-difficulty", "2", "--no-progress", "--output-dir", str(tmp_path),
                 "--run-name", "run"]) == 2
    assert "predicts one class for every validation sample" in capsys.readouterr().err
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["status"] == "collapsed" and len(results["history"]) == 5
    assert all(r["val"]["predicted_classes"] == 1 for r in results["history"])


# 11. a dead Ray head ---------------------------------------------------------------------------------------


def test_a_dead_cluster_address_fails_within_seconds_and_a_plain_search_starts_its_own(tmp_path):
    record = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    planted = not record.exists()
    if planted:  # what `ray start --head` leaves behind after its head has gone away
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text("127.0.0.1:9")
    try:
        started = time.perf_counter()
        result = law("search", *TINY_SEARCH, "--address", "127.0.0.1:9", "--output-dir", str(tmp_path))
        assert "no Ray cluster answers at 127.0.0.1:9" in one_line_error(result, "search", "address")
        assert time.perf_counter() - started < 60 and not any(tmp_path.iterdir())
        plain = law("search", *TINY_SEARCH, "--output-dir", str(tmp_path), "--run-name", "plain", timeout=240)
        assert plain.returncode == 0, plain.stderr
    finally:
        if planted:
            record.unlink()


# 12. files that are not policies; a light command line -----------------------------------------------------


class NotAPolicy:
    pass


def test_a_foreign_pickle_is_not_called_a_policy_and_no_unsafe_advice_is_given(tmp_path):
    torch.save({"format": "law-policy", "thing": NotAPolicy()}, tmp_path / "evil.pt")
    with pytest.raises(LawError) as error:
        load_policy(tmp_path / "evil.pt")
    assert "is not a LAW policy file: it holds Python objects" in str(error.value)
    assert "weights_only=False" not in str(error.value)
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(LawError, match="torch cannot read it"):
        load_policy(tmp_path / "cut.pt")


def test_law_help_loads_no_command_module():
    code = ("import sys; from law.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'ray', 'torchvision', 'tensorboard') if m in sys.modules]\n"
            "print('HEAVY', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "HEAVY []" in out and "search" in out and "compare" in out


def test_law_apply_help_shows_the_policys_task_as_the_defaults(tmp_path, capsys):
    write_tiny_policy(tmp_path / "p.pt")
    with pytest.raises(SystemExit):
        main(["apply", "--help"])
    assert "the policy's" in " ".join(capsys.readouterr().out.replace("│", " ").split())
    with pytest.raises(SystemExit):
        main(["apply", "--policy", str(tmp_path / "p.pt"), "--help"])
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    # The tiny policy was searched with an MLP, 4 stages and batch 32; the class defaults differ.
    assert "(default: mlp)" in text and "(default: 4)" in text and "(default: 32)" in text
