"""One source of truth per setting: the schema owns limits and choices, the dataclass owns the default.

Checked here, by name, so that a drift fails with the setting it concerns:
- every field of the settings dataclasses is a property of its schema section (or is listed below
  as not a workflow setting, with the reason), and every property of a section is a field;
- a ``Literal`` field offers exactly the schema's ``enum``;
- a schema property that states a ``default`` states the dataclass field's default;
- no flag of a stage carries a default for a setting: the dataclass default applies.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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
from gated_symile.schemas import config_schema, resolve
from gated_symile.stages.flags import field_default
from gated_symile.synthetic.mimic import MimicSynthConfig
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
_RESOURCES = "how fast, not what: the same outputs for any value"
_GRID = "a coordinate of the run grid (a wildcard), not a setting"
_INTERNAL = "a generator internal the workflow does not offer"
#: Dataclass fields that are not workflow settings, each with its reason.
NOT_IN_SCHEMA: dict[type, dict[str, str]] = {
    MimicSynthConfig: {
        "workers": _RESOURCES,
        "faults": "robustness-test mode of the CLI",
        "scale": "benchmark mode of the CLI",
        **{f.name: _INTERNAL for f in dataclasses.fields(MimicSynthConfig)[7:]},
    },
    UkbSynthConfig: {
        "workers": _RESOURCES,
        **{
            name: _INTERNAL
            for name in (
                "n_latents", "n_bits", "nmr_frac", "hes_frac", "ecg_frac", "repeat_frac",
                "olink_imaging_frac", "olink_all_nan_frac", "olink_orphans", "empty_frac",
                "no_baseline_frac", "value_missing_frac", "hes_date_format", "main_style",
            )
        },
    },
    XnorConfig: {
        "p": _GRID,
        **{
            name: _INTERNAL
            for name in (
                "a_rule", "embed_mode", "signal_scale", "distractor_std", "p_flips", "exclusive",
                "bc_corr_split",
            )
        },
    },
    MimicCohortConfig: {
        **dict.fromkeys(("mimic_iv", "ecg", "cxr", "out", "chexpert"), _PATHS),
        **dict.fromkeys(("workers", "duckdb_threads", "memory_limit"), _RESOURCES),
    },
    TensorConfig: {"workers": _RESOURCES, "eval_batch": "the MIMIC test set is evaluated whole"},
    UkbCohortConfig: {
        "raw": _PATHS,
        "out": _PATHS,
        "threads": _RESOURCES,
        "ehr_requires_episodes": "a cohort variant the workflow does not offer",
    },
    UkbTensorConfig: {"variant": _GRID, "fold": _GRID},
    MisalignConfig: {"p": _GRID},
}
#: Schema properties that no settings dataclass reads (the workflow reads them itself).
WORKFLOW_ONLY = {("ukb", "folds")}


def section(path: tuple[str, ...]) -> dict[str, Any]:
    if path[0] == "$defs":
        return resolve(config_schema()["$defs"][path[1]])
    node = config_schema()
    for part in path:
        node = resolve(node["properties"][part])
    return node


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
