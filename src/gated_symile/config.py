"""Run configuration: the typed, validated settings of one training job.

The workflow config (``config.yaml``) holds defaults (``model``, ``loss``, ``gate``, ``train``,
``evaluate``, ``tracking``) plus per-dataset and per-method overrides. ``resolve_run_config``
merges them for one (dataset, method, seed) into a frozen ``RunConfig``; the Snakemake rule passes
that resolved dict to ``gated-symile train`` as inline JSON, so the job never re-reads the
workflow config and its hash (``config_hash``) identifies exactly what was trained.

Every key is checked against the dataclass field types, then against the settings schema
(``gated_symile/schemas/config.schema.yaml``, the same file the workflow validates its config
with: it owns every limit); a wrong type, an unknown key or a value out of range raises a
``ConfigError`` naming the dotted key (``train.lr: expected a number, got 'abc'``), because a typo
in a sweep must stop the run instead of silently training with a default. The defaults are the
dataclass field defaults below, written nowhere else.
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
from gated_symile.method.encoders.build import EncoderConfig
from gated_symile.schemas import check

Objective = Literal["clip", "symile", "gated_symile"]
_SECTIONS = ("model", "loss", "gate", "train", "evaluate", "tracking")


@dataclass(frozen=True)
class LogitScaleConfig:
    """Learnable log logit scale θ (s = exp θ, docs/method.md §3).

    ``clamp_max`` bounds θ itself (log space: CLIP's s ≤ 100 is ``clamp_max: 4.6052``); None = no clamp.
    ``weight_decay`` puts θ in the weight-decayed parameter group, as both references do.
    """

    init: float
    learnable: bool = True
    clamp_max: float | None = None
    weight_decay: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """Embedding width, normalisation (docs/method.md §2), logit scale and per-modality encoders."""

    embed_dim: int
    embedding_norm: Literal["layernorm", "l2", "l2_dvs"]
    logit_scale: LogitScaleConfig
    encoders: dict[str, EncoderConfig] = field(default_factory=dict)


@dataclass(frozen=True)
class LossConfig:
    """``negatives``: n | n_squared | full | pair for Symile, full | pair for Gated Symile (docs/method.md §4,
    §7; the gated n/n_squared ablation mismatches training and test gating and is not offered);
    CLIP ignores it. ``pair_k``: sampled negatives per row for ``pair``."""

    negatives: Literal["n", "n_squared", "full", "pair"] = "n"
    clip_reduction: Literal["mean", "sum"] = "mean"
    pair_k: int = 128


@dataclass(frozen=True)
class GateConfig:
    """Gated Symile gate (docs/method.md §6); ignored by the other objectives."""

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
    """Optimiser, schedule and loop settings (docs/method.md §14, §16).

    ``patience`` 0 disables early stopping. ``precision`` auto = bf16 autocast on CUDA, fp32 on CPU;
    fp64 trains in float64 (exactness checks). ``num_threads`` 0 leaves torch's default.
    ``progress`` auto = progress bar only on a TTY.

    Multi-process training (docs/distributed.md): ``devices`` processes per node (one per GPU) on
    ``nodes`` nodes, started by ``launcher`` (none = one process; torchrun or srun: read rank and
    world size from their environment). ``collective_timeout_s`` bounds every wait on another
    process (rendezvous included), so a dead rank ends the job instead of hanging it.
    ``batch_size`` is the global batch, split across the processes.
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
    precision: Literal["auto", "fp32", "bf16", "fp64"] = "auto"
    num_threads: int = 0
    progress: Literal["auto", "always", "never"] = "auto"
    devices: int = 1
    nodes: int = 1
    launcher: Literal["none", "torchrun", "srun"] = "none"
    collective_timeout_s: int = 1800

    @property
    def world_size(self) -> int:
        """Processes in the job: ``devices`` × ``nodes``."""
        return self.devices * self.nodes


#: How a run is launched, not what it trains: left out of ``config_hash`` (like ``tracking``).
LAUNCH_KEYS = ("devices", "nodes", "launcher", "collective_timeout_s")


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
        """Parse and validate a (resolved) run config dict.

        The typed parse comes first (it names a wrong type or unknown key and reads YAML's '3e-3'
        strings as numbers); the parsed values then pass the settings schema, which owns every
        limit, and last the cross-field rules.
        """
        cfg = _build(cls, values, "")
        check(cfg.to_dict(), "run_config")
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
    _check_keys(ds_entry, {"overrides", "method_overrides"}, f"datasets.{dataset}")
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
    trained, so moving the MLflow store neither changes the hash nor blocks ``--resume``. So are
    the ``LAUNCH_KEYS``: N processes train on the same global batches as one (the checkpoint
    records its world size, and ``--resume`` insists on the same).
    """
    settings = {k: v for k, v in run_cfg.to_dict().items() if k != "tracking"}
    settings["train"] = {k: v for k, v in settings["train"].items() if k not in LAUNCH_KEYS}
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
    """Rules that involve more than one field (docs/method.md §2, §6.2, §7).

    Single-field types, choices and limits are the schema's (``$defs/run_config``), checked first.
    """
    _validate_launch(cfg.train)
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


def _validate_launch(train: TrainConfig) -> None:
    """One process without a launcher; the global batch splits evenly over the processes."""
    if train.launcher == "none" and train.world_size > 1:
        raise ConfigError(
            f"train.launcher: 'none' runs one process, but train.devices x train.nodes = "
            f"{train.world_size}; set it to torchrun or srun"
        )
    if train.batch_size % train.world_size:
        raise ConfigError(
            f"train.batch_size: {train.batch_size} is not divisible by the world size "
            f"{train.world_size} (train.devices x train.nodes)"
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
