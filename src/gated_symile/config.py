"""Run configuration: the typed, validated settings of one training job.

The workflow config (``config.yaml``) holds defaults (``model``, ``loss``, ``gate``, ``train``,
``evaluate``, ``tracking``) plus per-dataset and per-method overrides. ``resolve_run_config``
merges them for one (dataset, method, seed) into a frozen ``RunConfig``; the Snakemake rule passes
that resolved dict to ``gated-symile train`` as inline JSON, so the job never re-reads the
workflow config and its hash (``config_hash``) identifies exactly what was trained.

Every key is checked against the dataclass field types; a wrong type or an unknown key raises a
``ConfigError`` naming the dotted key (``train.lr: expected a number, got 'abc'``), because a typo
in a sweep must stop the run instead of silently training with a default.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Union

from gated_symile.errors import ConfigError
from gated_symile.models.encoders import EncoderConfig

Objective = Literal["clip", "symile", "gated_symile"]
_SECTIONS = ("model", "loss", "gate", "train", "evaluate", "tracking")


@dataclass(frozen=True)
class LogitScaleConfig:
    """Learnable log logit scale θ (s = exp θ, method.md §3).

    ``clamp_max`` bounds θ itself (log space: CLIP's s ≤ 100 is ``clamp_max: 4.6052``); None = no clamp.
    ``weight_decay`` puts θ in the weight-decayed parameter group, as both references do.
    """

    init: float
    learnable: bool = True
    clamp_max: float | None = None
    weight_decay: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """Embedding width, normalisation (method.md §2), logit scale and per-modality encoders."""

    embed_dim: int
    embedding_norm: Literal["layernorm", "l2", "l2_dvs"]
    logit_scale: LogitScaleConfig
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """``negatives``: n | n_squared | full | pair for Symile, full | pair for Gated Symile (method.md §4,
    §7; the gated n/n_squared ablation mismatches training and test gating and is not offered);
    CLIP ignores it. ``pair_k``: sampled negatives per row for ``pair``."""

    negatives: Literal["n", "n_squared", "full", "pair"] = "n"
    clip_reduction: Literal["mean", "sum"] = "mean"
    pair_k: int = 128


@dataclass(frozen=True)
class GateConfig:
    """Gated Symile gate (method.md §6); ignored by the other objectives."""

    type: Literal["sigmoid", "softmax"] = "sigmoid"
    mode: Literal["attention", "matrix"] = "attention"
    use_null: bool = True
    neutral: Literal["ones", "random_frozen", "random_trainable", "none", "mean"] = (
        "random_trainable"
    )
    d_k: int = 256
    temp: float = 0.5
    temp_param: Literal["softplus", "exp"] = "softplus"
    strength_init: float = 0.0
    renormalize: bool = True
    mean_momentum: float = 0.99


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser, schedule and loop settings (method.md §14, §16).

    ``patience`` 0 disables early stopping. ``precision`` auto = bf16 autocast on CUDA, fp32 on CPU.
    ``num_threads`` 0 leaves torch's default. ``progress`` auto = progress bar only on a TTY.
    """

    optimizer: Literal["adamw", "schedulefree_adamw"] = "adamw"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1.0e-7
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    lr_gate_mul: float = 1.0
    patience: int = 5
    drop_last: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    num_threads: int = 0
    progress: Literal["auto", "always", "never"] = "auto"


@dataclass(frozen=True)
class EvaluateConfig:
    """Retrieval evaluation settings shared by model selection (val) and the evaluate stage (test)."""

    bootstrap_n: int = 200
    seed: int = 0
    batch_size: int = 512


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow store (None = tracking off) and experiment name; the checkpoint is logged optionally."""

    uri: str | None = None
    experiment: str = "gated-symile"
    log_checkpoint: bool = True


@dataclass(frozen=True)
class RunConfig:
    """Everything one training job needs besides the tensor dataset."""

    dataset: str
    method: str
    objective: Objective
    seed: int
    model: ModelConfig
    loss: LossConfig = field(default_factory=LossConfig)
    gate: GateConfig = field(default_factory=GateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-compatible dict (tuples become lists); ``from_dict`` inverts it."""
        return _to_plain(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunConfig:
        """Parse and validate a (resolved) run config dict."""
        cfg = _build(cls, values, "")
        _validate(cfg)
        return cfg


def resolve_run_config(
    config: Mapping[str, Any], dataset: str, method: str, seed: int
) -> RunConfig:
    """Merge defaults <- dataset overrides <- method overrides <- dataset.method_overrides[method]."""
    datasets = config.get("datasets") or {}
    methods = config.get("methods") or {}
    if dataset not in datasets:
        raise ConfigError(f"datasets.{dataset}: unknown dataset (known: {sorted(datasets)})")
    if method not in methods:
        raise ConfigError(f"methods.{method}: unknown method (known: {sorted(methods)})")
    ds_entry = datasets[dataset] or {}
    m_entry = methods[method] or {}
    # ``p`` and ``seeds`` (the dataset's misalignment levels and model seeds) are read by the
    # workflow, not by training.
    _check_keys(ds_entry, {"p", "seeds", "overrides", "method_overrides"}, f"datasets.{dataset}")
    _check_keys(m_entry, {"objective", "overrides"}, f"methods.{method}")
    if "objective" not in m_entry:
        raise ConfigError(f"methods.{method}.objective: missing key")
    merged: dict[str, Any] = {s: config[s] for s in _SECTIONS if s in config}
    layers = [
        (ds_entry.get("overrides") or {}, f"datasets.{dataset}.overrides"),
        (m_entry.get("overrides") or {}, f"methods.{method}.overrides"),
        (
            (ds_entry.get("method_overrides") or {}).get(method) or {},
            f"datasets.{dataset}.method_overrides.{method}",
        ),
    ]
    for layer, where in layers:
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {layer!r}")
        _check_keys(layer, set(_SECTIONS), where)
        merged = deep_merge(merged, layer)
    run = {"dataset": dataset, "method": method, "objective": m_entry["objective"], "seed": seed}
    return RunConfig.from_dict({**run, **merged})


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; a non-mapping value in ``override`` replaces the base value."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_hash(run_cfg: RunConfig) -> str:
    """sha256 hex of the canonical JSON (sorted keys, no whitespace) of the resolved config.

    The ``tracking`` section is left out: where results are logged does not change what is
    trained, so moving the MLflow store neither changes the hash nor blocks ``--resume``.
    """
    settings = {k: v for k, v in run_cfg.to_dict().items() if k != "tracking"}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def flatten_config(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted keys for nested mappings (``train.lr``); lists stay values (MLflow params)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten_config(value, dotted + "."))
        else:
            out[dotted] = value
    return out


# ----------------------------------------------------------------------------- validation


def _validate(cfg: RunConfig) -> None:
    """Rules that involve more than one field (method.md §2, §6.2, §7)."""
    positive_ints = {
        "model.embed_dim": cfg.model.embed_dim,
        "loss.pair_k": cfg.loss.pair_k,
        "gate.d_k": cfg.gate.d_k,
        "train.epochs": cfg.train.epochs,
    }
    for key, value in positive_ints.items():
        if value < 1:
            raise ConfigError(f"{key}: must be >= 1, got {value}")
    non_negative = {
        "train.patience": cfg.train.patience,
        "train.warmup_steps": cfg.train.warmup_steps,
        "train.num_threads": cfg.train.num_threads,
        "train.weight_decay": cfg.train.weight_decay,
        "evaluate.bootstrap_n": cfg.evaluate.bootstrap_n,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{key}: must be >= 0, got {value}")
    if cfg.train.batch_size < 2:
        raise ConfigError(
            f"train.batch_size: needs >= 2 samples for in-batch negatives, got {cfg.train.batch_size}"
        )
    if cfg.evaluate.batch_size < 1:
        raise ConfigError(f"evaluate.batch_size: must be >= 1, got {cfg.evaluate.batch_size}")
    for key, value in (
        ("train.lr", cfg.train.lr),
        ("train.eps", cfg.train.eps),
        ("train.lr_gate_mul", cfg.train.lr_gate_mul),
    ):
        if not value > 0:
            raise ConfigError(f"{key}: must be > 0, got {value}")
    if cfg.train.grad_clip is not None and not cfg.train.grad_clip > 0:
        raise ConfigError(f"train.grad_clip: must be > 0 or null, got {cfg.train.grad_clip}")
    if not all(0.0 <= b < 1.0 for b in cfg.train.betas):
        raise ConfigError(f"train.betas: each must be in [0, 1), got {list(cfg.train.betas)}")
    if not 0.0 <= cfg.gate.mean_momentum < 1.0:
        raise ConfigError(f"gate.mean_momentum: must be in [0, 1), got {cfg.gate.mean_momentum}")
    if not cfg.gate.temp > 0:
        raise ConfigError(f"gate.temp: must be > 0, got {cfg.gate.temp}")
    if cfg.objective == "gated_symile":
        if cfg.model.embedding_norm == "layernorm":
            raise ConfigError(
                "model.embedding_norm: gated_symile needs unit vectors (l2 or l2_dvs), got 'layernorm'"
            )
        if cfg.gate.temp_param == "exp" and not cfg.gate.temp > 0.1:
            raise ConfigError(f"gate.temp: temp_param 'exp' needs temp > 0.1, got {cfg.gate.temp}")
        if cfg.loss.negatives not in ("full", "pair"):
            raise ConfigError(
                f"loss.negatives: gated_symile supports 'full' or 'pair', got {cfg.loss.negatives!r}"
            )


# ----------------------------------------------------------------------------- typed parsing


def _check_keys(values: Mapping[str, Any], known: set[str], where: str) -> None:
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {values!r}")
    for key in values:
        if key not in known:
            raise ConfigError(f"{_join(where, str(key))}: unknown key")


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _build(cls: type, values: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, converting and checking every field."""
    if isinstance(values, cls):
        return values
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields_ = {f.name: f for f in dataclasses.fields(cls)}
    _check_keys(values, set(fields_), where)
    kwargs = {}
    for name, f in fields_.items():
        key = _join(where, name)
        if name in values:
            kwargs[name] = _convert(values[name], hints[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: missing key")
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors: list[ConfigError] = []
        for option in options:
            try:
                return _convert(value, option, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{key}: {value!r} matches none of {', '.join(map(str, options))}")
    if origin is Literal:
        if value not in args or isinstance(value, bool) != isinstance(args[0], bool):
            raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], _join(key, str(k))) for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} items, got {list(value)!r}")
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        return _to_float(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # a programming error, named anyway


def _to_float(value: Any, key: str) -> float:
    """Numbers, and numeric strings such as '3e-3' (YAML 1.1 reads exponents without a dot as text)."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    else:
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return number


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value
