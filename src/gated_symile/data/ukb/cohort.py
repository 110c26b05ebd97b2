"""UK-Biobank-style cohort (docs/data.md §9.3): presence per modality, folds, exclusions, feature tables.

Reads the raw release (``ukb_main.csv``, ``olink_data.txt``, ``coding143.tsv``, ``hesin.txt``,
``hesin_diag.txt``; ``.gz`` accepted) and writes to ``out``:

- ``participants.parquet``: every main-dataset participant with ``baseline_date`` and the presence
  of each modality (``nmr``, ``ehr``, ``olink``) and ``included`` (>= 1 present: the union cohort);
- ``splits.parquet``: ``eid, fold, val_0..`` for the included participants (``ukb.folds``);
- ``nmr.parquet`` (instance-0 fields 23400-23648), ``olink.parquet`` (ins_index 0, columns by
  ascending protein id), ``ehr_codes.parquet`` (``eid, code``: baseline ICD-10 three-character
  codes; the per-fold featurisation happens in ``tensors ukb``), one row per participant with the
  modality present, NaN kept;
- ``exclusions.parquet`` (``level, id, reason``): excluded participants (no modality present),
  absent modalities with their reason, Olink rows of unknown participants, unusable diagnoses,
  non-finite NMR or Olink values (``inf``, ``-inf``, ``1e999``: treated as missing);
- ``attrition.csv`` and ``summary.json`` (counts that reconcile: participants in = included +
  excluded; diagnosis rows in = used + filtered by reason).

Presence: NMR and Olink are present iff the row exists and is not all NaN; EHR is present iff the
baseline date 53-0.0 is known (hospital linkage covers the whole cohort, so no episode = an
all-zero history), or, with ``ehr_requires_episodes``, also >= 1 hesin episode.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from gated_symile.errors import ConfigError
from gated_symile.schemas import check_section
from gated_symile.outputs import staged_folder
from gated_symile.records.errors import MissingRecord
from gated_symile.records.ukb_tables import (
    pivot_olink,
    read_hesin,
    read_hesin_diag,
    read_main_dataset,
    read_olink_coding,
)
from gated_symile.data.ukb.ehr import baseline_codes
from gated_symile.data.ukb.folds import make_splits

__all__ = ["MODALITIES", "NMR_FIELDS", "UkbCohortConfig", "build_ukb_cohort", "raw_file"]

MODALITIES: tuple[str, ...] = ("nmr", "ehr", "olink")
NMR_FIELDS: tuple[int, ...] = tuple(range(23400, 23649))
BASELINE_FIELD = 53
_EXCLUSION_SCHEMA = {"level": pl.String, "id": pl.String, "reason": pl.String}


@dataclass(frozen=True)
class UkbCohortConfig:
    raw: Path
    out: Path
    n_folds: int = 5
    val_frac: float = 0.1
    seed: int = 0
    threads: int = 1
    ehr_requires_episodes: bool = False

    def __post_init__(self) -> None:
        check_section(asdict(self), "ukb")


def raw_file(raw: Path, name: str, required: bool = True) -> Path | None:
    """``raw/name`` or ``raw/name.gz``; a missing required file raises ``MissingRecord``."""
    for candidate in (Path(raw) / name, Path(raw) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    if required:
        raise MissingRecord(Path(raw) / name, "file does not exist (nor its .gz)")
    return None


def build_ukb_cohort(cfg: UkbCohortConfig) -> dict:
    """Write the cohort files to ``cfg.out`` and return ``summary.json``'s content.

    The folder is built beside ``cfg.out`` and moved there when complete (``gated_symile.outputs``).
    """
    with staged_folder(cfg.out, markers=["summary.json"], what="cohort folder") as work:
        return _build_ukb_cohort(Path(cfg.raw), work, cfg)


def _build_ukb_cohort(raw: Path, out: Path, cfg: UkbCohortConfig) -> dict:
    paths = {
        "main": raw_file(raw, "ukb_main.csv"),
        "olink": raw_file(raw, "olink_data.txt"),
        "hesin": raw_file(raw, "hesin.txt"),
        "hesin_diag": raw_file(raw, "hesin_diag.txt"),
        "coding143": raw_file(raw, "coding143.tsv", required=False),
    }
    exclusions: list[pl.DataFrame] = []

    main = read_main_dataset(
        paths["main"], fields=(BASELINE_FIELD, *NMR_FIELDS), instances=(0,)
    ).sort("eid")
    eids = main["eid"].to_numpy()
    nmr = _nmr_table(main, eids, exclusions)
    olink = _olink_table(paths, eids, cfg.threads, exclusions)
    baseline = main.select("eid", pl.col(f"{BASELINE_FIELD}-0.0").alias("baseline_date"))
    ehr = _ehr_table(paths, baseline, eids, cfg.ehr_requires_episodes, exclusions)

    present = {"nmr": nmr.present, "ehr": ehr.present, "olink": olink.present}
    included = nmr.present | ehr.present | olink.present
    exclusions.append(_rows("participant", eids[~included], "no modality present"))
    participants = pl.DataFrame(
        {"eid": eids, "baseline_date": baseline["baseline_date"], **present, "included": included}
    )
    splits = make_splits(eids[included], cfg.n_folds, cfg.val_frac, cfg.seed)

    _write(participants, out / "participants.parquet")
    _write(splits, out / "splits.parquet")
    _write(nmr.frame(), out / "nmr.parquet")
    _write(olink.frame(), out / "olink.parquet")
    _write(
        ehr.codes.filter(pl.col("eid").is_in(pl.Series(eids[ehr.present]).implode())),
        out / "ehr_codes.parquet",
    )
    excluded = pl.concat([e.cast(_EXCLUSION_SCHEMA) for e in exclusions]).sort(
        "level", "id", "reason"
    )
    _write(excluded, out / "exclusions.parquet")

    counts = _counts(eids, present, included)
    _write_attrition(counts, out / "attrition.csv")
    summary = _summary(cfg, paths, counts, splits, nmr=nmr, olink=olink, ehr=ehr, excluded=excluded)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return summary


def _summary(
    cfg: UkbCohortConfig,
    paths: dict[str, Path | None],
    counts: dict[str, int],
    splits: pl.DataFrame,
    *,
    nmr: _FeatureTable,
    olink: _FeatureTable,
    ehr: _EhrTable,
    excluded: pl.DataFrame,
) -> dict:
    """``summary.json``: the counts that reconcile, the folds, the features kept and the settings,
    so that a cohort can be checked and compared without opening its parquet files."""
    return {
        "dataset": "ukb",
        "counts": counts,
        "folds": {
            "n_folds": cfg.n_folds,
            "val_frac": cfg.val_frac,
            "seed": cfg.seed,
            "sizes": splits["fold"].value_counts().sort("fold")["count"].to_list(),
        },
        "diagnosis_rows": ehr.diag_counts,
        "olink": {
            "protein_ids": olink.protein_ids.tolist(),
            "features": olink.features,
            "unknown_participants": olink.unknown_participants,
        },
        "nmr": {"features": nmr.features},
        "ehr_requires_episodes": cfg.ehr_requires_episodes,
        "exclusions": dict(excluded["reason"].value_counts().sort("reason").iter_rows()),
        "sources": {k: (p.name if p else None) for k, p in paths.items()},
    }


@dataclass
class _FeatureTable:
    """One modality's feature matrix: the rows kept, their participants, feature names, presence
    over the main dataset's participants (``present``) and the rows written (``keep``)."""

    eids: np.ndarray
    values: np.ndarray
    features: list[str]
    present: np.ndarray
    keep: np.ndarray
    protein_ids: np.ndarray | None = None
    unknown_participants: int = 0

    def frame(self) -> pl.DataFrame:
        """``eid`` plus one column per feature, for the rows with the modality present."""
        return pl.DataFrame({"eid": self.eids[self.keep]}).hstack(
            pl.DataFrame(self.values[self.keep], schema=self.features, orient="row")
        )


def _nmr_table(main: pl.DataFrame, eids: np.ndarray, exclusions: list[pl.DataFrame]) -> _FeatureTable:
    """Instance-0 NMR fields; non-finite values become missing, an all-NaN row an absent modality."""
    nmr_columns = [f"{field}-0.0" for field in NMR_FIELDS]
    nmr = main.select(nmr_columns).to_numpy().astype(np.float64)
    exclusions.append(_non_finite_as_missing(nmr, eids, nmr_columns, "NMR"))
    nmr_present = ~np.isnan(nmr).all(axis=1)
    exclusions.append(_rows("modality", eids[~nmr_present], "NMR row all NaN"))
    return _FeatureTable(eids, nmr, nmr_columns, nmr_present, nmr_present)


def _olink_table(
    paths: dict[str, Path | None], eids: np.ndarray, threads: int, exclusions: list[pl.DataFrame]
) -> _FeatureTable:
    """Olink ins_index 0 of the main dataset's participants, one column per protein."""
    olink = pivot_olink(paths["olink"], 0, threads=threads)
    known = np.isin(olink.eids, eids)
    exclusions.append(_rows("record", olink.eids[~known], "Olink participant not in main dataset"))
    olink_rows = olink.values[known]
    olink_eids = olink.eids[known]
    protein_names = _protein_names(paths["coding143"], olink.protein_ids)
    exclusions.append(_non_finite_as_missing(olink_rows, olink_eids, protein_names, "Olink"))
    olink_nan = np.isnan(olink_rows).all(axis=1)
    exclusions.append(_rows("modality", olink_eids[olink_nan], "Olink row all NaN"))
    olink_present = np.isin(eids, olink_eids[~olink_nan])
    return _FeatureTable(
        olink_eids, olink_rows, protein_names, olink_present, ~olink_nan,
        protein_ids=olink.protein_ids, unknown_participants=int((~known).sum()),
    )  # fmt: skip


@dataclass
class _EhrTable:
    """Baseline diagnosis codes, the diagnosis-row counts and EHR presence per participant."""

    codes: pl.DataFrame  # eid, code: baseline ICD-10 codes
    diag_counts: dict[str, int]  # diagnosis rows: used and filtered by reason
    present: np.ndarray


def _ehr_table(
    paths: dict[str, Path | None],
    baseline: pl.DataFrame,
    eids: np.ndarray,
    requires_episodes: bool,
    exclusions: list[pl.DataFrame],
) -> _EhrTable:
    """Baseline diagnosis codes and EHR presence (a known baseline date, and episodes if asked)."""
    hesin, diag = read_hesin(paths["hesin"]), read_hesin_diag(paths["hesin_diag"])
    codes, diag_counts, quarantined = baseline_codes(hesin, diag, baseline)
    exclusions.append(quarantined)
    has_date = baseline["baseline_date"].is_not_null().to_numpy()
    ehr_present = has_date.copy()
    exclusions.append(_rows("modality", eids[~has_date], "EHR: no baseline date (53-0.0)"))
    if requires_episodes:
        with_episodes = np.isin(eids, hesin["eid"].unique().to_numpy())
        exclusions.append(
            _rows("modality", eids[has_date & ~with_episodes], "EHR: no hospital episodes")
        )
        ehr_present &= with_episodes
    unknown_hes = np.setdiff1d(hesin["eid"].unique().to_numpy(), eids)
    exclusions.append(_rows("record", unknown_hes, "HES participant not in main dataset"))
    return _EhrTable(codes, diag_counts, ehr_present)


def _counts(eids: np.ndarray, present: dict[str, np.ndarray], included: np.ndarray) -> dict[str, int]:
    """Attrition counts; participants in must equal included + excluded."""
    n_excluded = int((~included).sum())
    if eids.size != int(included.sum()) + n_excluded:
        raise RuntimeError("cohort bookkeeping broken: participants in != included + excluded")
    return {
        "participants": int(eids.size),
        **{m: int(present[m].sum()) for m in MODALITIES},
        "intersect": int((present["nmr"] & present["ehr"] & present["olink"]).sum()),
        "union": int(included.sum()),
        "excluded": n_excluded,
    }


def _protein_names(coding: Path | None, protein_ids: np.ndarray) -> list[str]:
    """Abbreviations from data-coding 143 when available and unique, else ``protein_<id>``."""
    fallback = [f"protein_{int(i)}" for i in protein_ids]
    if coding is None:
        return fallback
    table = read_olink_coding(coding)
    lookup = dict(zip(table["protein_id"].to_list(), table["abbreviation"].to_list()))
    names = [lookup.get(int(i)) or fallback[j] for j, i in enumerate(protein_ids)]
    return names if len(set(names)) == len(names) else fallback


def _non_finite_as_missing(
    values: np.ndarray, eids: np.ndarray, features: list[str], modality: str
) -> pl.DataFrame:
    """Set every +-inf cell of ``values`` to NaN (in place): a missing value, not an extreme one.

    Returns one exclusion row per cell (``level`` value, ``id`` ``<eid>:<feature>``), so they
    are counted in ``summary.json``.
    """
    rows, columns = np.nonzero(np.isinf(values))
    quarantined = pl.DataFrame(
        {
            "level": ["value"] * rows.size,
            "id": [f"{int(eids[r])}:{features[c]}" for r, c in zip(rows, columns)],
            "reason": [
                f"non-finite {modality} value {values[r, c]:g} treated as missing"
                for r, c in zip(rows, columns)
            ],
        },
        schema=_EXCLUSION_SCHEMA,
    )
    values[rows, columns] = np.nan
    return quarantined


def _rows(level: str, ids: np.ndarray, reason: str) -> pl.DataFrame:
    ids = [str(int(i)) for i in np.asarray(ids)]
    return pl.DataFrame(
        {"level": [level] * len(ids), "id": ids, "reason": [reason] * len(ids)},
        schema=_EXCLUSION_SCHEMA,
    )


def _write(frame: pl.DataFrame, path: Path) -> None:
    """Parquet with fixed settings (same rows -> same bytes)."""
    frame.write_parquet(path, compression="zstd", statistics=False)


def _write_attrition(counts: dict[str, int], path: Path) -> None:
    labels = {
        "participants": "participants in main dataset",
        "nmr": "with NMR (instance 0)",
        "ehr": "with EHR (baseline date)",
        "olink": "with Olink (ins_index 0)",
        "intersect": "intersect (all three)",
        "union": "union (>= 1 modality)",
        "excluded": "excluded (no modality)",
    }
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["group", "participants"])
        for key, label in labels.items():
            writer.writerow([label, counts[key]])
