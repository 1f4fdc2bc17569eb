"""Artifacts are written atomically: a failed write leaves the previous file intact."""
import json
import os
import signal

import pytest
import torch

from law.io import atomic_save, atomic_write_json, environment_info


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("cannot pickle this")


def test_failed_write_keeps_the_old_file_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"step": 1}, path)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        atomic_save({"step": 2, "bad": Unpicklable()}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_json_round_trip_and_parent_folders_created(tmp_path):
    path = tmp_path / "a" / "b" / "results.json"
    atomic_write_json({"accuracy": 0.5, "seeds": [0, 1]}, path)
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "seeds": [0, 1]}


def test_environment_info_records_versions():
    info = environment_info()
    assert info["torch"] == torch.__version__
    assert {"torchvision", "numpy", "gymnasium", "ray", "python", "code_revision"} <= set(info)


class _InterruptsWhilePickled:
    """Sends this process a Ctrl-C while torch.save is pickling it: an interrupt inside the write, every time."""

    def __reduce__(self):
        os.kill(os.getpid(), signal.SIGINT)
        return dict, ((("kept", 1),),)


@pytest.fixture
def ctrl_c_as_in_a_shell():
    """Python's own SIGINT handler, whatever the test process inherited (a background runner ignores SIGINT)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_inside_a_checkpoint_write_waits_for_the_rename_then_interrupts(tmp_path, ctrl_c_as_in_a_shell):
    path = tmp_path / "checkpoint.pt"
    atomic_save({"old": 0}, path)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"state": _InterruptsWhilePickled()}, path)
    assert torch.load(path, weights_only=False) == {"state": {"kept": 1}}  # the new file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
