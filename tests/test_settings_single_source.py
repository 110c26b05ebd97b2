"""One source of truth per setting: the schema owns limits and choices, the dataclass owns the default.

Checked here, by name, so that a drift fails with the setting it concerns:
- every field of the settings dataclasses is a property of its schema section (or is listed below
  as not a workflow setting, with the reason), and every property of a section is a field;
- a ``Literal`` field offers exactly the schema's ``enum``;
- a schema property that states a ``default`` states the dataclass field's default;
- no flag of a stage carries a default for a setting: the dataclass default applies;
- a flag with choices offers exactly the schema's ``enum`` of its setting, taken from the schema
  (``gated_symile.stages.flags.setting_choices``), never spelled out in the stage.
"""

from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import inspect
import re
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest
import yaml

from gated_symile import config as run_config
from gated_symile.cli import build_parser
from gated_symile.data.mimic.cohort import MimicCohortConfig
from gated_symile.data.mimic.splits import SplitConfig
from gated_symile.data.mimic.tensors import TensorConfig
from gated_symile.data.misalign.draw import MisalignConfig
from gated_symile.data.ukb.cohort import UkbCohortConfig
from gated_symile.data.ukb.ehr import EhrConfig
from gated_symile.data.ukb.tensors import UkbTensorConfig
from gated_symile.errors import ConfigError
from gated_symile.method.encoders.build import EncoderConfig
from gated_symile.records.ecg_qc import QC_RULES
from gated_symile.schemas import config_schema, resolve, section_schema
from gated_symile.stages.flags import field_default
from gated_symile.synthetic.mimic import MimicSynthConfig
from gated_symile.synthetic.oracle import core as oracle_core
from gated_symile.synthetic.oracle.cells import DATASETS
from gated_symile.synthetic.ukb import UkbSynthConfig
from gated_symile.synthetic.xnor import XnorConfig
from gated_symile.synthetic.xor import XorConfig

REPO = Path(__file__).resolve().parents[1]

#: Settings dataclass -> its section of the schema (a path of property names, or a $defs name).
SECTIONS: dict[type, tuple[str, ...]] = {
    run_config.RunConfig: ("$defs", "run_config"),
    run_config.ModelConfig: ("$defs", "model"),
    run_config.LogitScaleConfig: ("$defs", "logit_scale"),
    EncoderConfig: ("$defs", "encoder"),
    run_config.LossConfig: ("$defs", "loss"),
    run_config.GateConfig: ("$defs", "gate"),
    run_config.TrainConfig: ("$defs", "train"),
    run_config.EvaluateConfig: ("$defs", "evaluate"),
    run_config.TrackingConfig: ("$defs", "tracking"),
    MimicSynthConfig: ("synth", "mimic"),
    UkbSynthConfig: ("synth", "ukb"),
    XnorConfig: ("synth", "xnor"),
    XorConfig: ("synth", "xor"),
    MimicCohortConfig: ("mimic", "cohort"),
    SplitConfig: ("mimic", "split"),
    TensorConfig: ("mimic", "tensors"),
    UkbCohortConfig: ("ukb",),
    UkbTensorConfig: ("ukb",),
    EhrConfig: ("ukb", "ehr"),
    MisalignConfig: ("misalign",),
}

_PATHS = "an input or output path, not a setting"
#: Dataclass fields that are not settings of their schema section, each with its reason. (A stage
#: flag the workflow does not offer is listed in the section's ``x-stage-only``, with its limits.)
NOT_IN_SCHEMA: dict[type, dict[str, str]] = {
    MimicCohortConfig: {
        **dict.fromkeys(("mimic_iv", "ecg", "cxr", "out", "chexpert"), _PATHS),
        "memory_limit": "DuckDB's own spelling, checked where DuckDB opens (open_duckdb)",
    },
    UkbCohortConfig: {"raw": _PATHS, "out": _PATHS},
}
#: Schema properties that no settings dataclass reads (the workflow reads them itself).
WORKFLOW_ONLY = {("ukb", "folds")}


def section(path: tuple[str, ...]) -> dict[str, Any]:
    """The section's schema; a workflow section's ``properties`` include its ``x-stage-only``."""
    if path[0] == "$defs":
        return resolve(config_schema()["$defs"][path[1]])
    return section_schema(".".join(path))


def _setting_fields(cls: type) -> list[dataclasses.Field]:
    exempt = NOT_IN_SCHEMA.get(cls, {})
    return [f for f in dataclasses.fields(cls) if f.name not in exempt]


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_every_dataclass_field_is_a_schema_property(cls):
    properties = section(SECTIONS[cls])["properties"]
    missing = [f.name for f in _setting_fields(cls) if f.name not in properties]
    assert not missing, f"{cls.__name__}: fields {missing} are not in schema section {SECTIONS[cls]}"
    stale = sorted(set(NOT_IN_SCHEMA.get(cls, {})) & set(properties))
    assert not stale, f"{cls.__name__}: {stale} are in the schema now; drop them from NOT_IN_SCHEMA"


def test_every_schema_property_is_read_by_a_dataclass():
    read: dict[tuple[str, ...], set[str]] = {}
    for cls, path in SECTIONS.items():
        read.setdefault(path, set()).update(f.name for f in dataclasses.fields(cls))
    unread = [
        (*path, name)
        for path, names in read.items()
        for name in section(path)["properties"]
        if name not in names and (*path, name) not in WORKFLOW_ONLY
    ]
    assert not unread, f"schema properties no dataclass reads: {unread}"


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_choices_and_defaults_agree_with_the_schema(cls):
    properties = section(SECTIONS[cls])["properties"]
    hints = typing.get_type_hints(cls)
    for f in _setting_fields(cls):
        prop = resolve(properties[f.name])
        if typing.get_origin(hints[f.name]) is Literal:
            assert set(typing.get_args(hints[f.name])) == set(prop.get("enum", ())), (
                f"{cls.__name__}.{f.name}: choices {typing.get_args(hints[f.name])} vs schema "
                f"enum {prop.get('enum')}"
            )
        if "default" in prop:
            assert field_default(cls, f.name) == prop["default"], f"{cls.__name__}.{f.name}"


#: Stage sub-command -> the settings dataclasses its flags feed (flag dest = field, or prefixed).
STAGE_SETTINGS = {
    ("synth", "mimic"): (MimicSynthConfig,),
    ("synth", "ukb"): (UkbSynthConfig,),
    ("synth", "xnor"): (XnorConfig,),
    ("synth", "xor"): (XorConfig,),
    ("cohort", "mimic"): (MimicCohortConfig,),
    ("cohort", "ukb"): (UkbCohortConfig,),
    ("splits", "mimic"): (SplitConfig,),
    ("tensors", "mimic"): (TensorConfig,),
    ("tensors", "ukb"): (UkbTensorConfig, EhrConfig),
    ("misalign",): (MisalignConfig,),
}


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and name in action.choices:
            return action.choices[name]
    raise KeyError(name)


@pytest.mark.parametrize("command", list(STAGE_SETTINGS), ids=" ".join)
def test_stage_flags_carry_no_second_default(command):
    parser = build_parser()
    for name in command:
        parser = _subparser(parser, name)
    fields = {f.name for cls in STAGE_SETTINGS[command] for f in dataclasses.fields(cls)}
    switches = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction)
    fed = []
    for action in parser._actions:
        if isinstance(action, (*switches, argparse._SubParsersAction)) or action.required:
            continue
        feeds = action.dest in fields or action.dest.removeprefix("ehr_") in fields
        fed.append(feeds)
        assert action.default in (None, argparse.SUPPRESS), (
            f"{' '.join(command)} {action.option_strings[0]}: default {action.default!r} "
            + ("repeats the dataclass default" if feeds else "is a default no dataclass owns")
        )
    assert any(fed), f"{' '.join(command)}: no flag feeds {STAGE_SETTINGS[command]}"


#: Stage flag (sub-command path, option) -> the schema setting whose ``enum`` it offers: a dotted
#: workflow key, or ``$defs/<name>`` for a definition.
FLAG_CHOICES: dict[tuple[str, ...], str] = {
    ("synth", "xnor", "--a-rule"): "synth.xnor.a_rule",
    ("synth", "xnor", "--embed-mode"): "synth.xnor.embed_mode",
    ("synth", "xnor", "--corr-mode"): "synth.xnor.corr_mode",
    ("synth", "ukb", "--hes-date-format"): "synth.ukb.hes_date_format",
    ("synth", "ukb", "--main-style"): "synth.ukb.main_style",
    ("cohort", "mimic", "--qc-rule"): "mimic.cohort.qc_rule",
    ("tensors", "ukb", "--variant"): "ukb.variant",
    ("misalign", "--mode"): "misalign.mode",
    ("train", "--progress"): "train.progress",
    ("oracle", "--dataset"): "$defs/dataset",
}
#: Flags with choices that are no setting of the schema, each with its reason.
CHOICES_NOT_SETTINGS: dict[tuple[str, ...], str] = {
    ("evaluate", "--which"): "which checkpoint of a run to evaluate, not a setting of the run",
}


def schema_enum(where: str) -> list[Any]:
    if where.startswith("$defs/"):
        return resolve(config_schema()["$defs"][where.removeprefix("$defs/")])["enum"]
    dotted, _, name = where.rpartition(".")
    return resolve(section_schema(dotted)["properties"][name])["enum"]


def _flags_with_choices(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], list[Any]]:
    """(sub-command path, option) -> choices, for every flag of every (nested) stage parser."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.update(_flags_with_choices(sub, (*path, name)))
        elif action.choices is not None:
            found[(*path, action.option_strings[0])] = list(action.choices)
    return found


def test_every_flag_with_choices_offers_the_schema_enum():
    flags = _flags_with_choices(build_parser())
    unlisted = sorted(set(flags) - set(FLAG_CHOICES) - set(CHOICES_NOT_SETTINGS))
    assert not unlisted, f"flags with choices missing from FLAG_CHOICES: {unlisted}"
    for flag, where in FLAG_CHOICES.items():
        assert flag in flags, f"{' '.join(flag)} offers no choices"
        assert set(flags[flag]) == set(schema_enum(where)), (
            f"{' '.join(flag)}: choices {flags[flag]} vs schema {where} enum {schema_enum(where)}"
        )


def test_stages_take_flag_choices_from_the_schema():
    """``choices=`` spelled out as a list or tuple in a stage is a second copy of a schema enum."""
    exempt = {flag[-1] for flag in CHOICES_NOT_SETTINGS}
    for path in sorted((REPO / "src/gated_symile/stages").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            option = getattr(node.args[0], "value", None)
            for keyword in node.keywords:
                if keyword.arg == "choices" and option not in exempt:
                    assert not isinstance(keyword.value, (ast.List, ast.Tuple, ast.Set)), (
                        f"{path.name} line {node.lineno}: {option} choices="
                        f"{ast.unparse(keyword.value)} copies a schema enum; use "
                        "gated_symile.stages.flags.setting_choices"
                    )


def test_code_constants_that_name_a_setting_choice_are_the_schema_enum():
    """Readers (no schema), the oracle and the misalignment drawer keep their own tuples."""
    assert QC_RULES == tuple(schema_enum("mimic.cohort.qc_rule"))
    assert set(oracle_core.MODES) == set(schema_enum("misalign.mode"))
    assert set(DATASETS) == set(schema_enum("$defs/dataset"))


def test_workflow_schema_limits_are_the_run_config_limits():
    """train.batch_size 1 fails the workflow check, as it fails RunConfig (one $defs/train)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["train"]["batch_size"] = 1
    with pytest.raises(jsonschema.ValidationError, match="less than the minimum of 2"):
        jsonschema.Draft202012Validator(config_schema()).validate(config)
    raw = run_config.resolve_run_config(
        yaml.safe_load((REPO / "config.yaml").read_text()), "xor", "clip", 0
    ).to_dict()
    bad = copy.deepcopy(raw)
    bad["train"]["batch_size"] = 1
    with pytest.raises(ConfigError, match=r"^train\.batch_size: must be >= 2, got 1$"):
        run_config.RunConfig.from_dict(bad)


def test_schema_is_package_data_read_by_the_workflow():
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert "validate(config, schema=str(SCHEMA_FILE)" in common
    assert not (REPO / "workflow/schemas/config.schema.yaml").exists()


def test_stage_flags_meet_the_schema_limits(tmp_path):
    """A flag given on the command line meets the workflow key's limit (one schema)."""
    parser = build_parser()
    args = parser.parse_args(
        ["splits", "mimic", "--cohort", str(tmp_path / "none.parquet"), "--out", str(tmp_path),
         "--candidate-n", "1"]  # fmt: skip
    )
    with pytest.raises(ConfigError, match=r"^mimic\.split\.candidate_n: must be >= 2, got 1$"):
        args.func(args)


#: Settings dataclasses that validate themselves: ``__post_init__`` calls ``check_section`` with its
#: workflow section (the run-config classes and EncoderConfig are checked by RunConfig.from_dict).
SELF_CHECKED = {cls: path for cls, path in SECTIONS.items() if path[0] != "$defs"}
#: The fields a dataclass needs besides the one under test (no default, or a cross-field rule).
REQUIRED_ARGS: dict[type, dict[str, Any]] = {
    MimicCohortConfig: dict.fromkeys(("mimic_iv", "ecg", "cxr", "out"), Path("none")),
    MimicSynthConfig: {"admissions": 3},
    UkbSynthConfig: {"participants": 3},
    UkbCohortConfig: {"raw": Path("raw"), "out": Path("out")},
    UkbTensorConfig: {"variant": "union", "fold": 0},
    MisalignConfig: {"p": 0.5, "mode": "swap"},
}
#: Values at a limit that only pass with another setting changed: XNOR's cross-field rule
#: dim >= signal width (3 n_bits, or n_bits for ``xnor_only``).
AT_LIMIT_CONTEXT: dict[tuple[type, str], dict[str, Any]] = {
    (XnorConfig, "dim"): {"embed_mode": "xnor_only", "n_bits": 1},
    (XnorConfig, "n_bits"): {"dim": 3 * 62},
}


def _post_init_tree(cls: type) -> ast.FunctionDef | None:
    method = cls.__dict__.get("__post_init__")
    if method is None:
        return None
    tree = ast.parse(textwrap.dedent(inspect.getsource(method)))
    return next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))


def _is_limit(node: ast.expr) -> bool:
    """A literal number, string or collection, or a module constant (``MAX_BITS``, ``MODES``)."""
    if isinstance(node, ast.UnaryOp):
        node = node.operand
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return True
    if isinstance(node, ast.Constant):
        return node.value is not None
    return isinstance(node, ast.Name) and node.id.isupper()


@pytest.mark.parametrize("cls", list(SECTIONS), ids=lambda c: c.__name__)
def test_no_dataclass_rechecks_a_limit_by_hand(cls):
    """Comparing a setting with a constant in ``__post_init__`` is a second copy of a schema limit.

    Cross-field rules (a setting against another one) stay in code, with a comment saying why.
    """
    tree = _post_init_tree(cls)
    if tree is None:
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            assert not any(map(_is_limit, operands)), (
                f"{cls.__name__}.__post_init__ line {node.lineno}: {ast.unparse(node)!r} checks a "
                "limit by hand; state it in the settings schema"
            )


@pytest.mark.parametrize("cls", list(SELF_CHECKED), ids=lambda c: c.__name__)
def test_settings_dataclasses_check_their_schema_section(cls):
    tree = _post_init_tree(cls)
    calls = [
        node.args[1].value
        for node in ast.walk(tree) if tree is not None
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "check_section"
    ]  # fmt: skip
    assert calls == [".".join(SELF_CHECKED[cls])], f"{cls.__name__}: check_section calls {calls}"


def _limit_cases() -> list[tuple[type, str, Any, bool]]:
    """(dataclass, field, value, valid?) at and just past every bound and choice of the schema."""
    cases = []
    for cls, path in SECTIONS.items():
        if path[0] == "$defs" and cls is not EncoderConfig:
            continue
        names = {f.name for f in dataclasses.fields(cls)}
        for name, prop in section(path)["properties"].items():
            prop = resolve(prop)
            if name not in names:
                continue
            step = 1 if prop.get("type") == "integer" else 1e-6
            if "enum" in prop:
                cases += [(cls, name, choice, True) for choice in prop["enum"]]
                cases.append((cls, name, "not-a-choice", False))
            for bound, inside, outside in (
                ("minimum", 0, -step), ("exclusiveMinimum", step, 0),
                ("maximum", 0, step), ("exclusiveMaximum", -step, 0),
            ):  # fmt: skip
                if bound in prop:
                    cases.append((cls, name, prop[bound] + inside, True))
                    cases.append((cls, name, prop[bound] + outside, False))
    return cases


def _construct(cls: type, name: str, value: Any) -> None:
    if cls is EncoderConfig:  # validated where the run config is built
        raw = run_config.resolve_run_config(
            yaml.safe_load((REPO / "config.yaml").read_text()), "xor", "clip", 0
        ).to_dict()
        raw["model"]["encoders"] = {"a": {name: value}}
        run_config.RunConfig.from_dict(raw)
        return
    cls(**{**REQUIRED_ARGS.get(cls, {}), **AT_LIMIT_CONTEXT.get((cls, name), {}), name: value})


@pytest.mark.parametrize(
    ("cls", "name", "value", "valid"),
    _limit_cases(),
    ids=lambda v: v.__name__ if isinstance(v, type) else repr(v),
)
def test_dataclasses_accept_and_refuse_exactly_the_schema_limits(cls, name, value, valid):
    """A value at a schema limit is accepted; one past it is refused in one line naming the setting."""
    if valid:
        _construct(cls, name, value)
        return
    key = "model.encoders.a" if cls is EncoderConfig else ".".join(SECTIONS[cls])
    with pytest.raises(ConfigError, match=rf"^{re.escape(key)}\.{name}: (must be|expected one of) "):
        _construct(cls, name, value)
