"""The CLI is generated from config dataclasses; bad values fail naming the field."""
import argparse
from dataclasses import dataclass

import pytest

from law.config import add_config_args, config_from_args, field_docs
from law.errors import ConfigError
from law.methods import MethodConfig
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
    undocumented: int = 3


def parse(argv, cls=Example, defaults=None):
    parser = argparse.ArgumentParser()
    add_config_args(parser, cls, defaults=defaults)
    return parser, config_from_args(cls, parser.parse_args(argv), defaults)


def test_field_docs_reads_attribute_docstrings():
    assert field_docs(Example) == {"rate": "How fast.", "name": "Which one, across two lines.",
                                   "flag": "Switch it on.", "stages": "Stages at which to drop."}


def test_flags_types_and_defaults():
    _, cfg = parse([])
    assert cfg == Example()
    _, cfg = parse(["--rate", "2", "--name", "b", "--flag", "--stages", "1", "2", "3"])
    assert cfg == Example(rate=2.0, name="b", flag=True, stages=(1, 2, 3))
    _, cfg = parse(["--no-flag", "--stages"], defaults=Example(flag=True))
    assert cfg.flag is False and cfg.stages == ()


def test_preset_defaults_survive_unset_flags_and_show_in_help():
    parser, cfg = parse(["--rate", "1"], defaults=Example(name="preset"))
    assert cfg.name == "preset" and cfg.rate == 1.0
    assert "How fast. (default: 0.5)" in " ".join(parser.format_help().split())
    assert "(default: 'preset')" in parser.format_help()


def test_wrong_type_is_rejected_by_the_parser():
    with pytest.raises(SystemExit):
        parse(["--rate", "fast"])


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
