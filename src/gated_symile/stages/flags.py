"""Command-line flags that carry no default of their own.

A stage's setting flags are declared with ``default=None``; the stage passes only the flags that
were given (``given``) to the settings dataclass, so the dataclass field default is the one
default of each setting (``tests/test_settings_single_source.py`` checks every stage parser).
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def given(args: argparse.Namespace, *names: str, prefix: str = "") -> dict[str, Any]:
    """``{name: value}`` of the flags ``prefix + name`` that were given (not None)."""
    values = {name: getattr(args, prefix + name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


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
