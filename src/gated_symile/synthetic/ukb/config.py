"""Configuration of the synthetic UK-Biobank-style generator: sizes, coverage, signal."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from gated_symile.schemas import check_section


@dataclass(frozen=True)
class UkbSynthConfig:
    """What ``gated-symile synth ukb`` writes.

    Coverage rates are per-participant probabilities (drawn, so the realised shares are close to,
    not exactly, the rates).  ``empty_frac`` participants have only sex and year of birth (no
    modality at all: the cohort's "no modality present" exclusion); ``no_baseline_frac`` have no
    assessment date 53-0.0, so their hospital history cannot be anchored (EHR missing).
    """

    participants: int
    seed: int = 0
    workers: int = 1
    n_proteins: int = 200
    """Olink proteins written (the paper's release has 1463); ids are a seeded subset of 1..1463."""
    signal_strength: float = 1.0
    """0 = modalities independent; 1 = default coupling through the shared latents."""
    n_latents: int = 8
    """Continuous shared health latents z (pairwise information between every two modalities)."""
    n_bits: int = 8
    """Binary latent pairs (u, v): u shows in NMR, v in the hospital codes, u XNOR v in proteomics."""

    nmr_frac: float = 0.95
    olink_frac: float = 0.10
    hes_frac: float = 0.80
    ecg_frac: float = 0.02
    repeat_frac: float = 0.04
    """Share attending the first repeat assessment (instance 1: 53-1.0, NMR and biochemistry)."""
    olink_imaging_frac: float = 0.01
    """Share with Olink rows at ins_index 2 (imaging visit), ignored by the baseline pivot."""
    olink_all_nan_frac: float = 0.005
    """Share of Olink participants whose instance-0 results are all empty ("Olink row all NaN")."""
    olink_orphans: int = 2
    """Olink participants absent from the main dataset (withdrawn participants)."""
    empty_frac: float = 0.005
    no_baseline_frac: float = 0.003
    value_missing_frac: float = 0.01
    """Per-value missingness of NMR, biochemistry and Olink results of a measured participant."""
    hes_date_format: Literal["dmy", "iso"] = "dmy"
    """``dmy``: dd/mm/yyyy (older portal exports); ``iso``: yyyy-mm-dd (Research Analysis Platform)."""
    main_style: Literal["ukbconv", "r", "rap"] = "ukbconv"
    """Column spelling of ``ukb_main.csv``: ``23400-0.0``, ``f.23400.0.0`` or ``p23400_i0``."""

    def __post_init__(self) -> None:
        check_section(asdict(self), "synth.ukb")
