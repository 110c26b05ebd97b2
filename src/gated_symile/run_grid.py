"""The workflow's run grid: which misalignment levels and seeds each dataset runs.

``experiment.p`` and ``experiment.seeds`` each take a list, which every dataset runs, or a
mapping from dataset names (and ``default``, for the others) to lists. The two forms are chosen
so that merging configs does what a reader of the merged file expects: ``--configfile`` merges
mappings key by key but replaces a list whole, so an added config that says ``p: [0.0, 1.0]``
sets the grid of every dataset, and one that says ``p: {mimic: [0.0]}`` changes MIMIC alone.
(Per-dataset lists kept elsewhere, beside the dataset's overrides, would silently win over an
added config's ``experiment.p``.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gated_symile.errors import ConfigError

__all__ = ["DEFAULT_KEY", "check_grid", "dataset_ps", "dataset_seeds", "grid_values"]

DEFAULT_KEY = "default"
"""The key of a per-dataset mapping that holds the list of every dataset not named in it."""


def grid_values(config: Mapping[str, Any], key: str, dataset: str) -> list[Any]:
    """The list ``experiment.<key>`` gives ``dataset`` (see the module docstring for the forms)."""
    value = config["experiment"][key]
    if not isinstance(value, Mapping):
        return list(value)
    for name in (dataset, DEFAULT_KEY):
        if name in value:
            return list(value[name])
    raise ConfigError(
        f"experiment.{key}: no list for dataset {dataset!r} and no {DEFAULT_KEY!r} list "
        f"(have: {sorted(value)})"
    )


def dataset_ps(config: Mapping[str, Any], dataset: str) -> list[float]:
    """Misalignment levels ``dataset`` runs at."""
    return grid_values(config, "p", dataset)


def dataset_seeds(config: Mapping[str, Any], dataset: str) -> list[int]:
    """Model seeds ``dataset`` runs with."""
    return grid_values(config, "seeds", dataset)


def check_grid(config: Mapping[str, Any], datasets: Sequence[str]) -> None:
    """Raise :class:`ConfigError` naming the setting when a dataset of the grid has no list."""
    for dataset in datasets:
        dataset_ps(config, dataset)
        dataset_seeds(config, dataset)
