"""ECG records and CXR studies/images of every admission, with the cohort-rule branches.

Each admission gets one *main* ECG inside -24..+24 h and one *main* CXR study inside
(24 h, 72 h]; the branches of :class:`MimicSynthConfig` then add distractor records (outside the
window, unusable, tied) or move the main record out of the window.  Everything is vectorised:
the branch masks are exact-count draws (``choose``), event offsets are integer seconds from
``admittime``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from gated_symile.synthetic.mimic.cohort_plan import (
    CXR_STREAM,
    DAY,
    ECG_STREAM,
    HOUR,
    Plan,
    alternate,
    choose,
    uniform_int,
)
from gated_symile.synthetic.mimic.identifiers import (
    CXR_STUDY,
    ECG_STUDY,
    dicom_ids,
    scrambled_ids,
)
from gated_symile.records.mimic_tables import CHEXPERT_LABELS
from gated_symile.synthetic.mimic.latents import chexpert_labels

ECG_KINDS = ("ok", "nan_partial", "nan_all", "zero", "missing", "truncated")
"""What the renderer writes: a valid record, NaN samples, all zeros, or (faults) nothing / a
truncated .dat."""

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


class _Blocks:
    """Columns added block by block, concatenated once (keeps the branch code flat)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []
        self.size = 0

    def add(self, **columns) -> np.ndarray:
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
    """record_list rows plus internal columns ``adm``, ``kind``, ``branch`` (file order)."""
    cfg, n = plan.cfg, plan.n
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, ECG_STREAM]))
    everyone = np.ones(n, dtype=bool)
    main = uniform_int(rng, -6 * 60, 12 * 60, n) * 60
    bound = choose(rng, everyone, cfg.ecg_bound_rate, minimum=2)
    main = np.where(bound, alternate(bound) * DAY, main)
    none = choose(rng, ~bound, cfg.ecg_none_rate, minimum=2)
    main = np.where(
        none, alternate(none) * (DAY + uniform_int(rng, 1, 24 * 60, n) * 60), main
    )

    blocks = _Blocks()
    adm = np.arange(n)
    blocks.add(adm=adm, delta=main, kind="ok", branch="main")

    def earlier(mask: np.ndarray) -> np.ndarray:
        return np.maximum(
            main[mask] - uniform_int(rng, 10, 180, int(mask.sum())) * 60, -DAY
        )

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
    blocks.add(adm=adm[nan], delta=earlier(nan), kind=nan_kind, branch="ecg_nan")
    zero = choose(rng, everyone, cfg.ecg_zero_rate)
    blocks.add(adm=adm[zero], delta=earlier(zero), kind="zero", branch="ecg_zero")
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
    if cfg.faults:
        for kind, rate in (
            ("missing", cfg.fault_ecg_missing_rate),
            ("truncated", cfg.fault_ecg_truncated_rate),
        ):
            mask = choose(rng, everyone, rate)
            blocks.add(
                adm=adm[mask],
                delta=earlier(mask),
                kind=kind,
                branch=f"fault_ecg_{kind}",
            )
            counts[f"fault_ecg_{kind}"] = int(mask.sum())
    if cfg.ecg_outside_per_admission > 0:  # drawn last: the other draws stay as without it
        outside = rng.poisson(cfg.ecg_outside_per_admission, n)
        owner = np.repeat(adm, outside)
        first_admit = plan.admit_s[np.r_[0, np.flatnonzero(np.diff(plan.subject_of)) + 1]][plan.subject_of]
        before_first = first_admit[owner] - plan.admit_s[owner]
        delta = before_first - uniform_int(rng, 2 * DAY, 730 * DAY, owner.size)
        blocks.add(adm=owner, delta=delta, kind="ok", branch="ecg_outside_any_window")
        counts["ecg_outside_any_window"] = int(owner.size)

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
    study = scrambled_ids(np.arange(frame.height), ECG_STUDY, cfg.seed, salt=3)
    frame = frame.with_columns(pl.Series("study_id", study)).with_columns(
        pl.format(
            "files/p{}/p{}/s{}/{}",
            pl.col("subject_id").cast(pl.String).str.slice(0, 4),
            pl.col("subject_id"),
            pl.col("study_id"),
            pl.col("study_id"),
        ).alias("path")
    )
    return frame.drop("seq"), counts


def plan_cxrs(plan: Plan) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """(images, studies, branch counts): one row per DICOM and one per study with CheXpert labels."""
    cfg, n = plan.cfg, plan.n
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, CXR_STREAM]))
    everyone = np.ones(n, dtype=bool)
    adm = np.arange(n)
    main = uniform_int(rng, DAY + 60, 3 * DAY, n)
    bound = choose(rng, everyone, cfg.cxr_bound_rate)
    main = np.where(bound, 3 * DAY, main)
    none = choose(rng, ~bound, cfg.cxr_none_rate, minimum=2)
    outside = np.where(
        alternate(none) < 0,
        uniform_int(rng, HOUR, DAY - 60, n),
        uniform_int(rng, 3 * DAY + 60, 5 * DAY, n),
    )
    main = np.where(none, outside, main)
    in_window = (main > DAY) & (main <= 3 * DAY)

    studies, images = _Blocks(), _Blocks()
    counts: dict[str, int] = {}

    def add_study(mask, delta, branch, views, has_jpg=True, fault=False, chexpert=True):
        at = studies.add(adm=adm[mask], delta=delta, branch=branch, chexpert=chexpert)
        description = np.array(
            [PROCEDURE.get(v, "CHEST (SINGLE VIEW)") for v in views], dtype=object
        )
        images.add(
            study=at, view=views, has_jpg=has_jpg, fault=fault, procedure=description
        )
        counts[branch] = counts.get(branch, 0) + int(mask.sum())
        return at

    def earlier(mask):
        hi = np.where(in_window, main - 1, 3 * DAY)[mask]
        return DAY + 1 + (rng.random(int(mask.sum())) * (hi - DAY)).astype(np.int64)

    # main study: a frontal image, sometimes with a lateral, sometimes AP and PA tied
    view = np.where(rng.random(n) < 0.55, "PA", "AP")
    no_chexpert = choose(rng, everyone, cfg.cxr_no_chexpert_rate)
    main_missing = choose(rng, everyone, cfg.cxr_main_missing_jpg_rate)
    main_at = add_study(
        everyone, main, "main", view, has_jpg=~main_missing, chexpert=~no_chexpert
    )
    tie = choose(rng, ~none, cfg.cxr_tie_rate)
    other = np.where(view == "PA", "AP", "PA")[tie]
    images.add(
        study=main_at[tie],
        view=other,
        has_jpg=True,
        fault=False,
        procedure=np.array([PROCEDURE[v] for v in view[tie]], dtype=object),
    )
    lateral = choose(rng, view == "PA", cfg.cxr_lateral_rate)
    lateral_view = np.where(rng.random(int(lateral.sum())) < 0.85, "LATERAL", "LL")
    images.add(
        study=main_at[lateral],
        view=lateral_view,
        has_jpg=True,
        fault=False,
        procedure="CHEST (PA AND LAT)",
    )
    counts.update(
        cxr_none_in_window=int(none.sum()),
        cxr_bound_72h=int(bound.sum()),
        cxr_no_chexpert=int(no_chexpert.sum()),
        cxr_main_missing_jpg=int(main_missing.sum()),
        cxr_ap_pa_tie=int(tie.sum()),
        cxr_with_lateral=int(lateral.sum()),
    )
    del counts["main"]

    early = choose(rng, everyone, cfg.cxr_early_rate)
    add_study(
        early,
        uniform_int(rng, HOUR, DAY - 1, int(early.sum())),
        "cxr_before_24h",
        np.where(rng.random(int(early.sum())) < 0.5, "PA", "AP"),
    )
    add_study(
        bound,
        np.full(int(bound.sum()), DAY),
        "cxr_at_24h",
        np.full(int(bound.sum()), "AP"),
    )
    late = choose(rng, everyone, cfg.cxr_late_rate)
    add_study(
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
        add_study(
            mask,
            earlier(mask),
            branch,
            np.array(views)[rng.integers(0, len(views), int(mask.sum()))],
        )
    missing = choose(rng, everyone, cfg.cxr_missing_jpg_rate)
    add_study(
        missing,
        earlier(missing),
        "cxr_missing_jpg",
        np.full(int(missing.sum()), "AP"),
        has_jpg=False,
    )
    if cfg.faults:
        corrupt = choose(rng, everyone, cfg.fault_dicom_corrupt_rate)
        add_study(
            corrupt,
            earlier(corrupt),
            "fault_dicom_corrupt",
            np.full(int(corrupt.sum()), "PA"),
            has_jpg=False,
            fault=True,
        )

    return _cxr_frames(plan, rng, studies.columns(), images.columns(), counts)


def _cxr_frames(plan, rng, study_cols, image_cols, counts):
    cfg = plan.cfg
    n_studies = study_cols["adm"].size
    study_adm = study_cols["adm"]
    time_s = plan.admit_s[study_adm] + study_cols["delta"]
    study_id = scrambled_ids(np.arange(n_studies), CXR_STUDY, cfg.seed, salt=4)
    lat = plan.latents
    labels = chexpert_labels(
        rng, lat.h_cxr[study_adm], lat.f_cxr[study_adm], lat.c_cxr[study_adm], lat.c2_cxr[study_adm]
    )
    studies = pl.DataFrame(
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

    s = image_cols["study"]
    n_images = s.size
    view = image_cols["view"].astype(str)
    clock = time_s[s].astype("datetime64[s]")
    day = clock.astype("datetime64[D]")
    seconds = (clock - day).astype(np.int64)
    hhmmss = seconds // 3600 * 10000 + seconds % 3600 // 60 * 100 + seconds % 60
    millis = uniform_int(rng, 0, 999, n_studies)[s]
    recumbent = (view == "AP") & (rng.random(n_images) < 0.7)
    orientation = np.where(view == "", "", np.where(recumbent, "Recumbent", "Erect"))
    mono1 = choose(rng, np.ones(n_images, dtype=bool), cfg.monochrome1_rate)
    images = (
        pl.DataFrame(
            {
                "adm": study_adm[s],
                "dicom_id": dicom_ids(np.arange(n_images), cfg.seed),
                "subject_id": plan.subject_id[study_adm[s]],
                "study_id": study_id[s],
                "PerformedProcedureStepDescription": image_cols["procedure"].astype(
                    str
                ),
                "ViewPosition": view,
                "Rows": np.full(n_images, cfg.image_size),
                "Columns": np.full(n_images, cfg.image_size),
                "StudyDate": day.astype(str),
                "hhmmss": hhmmss,
                "millis": millis,
                "time_s": time_s[s],
                "ViewCodeSequence_CodeMeaning": np.array(
                    [VIEW_MEANING.get(v, "") for v in view]
                ),
                "PatientOrientationCodeSequence_CodeMeaning": orientation,
                "photometric": np.where(mono1, "MONOCHROME1", "MONOCHROME2"),
                "has_jpg": image_cols["has_jpg"].astype(bool),
                "fault": image_cols["fault"].astype(bool),
                "seq": np.arange(n_images),
            }
        )
        .with_columns(
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
    counts["cxr_monochrome1"] = int(mono1.sum())
    return images, studies.sort(["subject_id", "study_id"]), counts
