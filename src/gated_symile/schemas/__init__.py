"""The settings schema: the one place that states every setting's type, allowed values and limits.

``config.schema.yaml`` (JSON Schema, draft 2020-12) is package data so that both readers use the
same file: the workflow validates ``config.yaml`` against it when it starts (``common.smk``:
``validate(config, schema=str(SCHEMA_FILE))``), and the package validates a resolved run config
against ``$defs/run_config`` (``RunConfig.from_dict``). Defaults are not written here: each lives
once, as the default of its dataclass field (``tests/test_settings_single_source.py`` checks that
the schema and the dataclasses name the same settings and that any ``default`` here agrees).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gated_symile.errors import ConfigError

SCHEMA_FILE = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def config_schema() -> dict[str, Any]:
    """The parsed schema (read once per process)."""
    import yaml

    # libyaml's loader where built (10x faster; stage parsers read the schema's enums at start-up)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(SCHEMA_FILE.read_text(), Loader=loader)


def check(values: Mapping[str, Any], definition: str, where: str = "") -> None:
    """Validate ``values`` against ``$defs/<definition>``; the first error is a one-line ConfigError.

    ``where`` prefixes the dotted key (``train.batch_size: must be >= 2, got 1``).
    """
    _raise_first_error({"$ref": f"#/$defs/{definition}"}, values, where)


def check_section(values: Mapping[str, Any], dotted: str) -> None:
    """Validate the settings of workflow section ``dotted`` (``mimic.split``) found in ``values``.

    A settings dataclass calls it from ``__post_init__`` with itself as a dict, so a flag given on
    the command line meets the same limits as the workflow's key. The section's ``x-stage-only``
    settings (generator internals, resources, grid coordinates) are checked with its properties;
    keys the section does not know are left out (paths), and so is ``required`` (the dataclass
    fills what was not given).
    """
    node = section_schema(dotted)
    plain = json.loads(json.dumps(dict(values), default=str))  # tuples -> lists, paths -> text
    _raise_first_error(node, {k: v for k, v in plain.items() if k in node["properties"]}, dotted)


def section_schema(dotted: str) -> dict[str, Any]:
    """Workflow section ``dotted`` as a closed object schema of its properties and ``x-stage-only``."""
    node: dict[str, Any] = {"$ref": "#"}
    for part in dotted.split("."):
        node = resolve(node)["properties"][part]
    full = resolve(node)
    node = {k: v for k, v in full.items() if k not in ("required", "x-stage-only")}
    node["properties"] = {**full["properties"], **full.get("x-stage-only", {})}
    return node


def resolve(node: Mapping[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` (into this schema) followed; sibling keywords are kept."""
    node = dict(node)
    while "$ref" in node:
        target: Any = config_schema()
        for part in node.pop("$ref").removeprefix("#").strip("/").split("/"):
            target = target[part] if part else target
        node = {**target, **node}
    return node


def _raise_first_error(schema: Mapping[str, Any], values: Any, where: str) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator({"$defs": config_schema()["$defs"], **schema})
    errors = sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError(describe(errors[0], where))


def describe(error: Any, where: str = "") -> str:
    """One line that names the dotted key and the broken rule of a jsonschema error."""
    key = where
    for part in error.absolute_path:
        key = f"{key}[{part}]" if isinstance(part, int) else (f"{key}.{part}" if key else str(part))
    rule, limit, value = error.validator, error.validator_value, error.instance
    if rule == "required":
        missing = next(name for name in limit if name not in value)
        return f"{f'{key}.' if key else ''}{missing}: missing key"
    if rule == "additionalProperties":
        unknown = sorted(k for k in value if k not in error.schema.get("properties", {}))
        return f"{f'{key}.' if key else ''}{unknown[0]}: unknown key"
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if rule in bounds:
        return f"{key}: must be {bounds[rule]} {limit}, got {value!r}"
    if rule == "pattern":
        return f"{key}: {value!r} is not {error.schema.get('description', f'of the form {limit}')}"
    if rule == "enum":
        return f"{key}: expected one of {', '.join(map(str, limit))}, got {value!r}"
    return f"{key or 'config'}: {error.message}"
