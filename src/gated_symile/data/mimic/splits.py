"""Patient-disjoint train/val/test splits, retrieval candidates and lab percentiles (docs/data.md §6).

Reference algorithm (Symile-MIMIC ``create_dataset_splits.py``), made deterministic:

1. ``train, rest = train_test_split(cohort, train_size=train_n, shuffle=True, random_state=seed)``
2. drop from ``rest`` every admission of a patient who is in train;
3. ``val, test = train_test_split(rest, train_size=val_n, shuffle=True, random_state=seed)``
4. drop from ``test`` every admission of a patient who is in val;
5. assert subject and admission disjointness.

scikit-learn's ``train_test_split`` is called itself (not re-implemented) on row positions, so the
permutation is exactly the reference one; each split keeps the order it returns.

Small-cohort scaling rule (the requested sizes are for the full 11 622-admission cohort; synthetic
CI cohorts have a few hundred):

* the cohort *fits* when ``n >= train_n + val_n + candidate_n`` (enough left for a test split that
  can hold one full candidate set); then ``train_n`` is used as requested, otherwise
  ``floor(0.70 n)``;
* with ``r`` admissions left after step 2, ``val_n`` is used as requested when the cohort fits and
  ``r >= val_n + candidate_n``, otherwise ``floor(r / 2)`` (val and test share the remainder, ≈
  15 % / 15 % of the cohort when no patient overlaps).

Requested and effective sizes and which ones were scaled go into ``metadata.json``.  The real
cohort (11 622 rows, 10 000 / 750 requested) fits, so it follows the reference algorithm unscaled.

Candidates: for every query row of val and test, the positive (the row itself) in column 0 and
``k - 1`` other rows of the same split drawn without replacement, ``k = min(candidate_n, rows)``.
One ``numpy.random.default_rng(seed)`` draws for the val queries in order, then the test queries.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gated_symile.errors import RecordError
from gated_symile.intermediates import read_frame
from gated_symile.data.mimic.lab_percentiles import apply_lab_ecdf, ecdf_table, fit_lab_ecdf
from gated_symile.outputs import ROWS_PER_GROUP, staged_folder
from gated_symile.provenance.hashing import file_sha256
from gated_symile.schemas import check_section

__all__ = [
    "SPLIT_NAMES",
    "SplitConfig",
    "SplitResult",
    "draw_candidates",
    "split_cohort",
    "write_splits",
]

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
TRAIN_FRACTION = 0.70
VAL_SHARE_OF_REST = 0.5
SCALING_RULE = (
    "cohort fits if n >= train_n + val_n + candidate_n; else train = floor(0.70 n). "
    "val = val_n if the cohort fits and the rest after removing train patients has "
    ">= val_n + candidate_n rows; else floor(rest / 2). "
    "candidate_n per split = min(candidate_n, rows)."
)


@dataclass(frozen=True)
class SplitConfig:
    """What the user asks for; the effective sizes may be smaller (see the module docstring)."""

    seed: int = 0
    train_n: int = 10000
    val_n: int = 750
    candidate_n: int = 10

    def __post_init__(self) -> None:
        check_section(asdict(self), "mimic.split")


@dataclass(frozen=True)
class SplitResult:
    """Row positions into the cohort for each split (in split order) and the bookkeeping."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    effective_train_n: int
    effective_val_n: int
    scaled_train: bool
    scaled_val: bool
    dropped_rest: int
    dropped_test: int

    def rows(self, name: str) -> np.ndarray:
        return {"train": self.train, "val": self.val, "test": self.test}[name]


def split_cohort(
    subject_ids: np.ndarray, config: SplitConfig, *, source: str = "cohort"
) -> SplitResult:
    """Split cohort rows (``subject_ids`` in cohort order) following the reference algorithm.

    Raises :class:`RecordError` naming ``source`` when the cohort is too small to give non-empty
    val and test splits.
    """
    from sklearn.model_selection import train_test_split

    subject_ids = np.asarray(subject_ids)
    n = subject_ids.size
    if n < 3:
        raise RecordError(source, f"only {n} admissions: at least 3 are needed for train/val/test")
    fits = n >= config.train_n + config.val_n + config.candidate_n
    train_n = config.train_n if fits else max(1, math.floor(TRAIN_FRACTION * n))
    positions = np.arange(n, dtype=np.int64)
    train, rest = train_test_split(
        positions, train_size=train_n, shuffle=True, random_state=config.seed
    )
    keep = ~np.isin(subject_ids[rest], subject_ids[train])
    dropped_rest = int((~keep).sum())
    rest = rest[keep]
    r = rest.size
    if r < 2:
        raise RecordError(
            source,
            f"{n} admissions: after removing the patients of the {train_n} training admissions "
            f"only {r} remain, too few for val and test",
        )
    val_fits = fits and r >= config.val_n + config.candidate_n
    val_n = config.val_n if val_fits else max(1, math.floor(VAL_SHARE_OF_REST * r))
    val, test = train_test_split(rest, train_size=val_n, shuffle=True, random_state=config.seed)
    keep = ~np.isin(subject_ids[test], subject_ids[val])
    dropped_test = int((~keep).sum())
    test = test[keep]
    if test.size == 0:
        raise RecordError(
            source, f"{n} admissions: the test split is empty after removing the patients of val"
        )
    result = SplitResult(
        train=np.asarray(train, np.int64),
        val=np.asarray(val, np.int64),
        test=np.asarray(test, np.int64),
        effective_train_n=int(train_n),
        effective_val_n=int(val_n),
        scaled_train=not fits,
        scaled_val=not val_fits,
        dropped_rest=dropped_rest,
        dropped_test=dropped_test,
    )
    _assert_disjoint(subject_ids, result)
    return result


def _assert_disjoint(subject_ids: np.ndarray, result: SplitResult) -> None:
    """Step 5: no admission and no patient in two splits (a bug here would leak test patients)."""
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        rows_a, rows_b = result.rows(a), result.rows(b)
        assert np.intersect1d(rows_a, rows_b).size == 0, f"{a}/{b} share admissions"
        shared = np.intersect1d(subject_ids[rows_a], subject_ids[rows_b])
        assert shared.size == 0, f"{a}/{b} share patients"


def draw_candidates(n_rows: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n_rows, k) int64 candidate rows: row i itself in column 0, then ``k - 1`` distinct others.

    Drawing ``rng.choice(n_rows - 1, k - 1, replace=False)`` and shifting indices ``>= i`` by one is
    exactly ``rng.choice(<all rows except i>, k - 1, replace=False)`` without building that array.
    """
    if not 1 <= k <= n_rows:
        raise ValueError(f"candidate count {k} must be in [1, {n_rows}]")
    out = np.empty((n_rows, k), dtype=np.int64)
    for i in range(n_rows):
        negatives = rng.choice(n_rows - 1, size=k - 1, replace=False)
        negatives[negatives >= i] += 1
        out[i, 0] = i
        out[i, 1:] = negatives
    return out


def _read_cohort(path: Path, itemids: Sequence[str]) -> pd.DataFrame:
    cohort = read_frame(path, "cohort table", columns=["subject_id", "hadm_id", *itemids])
    try:
        labs = cohort[list(itemids)].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise RecordError(path, f"lab columns are not numeric ({exc})") from None
    infinite = np.flatnonzero(np.isinf(labs).any(axis=1))
    if infinite.size:
        raise RecordError(path, f"row {infinite[0]} has an infinite lab value (missing values must be null)")
    if cohort["hadm_id"].duplicated().any():
        raise RecordError(path, "hadm_id is not unique: one row per admission expected")
    keys = cohort[["subject_id", "hadm_id"]].to_numpy()
    order_ok = bool(
        np.all(
            (keys[1:, 0] > keys[:-1, 0])
            | ((keys[1:, 0] == keys[:-1, 0]) & (keys[1:, 1] > keys[:-1, 1]))
        )
    )
    if not order_ok:
        raise RecordError(
            path, "rows are not sorted by (subject_id, hadm_id); the seeded split needs it"
        )
    return cohort


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=ROWS_PER_GROUP)


def _write_json(payload: dict, path: Path) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def write_splits(cohort_path: str | Path, out_dir: str | Path, config: SplitConfig) -> dict:
    """Run the splits stage: read the cohort, split, fit labs on train, write all outputs.

    Returns the metadata dictionary that is also written to ``out_dir/metadata.json``. The folder
    is built beside ``out_dir`` and moved there when complete (``gated_symile.outputs``).
    """
    with staged_folder(out_dir, markers=["metadata.json"], what="splits folder") as work:
        return _write_splits(Path(cohort_path), work, config)


def _write_splits(cohort_path: Path, out_dir: Path, config: SplitConfig) -> dict:
    from gated_symile.data.mimic.labs import LAB_COLUMNS

    itemids = list(LAB_COLUMNS)
    cohort = _read_cohort(cohort_path, itemids)
    result = split_cohort(cohort["subject_id"].to_numpy(), config, source=str(cohort_path))

    frames = {name: cohort.iloc[result.rows(name)].reset_index(drop=True) for name in SPLIT_NAMES}
    ecdf = fit_lab_ecdf(frames["train"], itemids)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in frames.items():
        _write_parquet(apply_lab_ecdf(frame, ecdf), out_dir / f"{name}.parquet")

    rng = np.random.default_rng(config.seed)
    candidate_n = {}
    for name in ("val", "test"):
        k = min(config.candidate_n, len(frames[name]))
        candidate_n[name] = k
        np.save(out_dir / f"candidates_{name}.npy", draw_candidates(len(frames[name]), k, rng))

    _write_json(ecdf.means_dict(), out_dir / "labs_means.json")
    _write_parquet(ecdf_table(ecdf), out_dir / "lab_ecdf.parquet")

    n = len(cohort)
    kept = sum(len(f) for f in frames.values())
    assert n == kept + result.dropped_rest + result.dropped_test, "admissions lost without a count"
    metadata = {
        "format": "gated-symile-mimic-splits/1",
        "seed": config.seed,
        "requested": {k: v for k, v in asdict(config).items() if k != "seed"},
        "effective": {
            "train_n": result.effective_train_n,
            "val_n": result.effective_val_n,
            "candidate_n": candidate_n,
        },
        "scaled": {"train": result.scaled_train, "val": result.scaled_val},
        "scaling_rule": SCALING_RULE,
        "cohort": {
            "file": cohort_path.name,
            "sha256": file_sha256(cohort_path),
            "admissions": n,
            "subjects": int(cohort["subject_id"].nunique()),
        },
        "dropped_patient_overlap": {
            "rest_after_train": result.dropped_rest,
            "test_after_val": result.dropped_test,
        },
        "splits": {
            name: {"admissions": len(frame), "subjects": int(frame["subject_id"].nunique())}
            for name, frame in frames.items()
        },
        "lab_itemids": itemids,
        "labs_without_train_observations": ecdf.labs_without_train_observations(),
    }
    _write_json(metadata, out_dir / "metadata.json")
    return metadata
