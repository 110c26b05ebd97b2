"""Subjects, admissions and their timing: the skeleton every release hangs on (vectorised).

The plan is drawn once, in the parent process, from ``SeedSequence([seed, PLAN])``; the ECG,
CXR and lab events (``events.py``, ``cxr_studies.py``, ``labs.py``) and the per-record renderers
key their own random streams on ids from it, so outputs never depend on the number of workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from gated_symile.synthetic.mimic.config import MimicSynthConfig
from gated_symile.synthetic.mimic.identifiers import (
    HADM,
    SUBJECT,
    epoch_seconds,
    format_dates,
    format_times,
    provider_ids,
    scrambled_ids,
)
from gated_symile.synthetic.mimic.latents import Latents, draw_latents

HOUR = 3600
DAY = 86_400
ADMISSION_PANEL_ROWS = 55
"""Approximate rows of the admission lab panels; daily panels fill up to labs_per_admission."""
DAILY_PANEL_ROWS = 26

PLAN_STREAM = 1
ECG_STREAM = 2
CXR_STREAM = 3
LAB_STREAM = 4


def choose(
    rng: np.random.Generator, eligible: np.ndarray, rate: float, minimum: int = 1
) -> np.ndarray:
    """Exactly ``round(rate * #eligible)`` eligible entries at random, at least ``minimum`` if rate > 0.

    ``minimum=2`` is used for branches with two sides (before / after a bound) so that a small
    run still hits both.
    """
    eligible = np.asarray(eligible, dtype=bool)
    idx = np.flatnonzero(eligible)
    mask = np.zeros(eligible.size, dtype=bool)
    if rate <= 0 or idx.size == 0:
        return mask
    k = max(minimum, int(round(rate * idx.size)))
    mask[rng.choice(idx, size=min(k, idx.size), replace=False)] = True
    return mask


def uniform_int(
    rng: np.random.Generator, low: float, high: float, n: int
) -> np.ndarray:
    """Integers uniform in ``[low, high]`` (seconds or minutes)."""
    return rng.integers(int(low), int(high) + 1, n, dtype=np.int64)


def alternate(mask: np.ndarray) -> np.ndarray:
    """+1 / -1 alternating over the selected entries (first one -1): the side of a two-sided branch."""
    side = np.zeros(mask.size, dtype=np.int64)
    side[mask] = np.where(np.arange(int(mask.sum())) % 2 == 0, -1, 1)
    return side


def pick(rng: np.random.Generator, choices: dict[str, float], n: int) -> np.ndarray:
    """Categorical draw of strings with the given (unnormalised) weights."""
    names = np.array(list(choices), dtype=object)
    p = np.array(list(choices.values()), dtype=float)
    return names[rng.choice(names.size, size=n, p=p / p.sum())]


@dataclass
class Plan:
    """Everything drawn in the parent process; per-admission arrays are indexed by ``adm``."""

    cfg: MimicSynthConfig
    latents: Latents
    subject_of: np.ndarray  # subject index of each admission
    subject_id: np.ndarray  # subject_id of each admission
    hadm_id: np.ndarray
    admit_s: np.ndarray  # admittime, seconds since 1970 (minute resolution)
    disch_s: np.ndarray
    n_daily: np.ndarray  # daily lab panels of each admission
    previous: np.ndarray  # index of the subject's previous admission or -1
    readmission: np.ndarray  # starts 2-20 h after the previous discharge
    patients: pl.DataFrame
    admissions: pl.DataFrame
    branches: dict[str, int]

    @property
    def n(self) -> int:
        return self.hadm_id.size


_ADMISSION_TYPES = {
    "EW EMER.": 38,
    "OBSERVATION ADMIT": 16,
    "URGENT": 14,
    "EU OBSERVATION": 11,
    "SURGICAL SAME DAY ADMISSION": 7,
    "DIRECT EMER.": 5,
    "ELECTIVE": 5,
    "DIRECT OBSERVATION": 2,
    "AMBULATORY OBSERVATION": 2,
}
_ADMISSION_LOCATIONS = {
    "EMERGENCY ROOM": 49,
    "PHYSICIAN REFERRAL": 23,
    "TRANSFER FROM HOSPITAL": 16,
    "CLINIC REFERRAL": 4,
    "WALK-IN/SELF REFERRAL": 3,
    "PROCEDURE SITE": 3,
    "PACU": 2,
}
_DISCHARGE_LOCATIONS = {
    "HOME HEALTH CARE": 30,
    "HOME": 28,
    "": 15,
    "SKILLED NURSING FACILITY": 14,
    "REHAB": 5,
    "CHRONIC/LONG TERM ACUTE CARE": 4,
    "HOSPICE": 2,
    "AGAINST ADVICE": 2,
}
_INSURANCE = {"Other": 54, "Medicare": 38, "Medicaid": 8}
_LANGUAGE = {"ENGLISH": 93, "?": 7}
_MARITAL = {"SINGLE": 40, "MARRIED": 26, "WIDOWED": 20, "DIVORCED": 10, "": 4}
_RACE = {
    "WHITE": 62,
    "BLACK/AFRICAN AMERICAN": 17,
    "UNKNOWN": 6,
    "HISPANIC/LATINO - PUERTO RICAN": 4,
    "ASIAN": 3,
    "OTHER": 3,
    "WHITE - OTHER EUROPEAN": 2,
    "UNABLE TO OBTAIN": 2,
    "PATIENT DECLINED TO ANSWER": 1,
}
_YEAR_GROUPS = (
    "2008 - 2010",
    "2011 - 2013",
    "2014 - 2016",
    "2017 - 2019",
    "2020 - 2022",
)


def draw_plan(cfg: MimicSynthConfig) -> Plan:
    """Subjects, admissions (with times and demographics) and the per-admission latents.

    One random stream, drawn in a fixed order (the order fixes the bytes): subjects, admission
    times, latents, patients, admissions.
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, PLAN_STREAM]))
    n = cfg.admissions
    per_subject, subject_of, rank = _draw_subjects(rng, cfg)
    n_subjects = per_subject.size
    n_daily, readmission, admit, disch = _draw_times(rng, cfg, n_subjects, subject_of, rank)
    latents = draw_latents(rng, n, cfg.signal_strength)
    subject_ids = scrambled_ids(np.arange(n_subjects), SUBJECT, cfg.seed, salt=1)
    hadm_ids = scrambled_ids(np.arange(n), HADM, cfg.seed, salt=2)
    patients, died_at = _patients(
        rng, subject_ids, subject_of, admit, disch, per_subject
    )
    admissions = _admissions(
        rng, subject_ids[subject_of], hadm_ids, admit, disch, died_at
    )
    branches = {
        "subjects": n_subjects,
        "subjects_with_several_admissions": int((per_subject > 1).sum()),
        "readmissions_2_20h": int(readmission.sum()),
        "in_hospital_deaths": int((died_at >= 0).sum()),
    }
    return Plan(
        cfg=cfg,
        latents=latents,
        subject_of=subject_of,
        subject_id=subject_ids[subject_of],
        hadm_id=hadm_ids,
        admit_s=admit,
        disch_s=disch,
        n_daily=n_daily,
        previous=np.where(rank > 0, np.arange(n) - 1, -1),
        readmission=readmission,
        patients=patients,
        admissions=admissions,
        branches=branches,
    )


def _draw_subjects(
    rng: np.random.Generator, cfg: MimicSynthConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(admissions per subject, subject of each admission, rank of the admission in its subject).

    A share of subjects gets 2-4 admissions, which are consecutive; the candidates come from the
    first half so that truncating to ``cfg.admissions`` keeps at least one of them.
    """
    n = cfg.admissions
    candidates = np.arange(n) < max(1, n // 2)
    multi = choose(rng, candidates, cfg.multi_admission_rate if n > 1 else 0.0)
    per_subject = np.where(multi, rng.integers(2, 5, n), 1)
    total = np.cumsum(per_subject)
    n_subjects = int(np.searchsorted(total, n)) + 1
    per_subject = per_subject[:n_subjects].copy()
    per_subject[-1] -= int(total[n_subjects - 1]) - n
    subject_of = np.repeat(np.arange(n_subjects), per_subject)
    first = np.r_[0, np.cumsum(per_subject)[:-1]]
    return per_subject, subject_of, np.arange(n) - first[subject_of]


def _draw_times(
    rng: np.random.Generator,
    cfg: MimicSynthConfig,
    n_subjects: int,
    subject_of: np.ndarray,
    rank: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(daily lab panels, readmission mask, admittime, dischtime) of each admission.

    Lengths of stay follow the number of daily lab panels; a subject's admissions follow one
    another, a readmission 2-20 h after the previous discharge, others 30-400 days later.
    """
    n = subject_of.size
    target_daily = max(
        0.0, (cfg.labs_per_admission - ADMISSION_PANEL_ROWS) / DAILY_PANEL_ROWS
    )
    n_daily = np.minimum(rng.poisson(target_daily, n), 40)
    stay = (n_daily + 1) * DAY + uniform_int(rng, 2 * HOUR, 30 * HOUR, n)
    stay = stay // 60 * 60
    readmission = choose(rng, rank > 0, cfg.readmission_rate)
    gap = np.where(
        readmission,
        uniform_int(rng, 120, 1200, n) * 60,
        uniform_int(rng, 30, 400, n) * DAY + uniform_int(rng, 0, 1439, n) * 60,
    )
    start = epoch_seconds(
        rng.integers(2110, 2195, n_subjects), rng.integers(0, 365, n_subjects)
    )
    start = start + rng.integers(0, 1440, n_subjects) * 60
    admit = np.empty(n, dtype=np.int64)
    disch = np.empty(n, dtype=np.int64)
    for r in range(int(rank.max()) + 1):
        at = np.flatnonzero(rank == r)
        admit[at] = start[subject_of[at]] if r == 0 else disch[at - 1] + gap[at]
        disch[at] = admit[at] + stay[at]
    return n_daily, readmission, admit, disch


def _patients(rng, subject_ids, subject_of, admit, disch, per_subject):
    """patients.csv rows; the last admission of ~4 % of subjects ends in death."""
    n_subjects = subject_ids.size
    last = np.cumsum(per_subject) - 1
    dies = rng.random(n_subjects) < 0.04
    died_at = np.full(admit.size, -1, dtype=np.int64)
    died_at[last[dies]] = disch[last[dies]]
    first_year = admit[np.r_[0, np.cumsum(per_subject)[:-1]]].astype("datetime64[s]")
    first_year = first_year.astype("datetime64[Y]").astype(np.int64) + 1970
    anchor_year = first_year - rng.integers(0, 3, n_subjects)
    later_death = ~dies & (rng.random(n_subjects) < 0.08)
    dod = np.where(
        dies,
        disch[last],
        np.where(later_death, disch[last] + rng.integers(2, 365, n_subjects) * DAY, -1),
    )
    dod_text = format_dates(pl.Series("dod", dod).set(pl.Series(dod < 0), None), "dod")
    frame = pl.DataFrame(
        {
            "subject_id": subject_ids,
            "gender": np.where(rng.random(n_subjects) < 0.5, "F", "M"),
            "anchor_age": rng.integers(18, 92, n_subjects),
            "anchor_year": anchor_year,
            "anchor_year_group": np.array(_YEAR_GROUPS)[rng.integers(0, 5, n_subjects)],
        }
    ).with_columns(dod_text)
    return frame, died_at


def _admissions(rng, subject_id, hadm_id, admit, disch, died_at) -> pl.DataFrame:
    """admissions.csv rows in the exact v2.2 column order."""
    n = hadm_id.size
    location = pick(rng, _ADMISSION_LOCATIONS, n)
    via_ed = location == "EMERGENCY ROOM"
    edreg = admit - uniform_int(rng, 60, 600, n) * 60
    edout = admit + uniform_int(rng, 0, 90, n) * 60
    died = died_at >= 0
    discharge = np.where(died, "DIED", pick(rng, _DISCHARGE_LOCATIONS, n))

    def times(values, keep, name):
        return format_times(pl.Series(name, values).set(pl.Series(~keep), None), name)

    def nullable(values, name):
        series = pl.Series(name, values.astype(str))
        return series.set(series == "", None)

    return pl.DataFrame(
        [
            pl.Series("subject_id", subject_id),
            pl.Series("hadm_id", hadm_id),
            times(admit, np.ones(n, bool), "admittime"),
            times(disch, np.ones(n, bool), "dischtime"),
            times(died_at, died, "deathtime"),
            pl.Series("admission_type", pick(rng, _ADMISSION_TYPES, n).astype(str)),
            pl.Series("admit_provider_id", provider_ids(rng, n)),
            pl.Series("admission_location", location.astype(str)),
            nullable(discharge, "discharge_location"),
            pl.Series("insurance", pick(rng, _INSURANCE, n).astype(str)),
            pl.Series("language", pick(rng, _LANGUAGE, n).astype(str)),
            nullable(pick(rng, _MARITAL, n), "marital_status"),
            pl.Series("race", pick(rng, _RACE, n).astype(str)),
            times(edreg, via_ed, "edregtime"),
            times(edout, via_ed, "edouttime"),
            pl.Series("hospital_expire_flag", died.astype(np.int64)),
        ]
    )
