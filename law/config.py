"""Typed configs become command-line flags.

Every component keeps its settings in a dataclass whose fields carry a
one-line docstring. The CLI is generated from those dataclasses, so a flag's
name, type, default and help text cannot drift from the code that reads it.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import typing
from functools import lru_cache
from typing import Any, TypeVar

T = TypeVar("T")


@lru_cache(maxsize=None)
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (a string literal right under a field) of a dataclass."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, following in zip(body, body[1:]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _tuple_item_type(tp: Any) -> type:
    args = [a for a in typing.get_args(tp) if a is not Ellipsis]
    return args[0] if args else str


def add_config_args(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
                    defaults: Any = None, exclude: tuple[str, ...] = (), default_text: str = "") -> None:
    """Add one ``--flag`` per field of dataclass ``cls`` to ``parser``.

    ``defaults`` (an instance of ``cls``) overrides the class defaults, so a
    preset can change what ``--help`` shows as default. ``exclude`` names
    fields another config of the same command already sets (e.g. one seed).
    ``default_text`` replaces the shown defaults where they come from elsewhere
    (``law apply`` takes them from the policy file).
    """
    group = parser.add_argument_group(title or cls.__name__)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        if field.name in exclude:
            continue
        tp = hints[field.name]
        default = getattr(defaults, field.name) if defaults is not None else _default(field)
        # argparse %-formats help strings: a literal % in a docstring must be doubled.
        shown = default_text or _show(default)
        help_text = f"{docs.get(field.name, '')} (default: {shown})".replace("%", "%%")
        kwargs: dict[str, Any] = dict(dest=field.name, default=argparse.SUPPRESS, help=help_text)
        if tp is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(tp) is tuple:
            kwargs.update(type=_tuple_item_type(tp), nargs="*", metavar="X")
        else:
            kwargs.update(type=tp, metavar=tp.__name__.upper())
        group.add_argument(flag(field.name), **kwargs)


def config_from_args(cls: type[T], args: argparse.Namespace, base: T | None = None) -> T:
    """Build ``cls`` from parsed args; fields not given on the command line keep
    the value from ``base`` (a preset) or the class default."""
    base = base if base is not None else cls()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    hints = typing.get_type_hints(cls)
    for name, value in given.items():
        if typing.get_origin(hints[name]) is tuple:
            given[name] = tuple(value)
    return dataclasses.replace(base, **given)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(map(str, value)) or "none"
    return repr(value) if isinstance(value, str) else str(value)


def validate_all(*configs: Any) -> None:
    """Run every config's ``validate()``; the first bad field raises ConfigError."""
    for config in configs:
        config.validate()


def to_dict(*configs: Any) -> dict[str, dict]:
    """Configs as plain nested dicts (for results files and checkpoints)."""
    return {type(c).__name__: dataclasses.asdict(c) for c in configs}
