"""Command-line flags that carry no default and no list of choices of their own.

A stage's setting flags are declared with ``default=None``; the stage passes only the flags that
were given (``given``) to the settings dataclass, so the dataclass field default is the one
default of each setting. A flag with choices takes them from the schema (``setting_choices``).
``tests/test_settings_single_source.py`` checks every stage parser for both.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def given(args: argparse.Namespace, *names: str, prefix: str = "") -> dict[str, Any]:
    """``{name: value}`` of the flags ``prefix + name`` that were given (not None)."""
    values = {name: getattr(args, prefix + name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def setting_choices(dotted: str) -> list[Any]:
    """The schema's ``enum`` of setting ``dotted`` (``synth.xnor.a_rule``, ``train.progress``).

    The schema owns every choice; a flag that spelled its own list could offer a value the
    settings check then refuses, or hide one the workflow accepts.
    """
    from gated_symile.schemas import resolve, section_schema

    section, _, name = dotted.rpartition(".")
    return list(resolve(section_schema(section)["properties"][name])["enum"])


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass field ``name`` (its factory called); a KeyError names a field without one."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            raise KeyError(f"{cls.__name__}.{name} has no default")
    raise KeyError(f"{cls.__name__} has no field {name!r}")
