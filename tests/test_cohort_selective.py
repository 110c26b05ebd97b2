"""The cohort opens only the ECG records its rule consumes, and chooses what checking every record
would choose.

The oracle is the check-everything path, kept here only: QC every listed record
(:func:`qc_record`), then per admission the earliest valid record in [-24 h, +24 h] (ties by file
order), written independently in pandas.  Releases are built so that the first one, two or three
candidates of many admissions fail (NaN, all zero, missing, truncated, no path), admissions of one
subject share candidates, and bad records also lie outside every window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.data.mimic.cohort import MimicCohortConfig, build_mimic_cohort
from gated_symile.data.mimic.ecg_candidates import NO_PATH, consume_candidates
from gated_symile.data.mimic.ecg_qc_scan import EcgQcTask, qc_record
from tests.mimic_raw_fixtures import RawWorld

T0 = datetime(2180, 1, 1, 12, 0, 0)
H = timedelta(hours=1)
BAD = ("nan", "zero", "missing", "truncated", "nopath")


# ------------------------------------------------------------------ the round algorithm


def naive_first_valid(candidates: dict[int, list[int]], verdict: dict[int, bool]):
    """Per admission, walk its candidates in order until one is valid: (choices, rows read)."""
    chosen, read = {}, set()
    for hadm, rows in candidates.items():
        for row in rows:
            read.add(row)
            if verdict[row]:
                chosen[hadm] = row
                break
    return chosen, read


def naive_rounds(candidates: dict[int, list[int]], verdict: dict[int, bool]) -> list[list[int]]:
    """The records each round reads for the first time: round ``k`` reads the ``k``-th candidate of
    every admission whose earlier candidates all failed (sorted)."""
    resolved, read, rounds = set(), set(), []
    for rank in range(max(map(len, candidates.values()), default=0)):
        live = {hadm: rows[rank] for hadm, rows in candidates.items() if hadm not in resolved and len(rows) > rank}
        new = sorted(set(live.values()) - read)
        if new:
            rounds.append(new)
        read.update(new)
        resolved.update(hadm for hadm, row in live.items() if verdict[row])
    return rounds


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.integers(0, 30), st.lists(st.integers(0, 25), max_size=6, unique=True), max_size=12
    ),
    st.lists(st.booleans(), min_size=26, max_size=26),
    st.integers(1, 8),
)
def test_rounds_read_exactly_what_the_sequential_rule_reads(candidates, valid, rows_per_check):
    verdict = dict(enumerate(valid))
    calls: list[list[int]] = []

    def check(rows: list[int]) -> list[str | None]:
        calls.append(rows)
        return [None if verdict[row] else f"bad {row}" for row in rows]

    hadm = np.array([h for h, rows in sorted(candidates.items()) for _ in rows], dtype=np.int64)
    file_row = np.array([r for _, rows in sorted(candidates.items()) for r in rows], dtype=np.int64)
    rejected, rounds = consume_candidates(hadm, file_row, check, rows_per_check=rows_per_check)
    chosen, read = naive_first_valid(candidates, verdict)
    checked = [row for call in calls for row in call]
    assert len(checked) == len(set(checked))  # a shared record is checked once
    assert set(checked) == read
    assert rejected == {row: f"bad {row}" for row in read if not verdict[row]}
    expected = naive_rounds(candidates, verdict)
    assert rounds == len(expected)
    blocks = [new[i : i + rows_per_check] for new in expected for i in range(0, len(new), rows_per_check)]
    assert calls == blocks  # each round ascending, in blocks of at most rows_per_check
    for hadm_id, rows in candidates.items():
        first = next((row for row in rows if row in read and row not in rejected), None)
        assert first == chosen.get(hadm_id)


# ------------------------------------------------------------------ real releases


def random_world(seed: int) -> RawWorld:
    """Subjects with 1-3 admissions 10-40 h apart (windows overlap: shared candidates), each with
    0-4 in-window ECGs of mostly bad kinds before a good one, ties, and bad records outside every
    window; every admission has a CXR and a lab, so only the ECG rule decides."""
    rng = np.random.default_rng(seed)
    world = RawWorld()
    study = 40000000
    for k in range(16):
        subject = 10000000 + k
        admit = T0 + timedelta(days=int(rng.integers(0, 300)))
        for j in range(int(rng.integers(1, 4))):
            hadm = 20000000 + 10 * k + j
            world.add_admission(subject, hadm, admit)
            world.add_cxr(subject, 50000000 + 10 * k + j, f"{k:08x}-{j:08x}-0-0-0", admit + 48 * H)
            world.add_lab(subject, 51221, admit + H, 1.0 + j)
            n_fail = int(rng.integers(0, 4))
            minutes = np.sort(rng.integers(-24 * 60, 24 * 60 + 1, n_fail + 1))
            kinds = [BAD[i] for i in rng.integers(0, len(BAD), n_fail)]
            kinds.append("ok" if rng.random() < 0.8 else BAD[int(rng.integers(0, len(BAD)))])
            for minute, kind in zip(minutes, kinds):
                study += 1
                world.add_ecg(subject, study, admit + timedelta(minutes=int(minute)), kind)
            if rng.random() < 0.3:  # a tie with the last one, listed after it
                study += 1
                world.add_ecg(subject, study, admit + timedelta(minutes=int(minutes[-1])), "ok")
            study += 1  # outside every window of this admission: never a candidate of it
            outside = 25 * 60 + int(rng.integers(0, 48 * 60))
            world.add_ecg(subject, study, admit - timedelta(minutes=outside), BAD[study % len(BAD)])
            admit += timedelta(hours=int(rng.integers(10, 41)))
    for k in range(4):  # subjects without any admission
        study += 1
        world.add_ecg(10090000 + k, study, T0, BAD[k])
    # a file order that is not the time order: shuffle the record list
    world.ecgs = [world.ecgs[i] for i in rng.permutation(len(world.ecgs))]
    return world


def check_everything(
    paths: dict[str, Path], reach_ecg: set[int] | None = None
) -> tuple[pd.DataFrame, pd.Series]:
    """The oracle: every listed record QC'd, then the earliest valid one per admission; ``read``
    holds the records the sequential rule reads for the admissions in ``reach_ecg`` (those with a
    selected CXR, the criterion before the ECG's; None: every admission)."""
    ecg_root = Path(paths["ecg"])
    ecg = pd.read_csv(ecg_root / "record_list.csv", dtype={"path": str})
    ecg["file_row"] = np.arange(len(ecg))
    ecg["reason"] = [
        qc_record(EcgQcTask(str(ecg_root), path)) if isinstance(path, str) and path else NO_PATH
        for path in ecg.path
    ]
    adm = pd.read_csv(Path(paths["mimic_iv"]) / "hosp" / "admissions.csv.gz", parse_dates=["admittime"])
    m = adm[["subject_id", "hadm_id", "admittime"]].merge(ecg, on="subject_id")
    delta = pd.to_datetime(m.ecg_time) - m.admittime
    m = m[(delta >= -pd.Timedelta(hours=24)) & (delta <= pd.Timedelta(hours=24))]
    m = m.assign(t=pd.to_datetime(m.ecg_time)).sort_values(["hadm_id", "t", "file_row"])
    read = []  # per admission: its candidates up to and including the first valid one
    for hadm_id, group in m.groupby("hadm_id"):
        if reach_ecg is not None and hadm_id not in reach_ecg:
            continue
        valid = group.reason.isna().to_numpy()
        read.append(group.iloc[: int(np.argmax(valid)) + 1 if valid.any() else len(group)])
    read = pd.concat(read)
    chosen = m[m.reason.isna()].groupby("hadm_id").head(1).set_index("hadm_id")
    return chosen, read.drop_duplicates("file_row").set_index("file_row").reason


@pytest.mark.parametrize("seed,workers", [(0, 1), (1, 1), (2, 2)])
def test_cohort_equals_check_everything_when_early_candidates_fail(tmp_path, seed, workers):
    paths = random_world(seed).write(tmp_path)
    summary = build_mimic_cohort(MimicCohortConfig(**paths, out=tmp_path / "out", workers=workers))
    chosen, read = check_everything(paths)
    cohort = pd.read_parquet(tmp_path / "out" / "cohort.parquet").set_index("hadm_id")
    assert sorted(cohort.index) == sorted(chosen.index)
    assert cohort.ecg_study_id.to_dict() == chosen.study_id.to_dict()
    assert cohort.ecg_path.to_dict() == chosen.path.to_dict()
    assert len(chosen) < summary["admissions"]  # some admission has no valid ECG at all
    assert summary["patients_in_cohort"] == cohort.subject_id.nunique() < len(cohort)  # subjects with two

    ex = pd.read_parquet(tmp_path / "out" / "exclusions.parquet")
    records = ex[ex.level == "ecg_record"]
    expected = read.dropna()
    assert len(records) == len(expected) > 10
    listed = pd.read_csv(Path(paths["ecg"]) / "record_list.csv", dtype={"path": str})
    ids = [  # a record without a path is named by its 1-based row in the file
        p if isinstance(p, str) else f"record_list row {r + 1}"
        for r, p in zip(expected.index, listed.path[expected.index])
    ]
    assert sorted(zip(records.id, records.reason)) == sorted(zip(ids, expected))
    opened = int(listed.path[read.index].notna().sum())
    assert summary["records_opened"]["ecg_records"] == opened < len(listed)
