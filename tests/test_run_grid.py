"""The run grid: experiment.p / experiment.seeds as one list or per-dataset lists, and what a
merged --configfile does to them (Snakemake merges mappings key by key and replaces lists)."""

from __future__ import annotations

import copy

import jsonschema
import pytest
import yaml
from snakemake.utils import update_config

from gated_symile.errors import ConfigError
from gated_symile.run_grid import check_grid, dataset_ps, dataset_seeds
from gated_symile.schemas import config_schema
from tests.workflow_helpers import REPO

DEFAULT = yaml.safe_load((REPO / "config.yaml").read_text())


def _merged(overlay: dict) -> dict:
    config = copy.deepcopy(DEFAULT)
    update_config(config, overlay)
    jsonschema.Draft202012Validator(config_schema()).validate(config)
    return config


def test_default_config_runs_per_dataset_lists():
    assert dataset_ps(DEFAULT, "mimic") == [0.0, 0.5, 1.0]
    assert dataset_ps(DEFAULT, "xnor") == [1.0]
    assert dataset_ps(DEFAULT, "ukb_union") == DEFAULT["experiment"]["p"]["default"]
    assert dataset_seeds(DEFAULT, "mimic") == [0, 1]
    assert dataset_seeds(DEFAULT, "xor") == DEFAULT["experiment"]["seeds"]["default"]


def test_an_added_list_sets_every_dataset():
    """The bug this form fixes: an added config's experiment.p lost to per-dataset lists."""
    config = _merged({"experiment": {"p": [0.25], "seeds": [0, 1, 2]}})
    for dataset in ("mimic", "xnor", "xor", "ukb", "ukb_union"):
        assert dataset_ps(config, dataset) == [0.25]
        assert dataset_seeds(config, dataset) == [0, 1, 2]


def test_an_added_mapping_changes_only_the_datasets_it_names():
    config = _merged({"experiment": {"p": {"mimic": [0.0]}}})
    assert dataset_ps(config, "mimic") == [0.0]
    assert dataset_ps(config, "xnor") == [1.0]
    assert dataset_ps(config, "ukb") == DEFAULT["experiment"]["p"]["default"]


def test_a_dataset_without_a_list_is_named():
    config = _merged({"experiment": {"p": [0.0]}})
    config["experiment"]["p"] = {"mimic": [0.0]}
    with pytest.raises(ConfigError, match=r"experiment\.p: no list for dataset 'xor'"):
        check_grid(config, ["mimic", "xor"])
    config = copy.deepcopy(DEFAULT)  # the workflow runs check_grid at start (common.smk)
    config["experiment"]["seeds"] = {"mimic": [0]}
    with pytest.raises(ConfigError, match=r"experiment\.seeds: no list for dataset 'ukb_union'"):
        check_grid(config, config["experiment"]["datasets"])


@pytest.mark.parametrize(
    "p", [{"imagenet": [0.0]}, {"mimic": []}, {"default": [1.5]}, {}, [0.0, 0.0]]
)
def test_schema_refuses_bad_grids(p):
    config = copy.deepcopy(DEFAULT)
    config["experiment"]["p"] = p
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(config_schema()).validate(config)
