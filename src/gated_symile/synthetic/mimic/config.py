"""Configuration of the synthetic MIMIC generator: sizes, signal strength and branch rates.

Every cohort-rule branch (docs/data.md §4, §10) has its own rate so that tests and
benchmarks can dial each one.  A rate is the *exact* share of eligible admissions (or subjects)
that receive the branch, rounded, with at least one whenever the rate is positive and an
eligible admission exists: a 30-admission test run therefore still hits every branch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gated_symile.schemas import check_section


@dataclass(frozen=True)
class MimicSynthConfig:
    """What ``gated-symile synth mimic`` writes.

    The first seven fields mirror the CLI flags; the rest have defaults and control the
    cohort branches (``*_rate``: share of admissions, see module docstring) and table sizes.
    """

    admissions: int
    seed: int = 0
    signal_strength: float = 1.0
    image_size: int = 256
    workers: int = 1
    faults: bool = False
    scale: bool = False

    # table sizes
    labs_per_admission: int = 100
    """Target mean lab rows per admission (the admission panels give ~55, daily panels the rest)."""

    # patients
    multi_admission_rate: float = 0.15
    """Share of subjects with 2-4 admissions (exercises the patient-overlap drop of the splits)."""
    readmission_rate: float = 0.5
    """Share of follow-up admissions starting 2-20 h after the previous discharge, so that the
    previous admission's last labs fall in this admission's window (labs from an adjacent admission)."""

    # ECG branches
    ecg_before_rate: float = 0.15
    """Extra valid ECG 24 h + 1 min to 72 h *before* admission (outside the window)."""
    ecg_after_rate: float = 0.15
    """Extra valid ECG 24 h + 1 min to 72 h *after* admission (outside the window)."""
    ecg_nan_rate: float = 0.08
    """Extra ECG earlier in the window containing NaN samples (partial or whole record)."""
    ecg_zero_rate: float = 0.06
    """Extra ECG earlier in the window whose samples are all zero."""
    ecg_tie_rate: float = 0.06
    """Extra valid ECG at exactly the main ECG's ecg_time (tie: first row in file order wins)."""
    ecg_bound_rate: float = 0.04
    """Main ECG at exactly -24 h or +24 h (inside: the window is closed)."""
    ecg_none_rate: float = 0.12
    """Main ECG moved outside the window: the admission has no usable ECG (excluded)."""
    ecg_outside_per_admission: float = 0.0
    """Mean number (Poisson) of extra valid ECGs listed per admission 2 to 730 days before the
    subject's first admission, so outside every window: the real release lists mostly such ECGs
    (ED and outpatient visits).  0 (default) draws nothing and leaves every other byte unchanged."""

    # CXR branches
    cxr_early_rate: float = 0.15
    """Extra frontal study at 0-24 h (outside; exactly 24 h for ``cxr_bound_rate`` of them)."""
    cxr_late_rate: float = 0.15
    """Extra frontal study later than 72 h (outside)."""
    cxr_lateral_rate: float = 0.6
    """Share of main PA studies that also hold a LATERAL image."""
    cxr_lateral_only_rate: float = 0.08
    """Extra study earlier in the window with only a LATERAL / LL image (not choosable)."""
    cxr_blank_view_rate: float = 0.06
    """Extra image earlier in the window with an empty ViewPosition (NaN in the metadata CSV)."""
    cxr_odd_view_rate: float = 0.04
    """Extra image earlier in the window with a rare view (AP AXIAL, PA LLD, SWIMMERS, ...)."""
    cxr_tie_rate: float = 0.06
    """Main study holds both an AP and a PA image at the same StudyDate/StudyTime (a tie)."""
    cxr_missing_jpg_rate: float = 0.06
    """Extra frontal study earlier in the window whose JPG is missing from the JPG release."""
    cxr_main_missing_jpg_rate: float = 0.03
    """The main study's JPG is missing (the admission is excluded unless another CXR fits)."""
    cxr_no_chexpert_rate: float = 0.06
    """The main study has no CheXpert row (admission excluded: no fallback)."""
    cxr_bound_rate: float = 0.04
    """Main study at exactly 72 h (inside) and an early study at exactly 24 h (outside)."""
    cxr_none_rate: float = 0.12
    """Main study outside 24-72 h (half before, half after): no choosable CXR (excluded)."""
    monochrome1_rate: float = 0.15
    """Share of DICOMs stored as MONOCHROME1 (inverted; the JPG conversion inverts back)."""

    # lab branches
    lab_null_hadm_rate: float = 0.25
    """Admission panels (ED labs) written with an empty hadm_id."""
    labs_before_rate: float = 0.2
    """Outpatient panel (empty hadm_id) 24 h + 1 min to 30 days before admission (outside)."""
    lab_text_rate: float = 0.1
    """Admission panel where some of the 50 labs carry text (``___``, ...) and no valuenum."""
    labs_bound_rate: float = 0.04
    """Extra chemistry panel at exactly -24 h or +24 h (inside: the window is closed)."""
    labs_none_rate: float = 0.08
    """No lab panel inside the window (excluded)."""
    labs_text_only_rate: float = 0.03
    """Only text results inside the window: all 50 labs NaN (excluded)."""
    comment_rate: float = 0.03
    """Share of lab rows with a free-text comment (some multi-line, quoted, with commas)."""

    # faults (only with faults=True)
    fault_ecg_missing_rate: float = 0.03
    """ECG listed in record_list.csv whose files are absent."""
    fault_ecg_truncated_rate: float = 0.03
    """ECG whose .dat file is truncated."""
    fault_dicom_corrupt_rate: float = 0.03
    """DICOM that is truncated or not DICOM at all (no JPG is derived from it)."""

    def __post_init__(self) -> None:
        check_section(asdict(self), "synth.mimic")
