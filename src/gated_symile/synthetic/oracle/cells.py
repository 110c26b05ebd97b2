"""Oracle yardstick of one evaluated cell (dataset, p): pick the family, lay out the protocol, run.

The evaluation protocol is read from the tensor dataset the models are evaluated on (test-split
size, candidates per query, presence counts), the generative model from the generator settings
(``synth.<family>`` of the workflow config, or the generator block the tensor metadata carries),
and the misalignment from the ``misalign`` settings. The result is one JSON document per cell
(:data:`FORMAT`, docs/oracle.md "Output").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gated_symile.errors import ConfigError
from gated_symile.synthetic.oracle import core

FORMAT = "gated-symile-oracle/1"
DEFAULT_N_MC = 4000
EXCLUSIVE = "exclusive"


@dataclass(frozen=True)
class MisalignSettings:
    """The workflow's ``misalign`` block (docs/misalignment.md); only the test split matters here."""

    mode: str = "swap"
    modalities: str = EXCLUSIVE
    splits: tuple[str, ...] = ("train", "val", "test")

    def corruption(self, p: float, queries: Sequence[str]) -> core.Corruption:
        """The corruption of the test split; none when the test split is not corrupted."""
        if "test" not in self.splits or p == 0:
            return core.Corruption()
        if self.modalities == EXCLUSIVE:
            return core.Corruption(p=p, mode=self.mode, modalities=tuple(queries), exclusive=True)
        names = tuple(m.strip() for m in self.modalities.split(",") if m.strip())
        return core.Corruption(
            p=p, mode=self.mode, modalities=tuple(m for m in queries if m in names), exclusive=False
        )


@dataclass(frozen=True)
class Cell:
    """One evaluated dataset of a cell: what each family's ``estimate(cell)`` needs."""

    dataset: str
    p: float
    meta: Mapping[str, Any]
    generator: Mapping[str, Any]
    misalign: MisalignSettings
    n_mc: int
    seed: int

    @property
    def test_rows(self) -> int:
        return int(self.meta["splits"]["test"])


_FAMILIES = {
    "mimic": "mimic",
    "xnor": "xnor",
    "xor": "xor",
    "ukb": "ukb",
    "ukb_union": "ukb",
}
"""Module under ``synthetic.oracle`` holding each dataset's ``estimate(cell)``."""
DATASETS: tuple[str, ...] = tuple(_FAMILIES)


def oracle_cell(
    dataset: str,
    p: float,
    metadata: Sequence[Mapping[str, Any]],
    generator: Mapping[str, Any],
    misalign: MisalignSettings,
    *,
    n_mc: int = DEFAULT_N_MC,
    seed: int = 0,
) -> dict[str, Any]:
    """The JSON document of one cell. ``metadata``: the ``metadata.json`` of each evaluated tensor
    dataset of the cell (one per UKB fold; their estimates are averaged)."""
    if dataset not in _FAMILIES:
        raise ConfigError(f"oracle: no generative model for dataset {dataset!r} (known: {', '.join(DATASETS)})")
    if not metadata:
        raise ConfigError(f"oracle {dataset}: no tensor metadata given")
    family = importlib.import_module(f"gated_symile.synthetic.oracle.{_FAMILIES[dataset]}")
    parts = [
        family.estimate(Cell(dataset, float(p), meta, generator, misalign, n_mc, seed))
        for meta in metadata
    ]
    doc = _combine(parts)
    doc.update(
        format=FORMAT,
        dataset=dataset,
        p=float(p),
        seed=int(seed),
        misalignment=asdict(misalign) if dataset != "xnor" else {"by": "generator"},
        generator=dict(generator),
    )
    return doc


def _combine(parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One cell from several evaluated datasets (UKB folds): equal-weight means, SEs combined."""
    if len(parts) == 1:
        return dict(parts[0])
    out = dict(parts[0])
    for key in ("oracle_top1", "pairwise_oracle_top1", "chance"):
        out[key] = float(np.mean([part[key] for part in parts]))
    for key in ("oracle_top1_se", "pairwise_oracle_top1_se"):
        out[key] = float(np.sqrt(sum(part[key] ** 2 for part in parts)) / len(parts))
    for key in ("pool_size", "test_rows"):
        out[key] = [part[key] for part in parts]
    for key in ("n_mc", "replicates"):
        out[key] = int(sum(part[key] for part in parts))
    return out


def need(generator: Mapping[str, Any], key: str, dataset: str) -> Any:
    """A required generator setting, or a ConfigError naming it."""
    if key not in generator:
        raise ConfigError(f"oracle {dataset}: the generator settings lack {key!r}")
    return generator[key]


def generator_block(meta: Mapping[str, Any], cls: type) -> dict[str, Any]:
    """The generator config a synthetic tensor dataset records in its metadata (XNOR, XOR)."""
    block = meta.get("generator")
    if not isinstance(block, Mapping):
        raise ConfigError(f"oracle {meta.get('dataset')}: metadata.json has no generator block")
    fields = set(cls.__dataclass_fields__)
    kwargs = {k: v for k, v in block.items() if k in fields}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
