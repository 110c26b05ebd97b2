"""ECG records of every admission, with the cohort-rule branches (CXR studies: ``cxr_studies.py``).

Each admission gets one *main* ECG inside -24..+24 h; the branches of :class:`MimicSynthConfig`
then add distractor records (outside the window, unusable, tied) or move the main record out of
the window.  Everything is vectorised: the branch masks are exact-count draws (``choose``), event
offsets are integer seconds from ``admittime``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from gated_symile.synthetic.mimic.cohort_plan import (
    DAY,
    ECG_STREAM,
    Plan,
    alternate,
    choose,
    uniform_int,
)
from gated_symile.synthetic.mimic.config import MimicSynthConfig
from gated_symile.synthetic.mimic.identifiers import ECG_STUDY, scrambled_ids

ECG_KINDS = ("ok", "nan_partial", "nan_all", "zero", "missing", "truncated")
"""What the renderer writes: a valid record, NaN samples, all zeros, or (faults) nothing / a
truncated .dat."""


class Blocks:
    """Columns added block by block, concatenated once (keeps the branch code flat).

    Shared by the ECG records here and the CXR studies and images (``cxr_studies.py``).
    """

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, **columns) -> np.ndarray:
        """Append one block (scalars broadcast to its length); returns the rows' positions."""
        n = len(next(iter(columns.values())))
        self.parts.append(
            {k: np.broadcast_to(np.asarray(v), (n,)) for k, v in columns.items()}
        )
        positions = np.arange(self.size, self.size + n)
        self.size += n
        return positions

    def columns(self) -> dict[str, np.ndarray]:
        keys = self.parts[0].keys()
        return {k: np.concatenate([p[k] for p in self.parts]) for k in keys}


def plan_ecgs(plan: Plan) -> tuple[pl.DataFrame, dict[str, int]]:
    """record_list rows plus internal columns ``adm``, ``kind``, ``branch`` (file order).

    One random stream, drawn in a fixed order (the order fixes the bytes): the main record's
    offset, the distractors, the faults, then the records outside every window.
    """
    cfg = plan.cfg
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, ECG_STREAM]))
    main, bound, none = _main_ecg_offsets(cfg, rng, plan.n)
    blocks = Blocks()
    blocks.add(adm=np.arange(plan.n), delta=main, kind="ok", branch="main")
    counts = _distractor_ecgs(cfg, rng, blocks, main, bound, none)
    if cfg.faults:
        counts.update(_fault_ecgs(cfg, rng, blocks, main))
    if cfg.ecg_outside_per_admission > 0:  # drawn last: the other draws stay as without it
        counts.update(_outside_ecgs(plan, rng, blocks))
    return _ecg_frame(plan, blocks), counts


def _main_ecg_offsets(
    cfg: MimicSynthConfig, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Main-record offsets (s from admittime), and which admissions have it on ±24 h / outside.

    Most main records fall inside -6..+12 h; the bound branch puts one exactly on the window's
    edge (still in) and the none branch moves it out, so the cohort's window test meets both.
    """
    everyone = np.ones(n, dtype=bool)
    main = uniform_int(rng, -6 * 60, 12 * 60, n) * 60
    bound = choose(rng, everyone, cfg.ecg_bound_rate, minimum=2)
    main = np.where(bound, alternate(bound) * DAY, main)
    none = choose(rng, ~bound, cfg.ecg_none_rate, minimum=2)
    main = np.where(
        none, alternate(none) * (DAY + uniform_int(rng, 1, 24 * 60, n) * 60), main
    )
    return main, bound, none


def _earlier_ecg(
    rng: np.random.Generator, main: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Offsets 10-180 min before the main record (not before -24 h): the cohort must skip them
    for their content, since they are in the window and earlier than the main record."""
    return np.maximum(
        main[mask] - uniform_int(rng, 10, 180, int(mask.sum())) * 60, -DAY
    )


def _distractor_ecgs(
    cfg: MimicSynthConfig,
    rng: np.random.Generator,
    blocks: Blocks,
    main: np.ndarray,
    bound: np.ndarray,
    none: np.ndarray,
) -> dict[str, int]:
    """Records the cohort must pass over: outside the window, NaN or all-zero signals, and a
    second record at the main record's time (a tie the rules break by file order)."""
    n = main.size
    everyone = np.ones(n, dtype=bool)
    adm = np.arange(n)
    counts = {}
    for name, rate, sign in (
        ("before", cfg.ecg_before_rate, -1),
        ("after", cfg.ecg_after_rate, 1),
    ):
        mask = choose(rng, everyone, rate)
        offset = sign * (DAY + uniform_int(rng, 1, 48 * 60, int(mask.sum())) * 60)
        blocks.add(adm=adm[mask], delta=offset, kind="ok", branch=f"ecg_{name}_window")
        counts[f"ecg_{name}_window"] = int(mask.sum())
    nan = choose(rng, everyone, cfg.ecg_nan_rate, minimum=2)
    nan_kind = np.where(alternate(nan)[nan] < 0, "nan_partial", "nan_all")
    blocks.add(adm=adm[nan], delta=_earlier_ecg(rng, main, nan), kind=nan_kind, branch="ecg_nan")
    zero = choose(rng, everyone, cfg.ecg_zero_rate)
    blocks.add(adm=adm[zero], delta=_earlier_ecg(rng, main, zero), kind="zero", branch="ecg_zero")
    tie = choose(rng, ~none, cfg.ecg_tie_rate)
    blocks.add(adm=adm[tie], delta=main[tie], kind="ok", branch="ecg_tie")
    counts.update(
        ecg_bound_24h=int(bound.sum()),
        ecg_none_in_window=int(none.sum()),
        ecg_nan_partial=int((nan_kind == "nan_partial").sum()),
        ecg_nan_all=int((nan_kind == "nan_all").sum()),
        ecg_all_zero=int(zero.sum()),
        ecg_time_tie=int(tie.sum()),
    )
    return counts


def _fault_ecgs(
    cfg: MimicSynthConfig, rng: np.random.Generator, blocks: Blocks, main: np.ndarray
) -> dict[str, int]:
    """(``--faults``) records whose files the renderer leaves out or truncates, placed before
    the main record so the reader's quarantine, not the time rule, has to catch them."""
    everyone = np.ones(main.size, dtype=bool)
    adm = np.arange(main.size)
    counts = {}
    for kind, rate in (
        ("missing", cfg.fault_ecg_missing_rate),
        ("truncated", cfg.fault_ecg_truncated_rate),
    ):
        mask = choose(rng, everyone, rate)
        blocks.add(
            adm=adm[mask],
            delta=_earlier_ecg(rng, main, mask),
            kind=kind,
            branch=f"fault_ecg_{kind}",
        )
        counts[f"fault_ecg_{kind}"] = int(mask.sum())
    return counts


def _outside_ecgs(plan: Plan, rng: np.random.Generator, blocks: Blocks) -> dict[str, int]:
    """Poisson-many records per admission, 2 days to 2 years before the subject's first
    admission: the bulk of real record_list rows, which no window can take."""
    adm = np.arange(plan.n)
    outside = rng.poisson(plan.cfg.ecg_outside_per_admission, plan.n)
    owner = np.repeat(adm, outside)
    first_admit = plan.admit_s[np.r_[0, np.flatnonzero(np.diff(plan.subject_of)) + 1]][plan.subject_of]
    before_first = first_admit[owner] - plan.admit_s[owner]
    delta = before_first - uniform_int(rng, 2 * DAY, 730 * DAY, owner.size)
    blocks.add(adm=owner, delta=delta, kind="ok", branch="ecg_outside_any_window")
    return {"ecg_outside_any_window": int(owner.size)}


def _ecg_frame(plan: Plan, blocks: Blocks) -> pl.DataFrame:
    """The records in file order (subject, time, then draw order), with study ids and paths.

    Study ids are scrambled over the sorted rows, so that they carry no hint of the branch.
    """
    cols = blocks.columns()
    frame = pl.DataFrame(
        {
            "adm": cols["adm"],
            "subject_id": plan.subject_id[cols["adm"]],
            "time_s": plan.admit_s[cols["adm"]] + cols["delta"],
            "kind": cols["kind"].astype(str),
            "branch": cols["branch"].astype(str),
            "seq": np.arange(blocks.size),
        }
    ).sort(["subject_id", "time_s", "seq"], maintain_order=True)
    study = scrambled_ids(np.arange(frame.height), ECG_STUDY, plan.cfg.seed, salt=3)
    frame = frame.with_columns(pl.Series("study_id", study)).with_columns(
        pl.format(
            "files/p{}/p{}/s{}/{}",
            pl.col("subject_id").cast(pl.String).str.slice(0, 4),
            pl.col("subject_id"),
            pl.col("study_id"),
            pl.col("study_id"),
        ).alias("path")
    )
    return frame.drop("seq")
