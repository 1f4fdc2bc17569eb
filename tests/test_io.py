"""Artifacts are written atomically: a failed write leaves the previous file intact."""
import json
import os

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
