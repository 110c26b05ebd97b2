"""Run-config resolution, validation messages, round trip and hashing."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from gated_symile.config import RunConfig, config_hash, flatten_config, resolve_run_config
from gated_symile.errors import ConfigError
from gated_symile.method.encoders.build import EncoderConfig
from tests.train_helpers import workflow_config

REPO = Path(__file__).resolve().parents[1]


def test_merge_order_defaults_dataset_method_and_method_overrides():
    cfg = workflow_config()
    cfg["train"]["lr"] = 1.0
    cfg["train"]["eps"] = 1.0e-6
    cfg["datasets"]["xnor"]["overrides"]["train"]["lr"] = 2.0
    cfg["methods"]["symile"]["overrides"] = {"train": {"lr": 3.0, "epochs": 9}}
    run = resolve_run_config(cfg, "xnor", "symile", 5)
    assert (run.train.lr, run.train.epochs, run.seed, run.objective) == (3.0, 9, 5, "symile")
    cfg["datasets"]["xnor"]["method_overrides"] = {"symile": {"train": {"lr": 4.0}}}
    run = resolve_run_config(cfg, "xnor", "symile", 5)
    assert run.train.lr == 4.0 and run.train.epochs == 9  # deep merge keeps sibling keys
    assert run.train.batch_size == 32  # from the dataset layer
    assert run.train.eps == 1.0e-6  # from the defaults
    assert resolve_run_config(cfg, "xnor", "clip", 0).train.lr == 2.0  # other methods untouched


def test_encoders_are_typed_and_defaults_fill_missing_sections():
    run = resolve_run_config(workflow_config(), "xnor", "clip", 0)
    assert run.model.encoders["a"] == EncoderConfig(arch="mlp_relu", hidden=(32,))
    assert run.model.logit_scale.init == pytest.approx(2.659)
    assert run.gate.mean_momentum == 0.99 and run.train.drop_last is True


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("train", "lr"), "abc", "train.lr: expected a number, got 'abc'"),
        (("train", "epochs"), 2.5, "train.epochs: expected an integer"),
        (("train", "epochs"), True, "train.epochs: expected an integer"),
        (("train", "drop_last"), "yes", "train.drop_last: expected true or false"),
        (("train", "betas"), [0.9], "train.betas: expected a list of 2 items"),
        (
            ("train", "optimizer"),
            "sgd",
            "train.optimizer: expected one of adamw, schedulefree_adamw",
        ),
        (("gate", "nuetral"), "ones", "gate.nuetral: unknown key"),
        (("model", "logit_scale", "clamp"), 1.0, "model.logit_scale.clamp: unknown key"),
        (
            ("model", "encoders", "a", "hidden"),
            [4, "x"],
            "model.encoders.a.hidden[1]: expected an integer",
        ),
        (("model", "encoders", "a", "arch"), "vit", "model.encoders.a.arch: expected one of auto, "),
        (("loss", "negatives"), "all", "loss.negatives: expected one of n, n_squared, full, pair"),
        (("train", "patience"), -1, "train.patience: must be >= 0"),
        # limits come from the settings schema (gated_symile/schemas/config.schema.yaml)
        (("train", "batch_size"), 1, "train.batch_size: must be >= 2, got 1"),
        (("train", "betas"), [0.9, 1.0], "train.betas[1]: must be < 1, got 1.0"),
        (("train", "grad_clip"), 0.0, "train.grad_clip: must be > 0, got 0.0"),
        (("gate", "mean_momentum"), 1.0, "gate.mean_momentum: must be < 1, got 1.0"),
        (("model", "encoders", "a", "dropout"), 1.0, "model.encoders.a.dropout: must be < 1, got 1.0"),
        (("model", "encoders", "a", "blocks"), [2, 2, 2], "model.encoders.a.blocks: [2, 2, 2] is too short"),
        (("bogus",), 1, "bogus: unknown key"),
    ],
)
def test_bad_values_name_the_dotted_key(path, value, message):
    raw = resolve_run_config(workflow_config(), "xnor", "clip", 0).to_dict()
    node = raw
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict(raw)
    assert message in str(err.value)


def test_missing_required_key_is_named():
    raw = resolve_run_config(workflow_config(), "xnor", "clip", 0).to_dict()
    del raw["model"]["embed_dim"]
    with pytest.raises(ConfigError, match=r"model\.embed_dim: missing key"):
        RunConfig.from_dict(raw)


def test_yaml_exponent_strings_are_numbers():
    # PyYAML reads 3e-3 (no dot) as a string; the config accepts it as the number it means.
    raw = resolve_run_config(workflow_config(), "xnor", "clip", 0).to_dict()
    raw["train"]["lr"] = yaml.safe_load("lr: 3e-3")["lr"]
    assert RunConfig.from_dict(raw).train.lr == pytest.approx(3e-3)


def test_unknown_override_section_dataset_and_method():
    cfg = workflow_config()
    cfg["methods"]["clip"]["overrides"]["trian"] = {"lr": 1}
    with pytest.raises(ConfigError, match=r"methods\.clip\.overrides\.trian: unknown key"):
        resolve_run_config(cfg, "xnor", "clip", 0)
    with pytest.raises(ConfigError, match=r"datasets\.nope: unknown dataset"):
        resolve_run_config(workflow_config(), "nope", "clip", 0)
    with pytest.raises(ConfigError, match=r"methods\.nope: unknown method"):
        resolve_run_config(workflow_config(), "xnor", "nope", 0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"model": {"embedding_norm": "layernorm"}}, "gated_symile needs unit vectors"),
        ({"gate": {"temp_param": "exp", "temp": 0.1}}, "temp_param 'exp' needs temp > 0.1"),
        ({"loss": {"negatives": "n"}}, "gated_symile supports 'full' or 'pair'"),
    ],
)
def test_cross_field_rules_for_the_gate(changes, message):
    cfg = workflow_config()
    cfg["methods"]["gated_symile"]["overrides"] = {"loss": {"negatives": "full"}, **changes}
    with pytest.raises(ConfigError, match=message):
        resolve_run_config(cfg, "xnor", "gated_symile", 0)


def test_layernorm_and_n_are_fine_without_gate():
    cfg = workflow_config()
    cfg["model"]["embedding_norm"] = "layernorm"
    assert resolve_run_config(cfg, "xnor", "symile", 0).model.embedding_norm == "layernorm"


def test_round_trip_and_hash():
    run = resolve_run_config(workflow_config(), "xnor", "gated_symile", 0)
    plain = run.to_dict()
    again = RunConfig.from_dict(json.loads(json.dumps(plain)))
    assert again == run
    assert config_hash(again) == config_hash(run) and len(config_hash(run)) == 64
    changed = copy.deepcopy(plain)
    changed["train"]["lr"] = 1e-4
    assert config_hash(RunConfig.from_dict(changed)) != config_hash(run)
    moved = copy.deepcopy(plain)
    moved["tracking"]["uri"] = "sqlite:////elsewhere/mlflow.db"
    assert config_hash(RunConfig.from_dict(moved)) == config_hash(run)  # tracking is not a setting
    assert flatten_config(plain)["model.logit_scale.init"] == pytest.approx(-0.5525)


def test_repository_config_resolves_for_every_dataset_and_method():
    """config.yaml (lead-owned) must give a valid RunConfig for every experiment combination."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for dataset in config["experiment"]["datasets"]:
        for method in config["experiment"]["methods"]:
            resolve_run_config(config, dataset, method, 0)
