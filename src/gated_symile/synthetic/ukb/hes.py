"""Hospital episode tables (``hesin.txt``, ``hesin_diag.txt``) from each participant's code history.

Each participant with hospital records gets its lifetime three-character codes (``model.code_sets``)
spread over 1 + Poisson(n_codes / 2.5) episodes dated from 14 years before to 12 years after the
baseline assessment (clipped to 1992-01-01 .. 2022-10-31), so part of every history lies after
baseline, which the EHR featuriser must ignore.  Branches: half the codes carry a fourth character
(``E119``); episodes before April 1997 carry an ICD-9 code only (older Scottish SMR records);
5 % of episodes have no ``epistart`` (the episode date falls back to ``admidate``) and 0.3 % have
neither date (undatable, quarantined by the cohort).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from gated_symile.synthetic.ukb.catalogue import ICD9_CODES, icd10_catalogue

HESIN_COLUMNS: tuple[str, ...] = (
    "eid", "ins_index", "dsource", "source", "epistart", "epiend", "epidur", "bedyear", "epistat",
    "epitype", "epiorder", "spell_index", "spell_seq", "spelbgin", "spelend", "speldur",
    "admidate", "admimeth", "admimeth_uni", "admisorc", "disdate", "dismeth", "disdest",
    "classpat", "mainspef", "tretspef",
)  # fmt: skip
DIAG_COLUMNS: tuple[str, ...] = (
    "eid", "ins_index", "arr_index", "level", "diag_icd9", "diag_icd9_nb", "diag_icd10",
    "diag_icd10_nb",
)  # fmt: skip
_FIRST_DAY = int(np.datetime64("1992-01-01", "D").astype(np.int64))
_LAST_DAY = int(np.datetime64("2022-10-31", "D").astype(np.int64))
_ICD10_START = int(np.datetime64("1997-04-01", "D").astype(np.int64))
_MAX_EPISODES = 1 << 16
ISO_DATE = "%Y-%m-%d"
_DATE_FORMATS = {"dmy": "%d/%m/%Y", "iso": ISO_DATE}


def hes_tables(
    rng: np.random.Generator,
    eids: np.ndarray,
    codes: np.ndarray,
    baseline_day: np.ndarray,
    date_format: str,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``hesin`` and ``hesin_diag`` rows for participants with a non-empty ``codes`` row.

    ``baseline_day``: days since 1970-01-01 of the assessment (anchor of the episode dates).
    Draws from ``rng`` in a fixed order (the order fixes the bytes): episodes, then the episode
    attributes, then the diagnoses.
    """
    episodes = _episodes(rng, codes, baseline_day)
    hesin = _hesin_frame(rng, eids, episodes, _DATE_FORMATS[date_format])
    diag = _diag_frame(rng, eids, episodes)
    return hesin.select(HESIN_COLUMNS), diag.select(DIAG_COLUMNS)


@dataclass(frozen=True)
class _Episodes:
    """Each participant's codes grouped into dated episodes; per code and per episode arrays."""

    participant_of_code: np.ndarray  # row of ``codes`` (participant) of each code
    catalogue_index: np.ndarray  # column of ``codes`` (catalogue entry) of each code
    episode_of_code: np.ndarray  # episode (index into the per-episode arrays) of each code
    participant: np.ndarray  # participant row of each episode
    start: np.ndarray  # episode start, days since 1970-01-01
    ins_index: np.ndarray  # rank of the episode among its participant's, by start

    @property
    def scottish(self) -> np.ndarray:
        """Episodes before ICD-10 came in (April 1997): SMR records coded in ICD-9 only."""
        return self.start < _ICD10_START


def _episodes(
    rng: np.random.Generator, codes: np.ndarray, baseline_day: np.ndarray
) -> _Episodes:
    """Spread each participant's codes over 1 + Poisson(n / 2.5) episodes (at most one per code)
    dated 14 years before to 12 years after baseline, so part of every history is after it."""
    ii, cc = np.nonzero(codes)
    n_codes = np.bincount(ii, minlength=codes.shape[0])
    n_eps = np.minimum(n_codes, 1 + rng.poisson(n_codes / 2.5))
    episode = np.floor(rng.random(ii.size) * n_eps[ii]).astype(np.int64)
    keys, pair_episode = np.unique(ii * _MAX_EPISODES + episode, return_inverse=True)
    e_i = keys // _MAX_EPISODES
    start = baseline_day[e_i] + np.rint(
        rng.uniform(-14 * 365.25, 12 * 365.25, keys.size)
    ).astype(np.int64)
    start = np.clip(start, _FIRST_DAY, _LAST_DAY)
    order = np.lexsort((start, e_i))
    ins_index = np.empty(keys.size, dtype=np.int64)
    ins_index[order] = _rank_within(e_i[order])
    return _Episodes(ii, cc, pair_episode, e_i, start, ins_index)


def date_text(days: np.ndarray, blank: np.ndarray, fmt: str) -> pl.Series:
    """Days since 1970-01-01 as text in the release's date format, null where ``blank``."""
    text = pl.Series(days.astype(np.int32)).cast(pl.Date).dt.strftime(fmt)
    return text.set(pl.Series(blank), None)


def _hesin_frame(
    rng: np.random.Generator, eids: np.ndarray, episodes: _Episodes, fmt: str
) -> pl.DataFrame:
    """One ``hesin`` row per episode; 5 % lack ``epistart`` (readers fall back to ``admidate``)
    and 0.3 % lack every date (undatable, for the cohort to quarantine)."""
    start, ins_index = episodes.start, episodes.ins_index
    n_e = start.size
    duration = np.minimum(rng.geometric(0.35, n_e) - 1, 60)
    admit = start - np.where(rng.random(n_e) < 0.2, rng.integers(1, 3, n_e), 0)
    no_start = rng.random(n_e) < 0.05
    no_date = rng.random(n_e) < 0.003
    scottish = episodes.scottish
    return pl.DataFrame(
        {
            "eid": eids[episodes.participant],
            "ins_index": ins_index,
            "dsource": np.where(scottish, "SMR", np.where(rng.random(n_e) < 0.05, "PEDW", "HES")),
            "source": np.where(scottish, 4, 6),
            "epistart": date_text(start, no_start | no_date, fmt),
            "epiend": date_text(start + duration, no_date, fmt),
            "epidur": duration,
            "bedyear": np.zeros(n_e, dtype=np.int64),
            "epistat": np.full(n_e, 3),
            "epitype": np.full(n_e, 1),
            "epiorder": np.full(n_e, 1),
            "spell_index": ins_index,
            "spell_seq": np.zeros(n_e, dtype=np.int64),
            "spelbgin": np.full(n_e, 2),
            "spelend": np.full(n_e, "Y"),
            "speldur": duration + (start - admit),
            "admidate": date_text(admit, no_date, fmt),
            "admimeth": rng.choice(np.array(["11", "12", "13", "21", "22", "2A", "28"]), n_e),
            "admimeth_uni": rng.choice(np.array([1001, 1002, 1003, 2001, 2002]), n_e),
            "admisorc": np.full(n_e, 19),
            "disdate": date_text(start + duration, no_date, fmt),
            "dismeth": np.full(n_e, 1),
            "disdest": np.full(n_e, 19),
            "classpat": np.where(duration == 0, 2, 1),
            "mainspef": rng.choice(np.array(["100", "300", "320", "330", "340", "502"]), n_e),
            "tretspef": rng.choice(np.array(["100", "101", "300", "320", "330", "340"]), n_e),
        }
    ).sort("eid", "ins_index")


def _diag_frame(
    rng: np.random.Generator, eids: np.ndarray, episodes: _Episodes
) -> pl.DataFrame:
    """One ``hesin_diag`` row per code, in random order within its episode (the first is the
    primary diagnosis); half carry a fourth character, Scottish episodes an ICD-9 code only."""
    ii, pair_episode = episodes.participant_of_code, episodes.episode_of_code
    arr_key = rng.random(ii.size)
    d_order = np.lexsort((arr_key, pair_episode))
    arr_index = np.empty(ii.size, dtype=np.int64)
    arr_index[d_order] = _rank_within(pair_episode[d_order])
    code = np.array(icd10_catalogue())[episodes.catalogue_index]
    fourth = rng.integers(0, 10, ii.size).astype(str)
    code = np.where(rng.random(ii.size) < 0.5, np.char.add(code, fourth), code)
    icd9_only = episodes.scottish[pair_episode]
    icd9 = rng.choice(np.array(ICD9_CODES), ii.size)
    empty = pl.Series([None] * ii.size, dtype=pl.String)
    return pl.DataFrame(
        {
            "eid": eids[ii],
            "ins_index": episodes.ins_index[pair_episode],
            "arr_index": arr_index,
            "level": np.where(arr_index == 0, 1, 2),
            "diag_icd9": pl.Series(np.where(icd9_only, icd9, "")).replace("", None),
            "diag_icd9_nb": empty,
            "diag_icd10": pl.Series(np.where(icd9_only, "", code)).replace("", None),
            "diag_icd10_nb": empty,
        }
    ).sort("eid", "ins_index", "arr_index")


def _rank_within(groups: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within runs of equal values of an already grouped array."""
    if groups.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(groups[1:] != groups[:-1]) + 1]
    lengths = np.diff(np.r_[starts, groups.size])
    return np.arange(groups.size) - np.repeat(starts, lengths)
