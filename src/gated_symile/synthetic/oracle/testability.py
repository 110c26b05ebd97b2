"""Generator settings under which a published claim cannot be tested (checked when a run starts).

A claim is a difference between methods on the test queries. It is untestable, whatever the
models do, when the generator makes every method equal to chance (no shared signal: the oracle
equals chance) or leaves too few test queries to rank a positive among candidates. The workflow
calls :func:`check_testable` before it plans any job, so such a config stops at once with one
line naming the setting instead of producing a table of chance-level numbers (docs/oracle.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gated_symile.errors import ConfigError

MIMIC_COHORT_SHARE = 0.65
"""Share of generated admissions that pass the Symile-MIMIC cohort rules at the default branch
rates (docs/synthetic-mimic.md: 387 of 600, 972 of 1500)."""
MIN_TEST_QUERIES = 2
"""A query needs its positive and at least one negative in the test split."""


def untestable_settings(config: Mapping[str, Any]) -> list[str]:
    """One message per setting of the workflow config that makes a claim of the grid untestable."""
    datasets = set(config["experiment"]["datasets"])
    synth, raw = config["synth"], config["raw"]
    problems = []
    if "mimic" in datasets and raw["mimic"]["source"] == "synthetic":
        problems += _zero_signal("synth.mimic.signal_strength", synth["mimic"]["signal_strength"])
        problems += _mimic_test_queries(synth["mimic"]["admissions"], config["mimic"]["split"])
    if datasets & {"ukb", "ukb_union"} and raw["ukb"]["source"] == "synthetic":
        problems += _zero_signal("synth.ukb.signal_strength", synth["ukb"]["signal_strength"])
        problems += _ukb_test_queries(synth["ukb"], config["ukb"]["n_folds"])
    if "xor" in datasets and synth["xor"]["p_hat"] == 0:
        problems.append(
            "synth.xor.p_hat is 0: c is then a copy of a and carries nothing about b, so every "
            "method is at chance by construction; set it > 0"
        )
    return problems


def check_testable(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` with the first untestable setting (all of them are listed)."""
    problems = untestable_settings(config)
    if problems:
        raise ConfigError("; ".join(problems))


def _zero_signal(key: str, strength: float) -> list[str]:
    if strength > 0:
        return []
    return [
        (
            f"{key} is 0: the modalities are then independent, every method's top-1 equals chance "
            f"by construction (the oracle too), so no claim can be tested; set it > 0"
        )
    ]


def _mimic_test_queries(admissions: int, split: Mapping[str, Any]) -> list[str]:
    """Expected test rows: the cohort share of the admissions through the splits' sizing rule."""
    from gated_symile.data.mimic.splits import SplitConfig, split_cohort

    cohort = int(MIMIC_COHORT_SHARE * admissions)
    cfg = SplitConfig(
        seed=int(split["seed"]), train_n=int(split["train_n"]), val_n=int(split["val_n"]),
        candidate_n=int(split["candidate_n"]),
    )  # fmt: skip
    try:
        test = split_cohort(np.arange(cohort), cfg).test.size if cohort >= 3 else 0
    except Exception:  # noqa: BLE001 - any failure of the sizing rule means no test split
        test = 0
    if test >= MIN_TEST_QUERIES:
        return []
    return [
        (
            f"synth.mimic.admissions = {admissions} gives about {cohort} cohort admissions and "
            f"{test} test queries (at least {MIN_TEST_QUERIES} are needed); raise synth.mimic.admissions"
        )
    ]


def _ukb_test_queries(ukb: Mapping[str, Any], n_folds: int) -> list[str]:
    """Expected test participants with Olink (the retrieval target) in one fold."""
    expected = ukb["participants"] * ukb["olink_frac"] / n_folds
    if expected >= MIN_TEST_QUERIES:
        return []
    return [
        (
            f"synth.ukb.participants = {ukb['participants']} with olink_frac {ukb['olink_frac']} "
            f"gives about {expected:.1f} test participants with Olink per fold (at least "
            f"{MIN_TEST_QUERIES} are needed); raise synth.ukb.participants or synth.ukb.olink_frac"
        )
    ]
