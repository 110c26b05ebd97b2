"""Baseline EHR features from hospital episodes (docs/data.md §9.3 step 3), behind a small registry.

The Gated Symile paper embeds each participant's baseline record with an LLM, which cannot be
rebuilt offline; the default ``codebag`` featuriser is the documented stand-in: a multi-hot of the
ICD-10 *three-character* codes diagnosed in episodes dated on or before the baseline assessment
(53-0.0), over a vocabulary fitted on the training participants only (codes seen in at least
``min_count`` of them, at most ``max_codes``, most frequent first, ties by code).  With ``dim`` set
the multi-hot is TF-IDF weighted (smooth idf, rows L2-normalised) and projected on the top ``dim``
right singular vectors of the training matrix (numpy SVD; each component's largest-magnitude
entry is made positive so the signs are deterministic).  A participant with no episodes before
baseline gets an all-zero vector: present, with nothing recorded.

Another featuriser (an embedding model, say) registers with ``@register_featurizer("name")`` and
is chosen by ``ehr.featurizer: name``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import polars as pl

from gated_symile.errors import ConfigError
from gated_symile.schemas import check_section

__all__ = [
    "FEATURIZERS",
    "CodeBagFeaturizer",
    "EhrConfig",
    "EhrFeaturizer",
    "baseline_codes",
    "make_featurizer",
    "register_featurizer",
]


@dataclass(frozen=True)
class EhrConfig:
    """``ukb.ehr.*`` settings: featuriser name and its parameters (``dim`` 0 = plain multi-hot)."""

    featurizer: str = "codebag"
    min_count: int = 20
    max_codes: int = 2048
    dim: int = 0

    def __post_init__(self) -> None:
        check_section(asdict(self), "ukb.ehr")  # featurizer: the registry, in make_featurizer


class EhrFeaturizer(Protocol):
    """Fitted on the training participants' baseline codes, applied to every participant."""

    def fit(self, codes: pl.DataFrame, train_eids: np.ndarray) -> EhrFeaturizer: ...

    def transform(self, codes: pl.DataFrame, eids: np.ndarray) -> np.ndarray: ...

    @property
    def feature_names(self) -> list[str]: ...

    def state(self) -> dict[str, Any]: ...


FEATURIZERS: dict[str, Callable[[EhrConfig], EhrFeaturizer]] = {}


def register_featurizer(name: str) -> Callable:
    def decorate(factory: Callable[[EhrConfig], EhrFeaturizer]) -> Callable:
        FEATURIZERS[name] = factory
        return factory

    return decorate


def make_featurizer(cfg: EhrConfig) -> EhrFeaturizer:
    if cfg.featurizer not in FEATURIZERS:
        raise ConfigError(
            f"ukb.ehr.featurizer {cfg.featurizer!r} is not one of {sorted(FEATURIZERS)}"
        )
    return FEATURIZERS[cfg.featurizer](cfg)


def baseline_codes(
    hesin: pl.DataFrame, diag: pl.DataFrame, baseline: pl.DataFrame
) -> tuple[pl.DataFrame, dict[str, int], pl.DataFrame]:
    """Three-character ICD-10 codes of episodes dated <= baseline, one row per (eid, code).

    ``hesin``/``diag`` as returned by ``records.ukb_tables``; ``baseline`` has ``eid`` and
    ``baseline_date`` (null = unknown).  Returns the codes (sorted), a reconciliation of the
    diagnosis rows (``diag_rows`` = the sum of the other counts) and the quarantined rows
    (``level, id, reason``): diagnoses whose episode is missing or undated.
    """
    episodes = hesin.select("eid", "ins_index", "episode_date", pl.lit(True).alias("_episode"))
    rows = diag.select("eid", "ins_index", "arr_index", "diag_icd10").join(
        episodes, on=["eid", "ins_index"], how="left"
    )
    rows = rows.join(
        baseline.select("eid", "baseline_date", pl.lit(True).alias("_known")), on="eid", how="left"
    )
    has_episode = pl.col("_episode").is_not_null()
    reason = (
        pl.when(pl.col("_known").is_null()).then(pl.lit("participant not in main dataset"))
        .when(~has_episode).then(pl.lit("diagnosis without hesin episode"))
        .when(pl.col("episode_date").is_null()).then(pl.lit("episode has no epistart or admidate"))
        .when(pl.col("baseline_date").is_null()).then(pl.lit("no baseline date"))
        .when(pl.col("diag_icd10").is_null()).then(pl.lit("no ICD-10 code"))
        .when(pl.col("episode_date") > pl.col("baseline_date")).then(pl.lit("after baseline"))
        .otherwise(pl.lit("used"))
    )  # fmt: skip
    rows = rows.with_columns(reason.alias("outcome"))
    counts = {"diag_rows": rows.height}
    counts.update(dict(rows["outcome"].value_counts().sort("outcome").iter_rows()))
    quarantine = rows.filter(
        pl.col("outcome").is_in(
            ["diagnosis without hesin episode", "episode has no epistart or admidate"]
        )
    ).select(
        pl.lit("diagnosis").alias("level"),
        pl.format("{}:{}:{}", "eid", "ins_index", "arr_index").alias("id"),
        pl.col("outcome").alias("reason"),
    )
    codes = (
        rows.filter(pl.col("outcome") == "used")
        .select("eid", pl.col("diag_icd10").str.slice(0, 3).alias("code"))
        .unique()
        .sort("eid", "code")
    )
    return codes, counts, quarantine


@register_featurizer("codebag")
class CodeBagFeaturizer:
    """Multi-hot of baseline ICD-10 three-character codes, optionally TF-IDF + truncated SVD."""

    def __init__(self, cfg: EhrConfig) -> None:
        self.cfg = cfg
        self.vocabulary: list[str] = []
        self.doc_freq: np.ndarray = np.zeros(0)
        self.idf: np.ndarray | None = None
        self.components: np.ndarray | None = None

    def fit(self, codes: pl.DataFrame, train_eids: np.ndarray) -> CodeBagFeaturizer:
        train_eids = np.unique(np.asarray(train_eids, dtype=np.int64))  # order-free, so bit-stable
        train = codes.filter(
            pl.col("eid").is_in(pl.Series(np.asarray(train_eids, dtype=np.int64)).implode())
        )
        freq = (
            train.group_by("code").agg(pl.col("eid").n_unique().alias("n"))
            .filter(pl.col("n") >= self.cfg.min_count)
            .sort(["n", "code"], descending=[True, False])
            .head(self.cfg.max_codes)
        )  # fmt: skip
        if freq.height == 0:
            raise ConfigError(
                f"EHR vocabulary is empty: no ICD-10 code is seen in >= {self.cfg.min_count} "
                f"training participants ({len(train_eids)} of them); lower ukb.ehr.min_count"
            )
        self.vocabulary = freq["code"].to_list()
        self.doc_freq = freq["n"].to_numpy().astype(np.float64)
        if self.cfg.dim:
            if self.cfg.dim > len(self.vocabulary):
                raise ConfigError(
                    f"ukb.ehr.dim {self.cfg.dim} exceeds the vocabulary size {len(self.vocabulary)}"
                )
            n_train = len(train_eids)
            self.idf = np.log((1.0 + n_train) / (1.0 + self.doc_freq)) + 1.0
            x = self._tfidf(self._multi_hot(codes, np.asarray(train_eids)))
            _, _, vt = np.linalg.svd(x, full_matrices=False)
            comps = vt[: self.cfg.dim]
            if comps.shape[0] < self.cfg.dim:  # fewer training rows than dim
                comps = np.vstack(
                    [comps, np.zeros((self.cfg.dim - comps.shape[0], comps.shape[1]))]
                )
            signs = np.sign(comps[np.arange(comps.shape[0]), np.abs(comps).argmax(axis=1)])
            self.components = comps * np.where(signs == 0, 1.0, signs)[:, None]
        return self

    def transform(self, codes: pl.DataFrame, eids: np.ndarray) -> np.ndarray:
        """(len(eids), width) float64; participants without codes give zero rows."""
        if not self.vocabulary:
            raise RuntimeError("CodeBagFeaturizer.transform called before fit")
        x = self._multi_hot(codes, np.asarray(eids))
        if self.components is None:
            return x
        return self._tfidf(x) @ self.components.T

    @property
    def feature_names(self) -> list[str]:
        if self.components is not None:
            return [f"svd{k}" for k in range(self.components.shape[0])]
        return list(self.vocabulary)

    def state(self) -> dict[str, Any]:
        return {
            "featurizer": "codebag",
            **asdict(self.cfg),
            "vocabulary": self.vocabulary,
            "train_participants_per_code": self.doc_freq.astype(int).tolist(),
        }

    def _multi_hot(self, codes: pl.DataFrame, eids: np.ndarray) -> np.ndarray:
        eids = np.asarray(eids, dtype=np.int64)
        order = np.argsort(eids, kind="stable")
        sorted_eids = eids[order]
        x = np.zeros((eids.size, len(self.vocabulary)))
        vocab = pl.DataFrame({"code": self.vocabulary, "col": np.arange(len(self.vocabulary))})
        hits = codes.join(vocab, on="code", how="inner")
        e = hits["eid"].to_numpy()
        pos = np.searchsorted(sorted_eids, e)
        pos_clip = np.minimum(pos, max(eids.size - 1, 0))
        keep = (
            (pos < eids.size) & (sorted_eids[pos_clip] == e)
            if eids.size
            else np.zeros(e.size, bool)
        )
        x[order[pos_clip[keep]], hits["col"].to_numpy()[keep]] = 1.0
        return x

    def _tfidf(self, x: np.ndarray) -> np.ndarray:
        w = x * self.idf
        norm = np.linalg.norm(w, axis=1, keepdims=True)
        return np.divide(w, norm, out=np.zeros_like(w), where=norm > 0)
