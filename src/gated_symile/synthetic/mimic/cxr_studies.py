"""CXR studies and images of every admission, with the cohort-rule branches.

Each admission gets one *main* study inside (24 h, 72 h]; the branches of
:class:`MimicSynthConfig` then add distractor studies (outside the window, no frontal view, odd
view, no JPG, corrupt) or move the main study out of the window.  Vectorised like the ECG records
(``events.py``): exact-count branch masks, offsets in integer seconds from ``admittime``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from gated_symile.records.mimic_tables import CHEXPERT_LABELS
from gated_symile.synthetic.mimic.cohort_plan import (
    CXR_STREAM,
    DAY,
    HOUR,
    Plan,
    alternate,
    choose,
    uniform_int,
)
from gated_symile.synthetic.mimic.config import MimicSynthConfig
from gated_symile.synthetic.mimic.events import Blocks
from gated_symile.synthetic.mimic.identifiers import CXR_STUDY, dicom_ids, scrambled_ids
from gated_symile.synthetic.mimic.latents import chexpert_labels

ODD_VIEWS = ("AP AXIAL", "PA LLD", "AP LLD", "SWIMMERS", "XTABLE LATERAL", "LAO", "RAO")
VIEW_MEANING = {
    "PA": "postero-anterior",
    "AP": "antero-posterior",
    "LATERAL": "lateral",
    "LL": "left lateral",
    "AP AXIAL": "antero-posterior",
    "PA LLD": "postero-anterior",
    "AP LLD": "antero-posterior",
    "XTABLE LATERAL": "lateral",
}
PROCEDURE = {
    "PA": "CHEST (PA AND LAT)",
    "LATERAL": "CHEST (PA AND LAT)",
    "LL": "CHEST (PA AND LAT)",
    "AP": "CHEST (PORTABLE AP)",
    "": "CHEST (PORTABLE AP)",
}


class _CxrBlocks:
    """Studies and their images, added study by study, with the count of studies per branch."""

    def __init__(self) -> None:
        self.studies, self.images = Blocks(), Blocks()
        self.counts: dict[str, int] = {}

    def add_study(
        self,
        mask: np.ndarray,
        delta: np.ndarray,
        branch: str,
        views: np.ndarray,
        has_jpg: bool | np.ndarray = True,
        fault: bool = False,
        chexpert: bool | np.ndarray = True,
    ) -> np.ndarray:
        """One study of a single image per admission in ``mask``; returns the study positions."""
        adm = np.flatnonzero(mask)
        at = self.studies.add(adm=adm, delta=delta, branch=branch, chexpert=chexpert)
        description = np.array(
            [PROCEDURE.get(v, "CHEST (SINGLE VIEW)") for v in views], dtype=object
        )
        self.images.add(
            study=at, view=views, has_jpg=has_jpg, fault=fault, procedure=description
        )
        self.counts[branch] = self.counts.get(branch, 0) + int(mask.sum())
        return at


def plan_cxrs(plan: Plan) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(images, studies, branch counts): one row per DICOM and one per study with CheXpert labels.

    One random stream, drawn in a fixed order (the order fixes the bytes): the main study's
    offset, the main study's images, the distractor studies, the faults, then the per-study
    labels and per-image attributes.
    """
    cfg = plan.cfg
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, CXR_STREAM]))
    main, bound, none = _main_cxr_offsets(cfg, rng, plan.n)
    blocks = _CxrBlocks()
    _main_cxr_studies(cfg, rng, blocks, main, bound, none)
    in_window = (main > DAY) & (main <= 3 * DAY)
    earlier_hi = np.where(in_window, main - 1, 3 * DAY)
    _distractor_cxr_studies(cfg, rng, blocks, bound, earlier_hi)
    if cfg.faults:
        _earlier_without_jpg(
            rng, blocks, earlier_hi, cfg.fault_dicom_corrupt_rate, "fault_dicom_corrupt", "PA",
            fault=True,
        )  # fmt: skip
    return _cxr_frames(
        plan, rng, blocks.studies.columns(), blocks.images.columns(), blocks.counts
    )


def _main_cxr_offsets(
    cfg: MimicSynthConfig, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Main-study offsets (s from admittime), and which admissions have it on 72 h / outside.

    Most main studies fall inside (24 h, 72 h]; the bound branch puts one exactly on 72 h (still
    in) and the none branch moves it before 24 h or after 72 h, so the window test meets both.
    """
    everyone = np.ones(n, dtype=bool)
    main = uniform_int(rng, DAY + 60, 3 * DAY, n)
    bound = choose(rng, everyone, cfg.cxr_bound_rate)
    main = np.where(bound, 3 * DAY, main)
    none = choose(rng, ~bound, cfg.cxr_none_rate, minimum=2)
    outside = np.where(
        alternate(none) < 0,
        uniform_int(rng, HOUR, DAY - 60, n),
        uniform_int(rng, 3 * DAY + 60, 5 * DAY, n),
    )
    return np.where(none, outside, main), bound, none


def _earlier_cxr(
    rng: np.random.Generator, earlier_hi: np.ndarray, mask: np.ndarray
) -> np.ndarray:
    """Offsets in (24 h, ``earlier_hi``]: inside the window and before the main study, so the
    cohort must pass over them for their content (view, missing JPG, corrupt file)."""
    hi = earlier_hi[mask]
    return DAY + 1 + (rng.random(int(mask.sum())) * (hi - DAY)).astype(np.int64)


def _main_cxr_studies(
    cfg: MimicSynthConfig,
    rng: np.random.Generator,
    blocks: _CxrBlocks,
    main: np.ndarray,
    bound: np.ndarray,
    none: np.ndarray,
) -> None:
    """Every admission's main study: a frontal image, sometimes with a lateral, sometimes AP
    and PA at the same time (a tie), sometimes without CheXpert labels or without its JPG."""
    n = main.size
    everyone = np.ones(n, dtype=bool)
    view = np.where(rng.random(n) < 0.55, "PA", "AP")
    no_chexpert = choose(rng, everyone, cfg.cxr_no_chexpert_rate)
    main_missing = choose(rng, everyone, cfg.cxr_main_missing_jpg_rate)
    main_at = blocks.add_study(
        everyone, main, "main", view, has_jpg=~main_missing, chexpert=~no_chexpert
    )
    tie = choose(rng, ~none, cfg.cxr_tie_rate)
    other = np.where(view == "PA", "AP", "PA")[tie]
    blocks.images.add(
        study=main_at[tie],
        view=other,
        has_jpg=True,
        fault=False,
        procedure=np.array([PROCEDURE[v] for v in view[tie]], dtype=object),
    )
    lateral = choose(rng, view == "PA", cfg.cxr_lateral_rate)
    lateral_view = np.where(rng.random(int(lateral.sum())) < 0.85, "LATERAL", "LL")
    blocks.images.add(
        study=main_at[lateral],
        view=lateral_view,
        has_jpg=True,
        fault=False,
        procedure="CHEST (PA AND LAT)",
    )
    blocks.counts.update(
        cxr_none_in_window=int(none.sum()),
        cxr_bound_72h=int(bound.sum()),
        cxr_no_chexpert=int(no_chexpert.sum()),
        cxr_main_missing_jpg=int(main_missing.sum()),
        cxr_ap_pa_tie=int(tie.sum()),
        cxr_with_lateral=int(lateral.sum()),
    )
    del blocks.counts["main"]


def _distractor_cxr_studies(
    cfg: MimicSynthConfig,
    rng: np.random.Generator,
    blocks: _CxrBlocks,
    bound: np.ndarray,
    earlier_hi: np.ndarray,
) -> None:
    """Studies the cohort must pass over: before 24 h, exactly on 24 h (excluded bound), after
    72 h, and earlier in-window studies with no frontal view, an odd view or no JPG."""
    n = bound.size
    everyone = np.ones(n, dtype=bool)
    early = choose(rng, everyone, cfg.cxr_early_rate)
    blocks.add_study(
        early,
        uniform_int(rng, HOUR, DAY - 1, int(early.sum())),
        "cxr_before_24h",
        np.where(rng.random(int(early.sum())) < 0.5, "PA", "AP"),
    )
    blocks.add_study(
        bound,
        np.full(int(bound.sum()), DAY),
        "cxr_at_24h",
        np.full(int(bound.sum()), "AP"),
    )
    late = choose(rng, everyone, cfg.cxr_late_rate)
    blocks.add_study(
        late,
        uniform_int(rng, 3 * DAY + 1, 5 * DAY, int(late.sum())),
        "cxr_after_72h",
        np.where(rng.random(int(late.sum())) < 0.5, "PA", "AP"),
    )
    for branch, rate, views in (
        ("cxr_lateral_only", cfg.cxr_lateral_only_rate, ("LATERAL", "LL")),
        ("cxr_blank_view", cfg.cxr_blank_view_rate, ("",)),
        ("cxr_odd_view", cfg.cxr_odd_view_rate, ODD_VIEWS),
    ):
        mask = choose(rng, everyone, rate)
        blocks.add_study(
            mask,
            _earlier_cxr(rng, earlier_hi, mask),
            branch,
            np.array(views)[rng.integers(0, len(views), int(mask.sum()))],
        )
    _earlier_without_jpg(
        rng, blocks, earlier_hi, cfg.cxr_missing_jpg_rate, "cxr_missing_jpg", "AP"
    )


def _earlier_without_jpg(
    rng: np.random.Generator,
    blocks: _CxrBlocks,
    earlier_hi: np.ndarray,
    rate: float,
    branch: str,
    view: str,
    fault: bool = False,
) -> None:
    """An earlier in-window study of one frontal image with no JPG (with ``fault``: a corrupt
    DICOM too), which the cohort must pass over for the main study."""
    mask = choose(rng, np.ones(earlier_hi.size, dtype=bool), rate)
    blocks.add_study(
        mask,
        _earlier_cxr(rng, earlier_hi, mask),
        branch,
        np.full(int(mask.sum()), view),
        has_jpg=False,
        fault=fault,
    )


def _cxr_frames(
    plan: Plan,
    rng: np.random.Generator,
    study_cols: dict[str, np.ndarray],
    image_cols: dict[str, np.ndarray],
    counts: dict[str, int],
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(images, studies, counts) as tables, drawing the labels before the image attributes."""
    study_adm = study_cols["adm"]
    time_s = plan.admit_s[study_adm] + study_cols["delta"]
    study_id = scrambled_ids(np.arange(study_adm.size), CXR_STUDY, plan.cfg.seed, salt=4)
    studies = _cxr_study_frame(plan, rng, study_cols, study_id)
    images, mono1 = _cxr_image_frame(plan, rng, image_cols, study_adm, study_id, time_s)
    counts["cxr_monochrome1"] = mono1
    return images, studies.sort(["subject_id", "study_id"]), counts


def _cxr_study_frame(
    plan: Plan,
    rng: np.random.Generator,
    study_cols: dict[str, np.ndarray],
    study_id: np.ndarray,
) -> pl.DataFrame:
    """One row per study with its CheXpert labels, drawn from the admission's CXR latents."""
    study_adm = study_cols["adm"]
    lat = plan.latents
    labels = chexpert_labels(
        rng, lat.h_cxr[study_adm], lat.f_cxr[study_adm], lat.c_cxr[study_adm], lat.c2_cxr[study_adm]
    )
    return pl.DataFrame(
        {
            "adm": study_adm,
            "subject_id": plan.subject_id[study_adm],
            "study_id": study_id,
            "has_chexpert": study_cols["chexpert"].astype(bool),
            "branch": study_cols["branch"].astype(str),
        }
    ).with_columns(
        [pl.Series(name, labels[name].astype(str)) for name in CHEXPERT_LABELS]
    )


def _dicom_clock(time_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(day, HHMMSS integer) of epoch seconds: the parts of a DICOM StudyDate and StudyTime."""
    clock = time_s.astype("datetime64[s]")
    day = clock.astype("datetime64[D]")
    seconds = (clock - day).astype(np.int64)
    return day, seconds // 3600 * 10000 + seconds % 3600 // 60 * 100 + seconds % 60


def _cxr_image_frame(
    plan: Plan,
    rng: np.random.Generator,
    image_cols: dict[str, np.ndarray],
    study_adm: np.ndarray,
    study_id: np.ndarray,
    time_s: np.ndarray,
) -> tuple[pl.DataFrame, int]:
    """One row per DICOM with its metadata-CSV columns, and the number stored as MONOCHROME1.

    Attributes are drawn in a fixed order: per-study milliseconds (one per study, shared by its
    images), recumbent AP images, then the MONOCHROME1 images.
    """
    cfg = plan.cfg
    s = image_cols["study"]
    n_images = s.size
    view = image_cols["view"].astype(str)
    day, hhmmss = _dicom_clock(time_s[s])
    millis = uniform_int(rng, 0, 999, study_adm.size)[s]
    recumbent = (view == "AP") & (rng.random(n_images) < 0.7)
    orientation = np.where(view == "", "", np.where(recumbent, "Recumbent", "Erect"))
    mono1 = choose(rng, np.ones(n_images, dtype=bool), cfg.monochrome1_rate)
    images = pl.DataFrame(
        {
            "adm": study_adm[s],
            "dicom_id": dicom_ids(np.arange(n_images), cfg.seed),
            "subject_id": plan.subject_id[study_adm[s]],
            "study_id": study_id[s],
            "PerformedProcedureStepDescription": image_cols["procedure"].astype(str),
            "ViewPosition": view,
            "Rows": np.full(n_images, cfg.image_size),
            "Columns": np.full(n_images, cfg.image_size),
            "StudyDate": day.astype(str),
            "hhmmss": hhmmss,
            "millis": millis,
            "time_s": time_s[s],
            "ViewCodeSequence_CodeMeaning": np.array([VIEW_MEANING.get(v, "") for v in view]),
            "PatientOrientationCodeSequence_CodeMeaning": orientation,
            "photometric": np.where(mono1, "MONOCHROME1", "MONOCHROME2"),
            "has_jpg": image_cols["has_jpg"].astype(bool),
            "fault": image_cols["fault"].astype(bool),
            "seq": np.arange(n_images),
        }
    )
    return _with_derived_image_columns(images), int(mono1.sum())


def _with_derived_image_columns(images: pl.DataFrame) -> pl.DataFrame:
    """StudyDate as YYYYMMDD, the procedure code meaning, and the study folder; in file order."""
    return (
        images.with_columns(
            pl.col("StudyDate").str.replace_all("-", "").cast(pl.Int64),
            pl.col("PerformedProcedureStepDescription").alias(
                "ProcedureCodeSequence_CodeMeaning"
            ),
            pl.format(
                "files/p{}/p{}/s{}/",
                pl.col("subject_id").cast(pl.String).str.slice(0, 2),
                pl.col("subject_id"),
                pl.col("study_id"),
            ).alias("dir"),
        )
        .sort(["subject_id", "study_id", "seq"])
        .drop("seq")
    )
