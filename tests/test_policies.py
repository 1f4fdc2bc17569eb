"""The policies shipped inside the package: each loads safely, fits the current feature spec,
and `law apply --policy NAME` runs it from the installed package, offline."""
import json
import os

import pytest
import torch

from law.cli import main
from law.features import FEATURE_SPEC
from law.policy_file import SHIPPED, greedy_policy, load_policy, policy_path, shipped_policies

SHIPPED_NAMES = sorted(shipped_policies())


def test_policies_are_shipped_and_listed(capsys):
    assert {"quick-synthetic-noise60", "noisy-cifar10-cpu", "longtail-cifar10-cpu"} <= set(SHIPPED_NAMES)
    assert main(["policies"]) == 0
    out = capsys.readouterr().out
    for name in SHIPPED_NAMES:
        assert name in out


@pytest.mark.parametrize("name", SHIPPED_NAMES)
def test_a_shipped_policy_loads_with_weights_only_and_matches_the_feature_spec(name):
    info = shipped_policies()[name]
    path = policy_path(name)
    assert path == SHIPPED / info["file"]
    raw = torch.load(path, map_location="cpu", weights_only=True)  # no pickled code in a shipped file
    assert raw["feature_spec"] == dict(FEATURE_SPEC)
    policy = load_policy(path)
    assert policy["config"]["DataConfig"]["data_root"] == ""  # nothing of the machine that searched it
    assert {"description", "measured", "searched", "code_revision"} <= set(info)
    assert greedy_policy(policy).num_stages == policy["env"]["num_stages"]


def test_law_apply_runs_the_shipped_quick_policy_by_name(tmp_path, capsys):
    assert main(["apply", "--policy", "quick-synthetic-noise60", "--synthetic-train-size", "300", "--val-size",
                 "60", "--synthetic-test-size", "100", "--steps-per-stage", "2", "--no-progress",
                 "--output-dir", str(tmp_path), "--run-name", "run"]) == 0
    assert "policy vs unweighted twin" in capsys.readouterr().out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["policy_kind"] == "actor" and len(results["stages"]) == 7


@pytest.mark.skipif(not os.environ.get("LAW_CIFAR10_JPG"), reason="set LAW_CIFAR10_JPG to the CIFAR-10 JPEG tree")
@pytest.mark.parametrize("name, bias", [("noisy-cifar10-cpu", ("noise", "symmetric")),
                                        ("longtail-cifar10-cpu", ("imbalance", "longtail"))])
def test_the_shipped_cifar_policies_run_on_the_cifar10_tree_by_name(tmp_path, name, bias):
    """What a user with the images does: name the policy and the data; the rest is the policy's task."""
    assert main(["apply", "--policy", name, "--data-root", os.environ["LAW_CIFAR10_JPG"],
                 "--train-size", "256", "--val-size", "100", "--test-size", "100", "--steps-per-stage", "1",
                 "--no-progress", "--output-dir", str(tmp_path), "--run-name", "run"]) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    field, value = bias
    assert results["config"]["DataConfig"][field] == value and results["config"]["EnvConfig"]["model"] == "small_cnn"
    assert len(results["stages"]) == 8
