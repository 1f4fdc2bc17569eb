"""The command line is made by tyro from the config dataclasses; bad values fail naming the field."""
from dataclasses import dataclass, field

import pytest
import torch

from law.commands import Search, flags_given, parse, peek
from law.errors import ConfigError
from law.methods import MethodConfig
from law.presets import search_preset
from law.trainer import OptimConfig


@dataclass
class Example:
    """An example config."""

    rate: float = 0.5
    """How fast."""
    name: str = "a"
    """Which one,
    across two lines."""
    flag: bool = False
    """Switch it on."""
    stages: tuple[int, ...] = (10, 13)
    """Stages at which to drop."""


@dataclass
class Command:
    example: Example = field(default_factory=Example)
    optim: OptimConfig = field(default_factory=OptimConfig)


def run(argv, default=None):
    return parse(Command, argv, default or Command(), "law example", "An example command.")


def test_flags_are_the_fields_with_their_types_and_defaults():
    assert run([]) == Command()
    cmd = run(["--rate", "2", "--name", "b", "--flag", "--stages", "1", "2", "3", "--lr", "0.3"])
    assert cmd.example == Example(rate=2.0, name="b", flag=True, stages=(1, 2, 3)) and cmd.optim.lr == 0.3
    cmd = run(["--no-flag", "--stages"], Command(Example(flag=True)))
    assert cmd.example.flag is False and cmd.example.stages == ()


def test_preset_defaults_survive_unset_flags_and_show_in_help(capsys):
    cmd = run(["--rate", "1"], Command(Example(name="preset"), OptimConfig(lr=0.01)))
    assert cmd.example.name == "preset" and cmd.example.rate == 1.0 and cmd.optim.lr == 0.01
    with pytest.raises(SystemExit) as exit_:
        run(["--help"], Command(Example(name="preset")))
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "Which one, across two lines. (default: preset)" in text and "How fast. (default: 0.5)" in text


def test_a_wrong_type_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_:
        run(["--rate", "fast"])
    assert exit_.value.code == 2 and "--rate" in capsys.readouterr().err


def test_search_flags_start_from_the_preset():
    preset = search_preset("quick")
    default = Search("quick", preset["SearchConfig"], preset["EnvConfig"], preset["DataConfig"], preset["OptimConfig"])
    cmd = parse(Search, ["--episodes", "5", "--data-path", "/x"], default, "law search", "")
    assert cmd.search.episodes == 5 and cmd.data.data_root == "/x"
    assert cmd.env == preset["EnvConfig"] and cmd.optim == preset["OptimConfig"]


def test_the_quick_long_tail_preset_is_the_quick_task_with_clean_labels_and_a_long_tail():
    from law.config import validate_all
    from law.data import load_data
    quick, longtail = search_preset("quick"), search_preset("quick-longtail")
    validate_all(*longtail.values())
    data = load_data(longtail["DataConfig"], seed=longtail["EnvConfig"].data_seed)
    counts = data.class_counts
    assert counts.max() / counts.min() == pytest.approx(20, rel=0.05), "as the preset's docstring says"
    assert torch.equal(data.train.labels, data.train.clean_labels), "no label noise"
    assert "label" in longtail["EnvConfig"].features
    assert longtail["OptimConfig"] == quick["OptimConfig"] and longtail["SearchConfig"] == quick["SearchConfig"]
    assert longtail["DDPGConfig"].pessimism > 0 and longtail["DDPGConfig"].n_critics > 1
    assert quick["DDPGConfig"].pessimism == 0, "measured: no help on the noisy task, and a 5-critic FDU costs"


def test_flags_given_names_fields_and_peek_reads_one_flag_early():
    argv = ["--no-progress", "--lr=0.1", "--data-path", "x", "--preset", "quick", "-h"]
    assert flags_given(argv) == ["progress", "lr", "data_root", "preset"]
    assert peek(argv, "--preset", "none") == "quick" and peek([], "--preset", "none") == "none"


@pytest.mark.parametrize("cfg, field", [
    (OptimConfig(lr=0), "lr"),
    (OptimConfig(momentum=1.5), "momentum"),
    (OptimConfig(lr_schedule="linear"), "lr_schedule"),
    (OptimConfig(lr_milestones=(60, 40)), "lr_milestones"),
    (OptimConfig(momentum=0, nesterov=True), "nesterov"),
    (MethodConfig(method="magic"), "method"),
    (MethodConfig(cb_beta=1.0), "cb_beta"),
    (MethodConfig(low_base="hinge"), "low_base"),
])
def test_validation_names_the_field(cfg, field):
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_unknown_method_lists_known_ones():
    with pytest.raises(ConfigError, match="known: ce, focal, cb, low, l2rw"):
        MethodConfig(method="magic").validate()
