"""Generate synthetic data: raw MIMIC- and UK-Biobank-style records, Synthetic-XNOR and XOR tensors.

``synth mimic`` writes byte-format-faithful raw releases (MIMIC-IV hosp tables, MIMIC-IV-ECG WFDB
records, MIMIC-CXR DICOMs and the derived MIMIC-CXR-JPG release) so that the real cohort code runs
on them unchanged; ``synth ukb`` does the same for a UK-Biobank-style release (docs/synthetic-ukb.md).
``synth xnor`` and ``synth xor`` write the synthetic benchmarks directly in the
tensor format (docs/tensor-format.md). Setting flags have no default of their own: one left out
takes the generator dataclass's (``gated_symile.stages.flags``).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    _add_mimic(kinds)
    _add_xnor(kinds)
    _add_xor(kinds)
    _add_ukb(kinds)


def _add_mimic(kinds: argparse._SubParsersAction) -> None:
    mimic = kinds.add_parser("mimic", help="raw MIMIC-IV / MIMIC-IV-ECG / MIMIC-CXR(-JPG) records")
    mimic.add_argument("--out", type=Path, required=True, help="output root")
    mimic.add_argument("--admissions", type=int, required=True, help="number of admissions")
    mimic.add_argument("--seed", type=int)
    mimic.add_argument(
        "--signal-strength",
        type=float,
        help="how strongly the shared latents show in each modality (0 = independent modalities)",
    )
    mimic.add_argument("--image-size", type=int, help="radiograph edge in pixels")
    mimic.add_argument(
        "--workers", type=int, help="parallel worker processes (0: one per CPU core)"
    )
    mimic.add_argument(
        "--ecg-outside-per-admission",
        type=float,
        help="mean extra ECGs listed per admission outside every admission window, as in the "
        "real release (ED and outpatient ECGs)",
    )
    mimic.add_argument(
        "--faults",
        action="store_true",
        help="also write unreadable records (truncated .dat, corrupt DICOM) for robustness tests",
    )
    mimic.add_argument(
        "--scale",
        action="store_true",
        help="tables only, vectorised (benchmarks: millions of lab rows); no waveforms or images",
    )
    mimic.set_defaults(func=_run_mimic)


def _add_xnor(kinds: argparse._SubParsersAction) -> None:
    from gated_symile.stages.flags import setting_choices

    xnor = kinds.add_parser("xnor", help="Synthetic-XNOR misalignment benchmark (tensor format)")
    xnor.add_argument("--out", type=Path, required=True)
    xnor.add_argument("--n-samples", type=int)
    xnor.add_argument("--n-bits", type=int)
    xnor.add_argument("--dim", type=int, help="vector width of every modality")
    xnor.add_argument("--a-rule", choices=setting_choices("synth.xnor.a_rule"))
    xnor.add_argument("--embed-mode", choices=setting_choices("synth.xnor.embed_mode"))
    xnor.add_argument("--signal-scale", type=float)
    xnor.add_argument("--distractor-std", type=float)
    xnor.add_argument("--p", type=float, help="corruption probability of B/C")
    xnor.add_argument("--p-flips", type=float, nargs=2, metavar=("PB", "PC"))
    xnor.add_argument("--corr-mode", choices=setting_choices("synth.xnor.corr_mode"))
    xnor.add_argument(
        "--independent", action="store_true", help="corrupt B and C independently (not exclusive)"
    )
    xnor.add_argument("--bc-corr-split", type=float)
    xnor.add_argument("--eval-batch", type=int)
    xnor.add_argument("--seed", type=int)
    xnor.set_defaults(func=_run_xnor)


def _add_xor(kinds: argparse._SubParsersAction) -> None:
    xor = kinds.add_parser("xor", help="binary XOR dataset of the Symile paper (tensor format)")
    xor.add_argument("--out", type=Path, required=True)
    xor.add_argument("--d", type=int, help="bits per modality (2^d candidates)")
    xor.add_argument("--p-hat", type=float, help="probability that c = a XOR b")
    xor.add_argument("--n-train", type=int)
    xor.add_argument("--n-val", type=int)
    xor.add_argument("--n-test", type=int)
    xor.add_argument("--seed", type=int)
    xor.set_defaults(func=_run_xor)


def _add_ukb(kinds: argparse._SubParsersAction) -> None:
    from gated_symile.stages.flags import setting_choices

    ukb = kinds.add_parser(
        "ukb", help="raw UK-Biobank-style release: main dataset, Olink, HES, CardioSoft ECG XML"
    )
    ukb.add_argument("--out", type=Path, required=True, help="output folder")
    ukb.add_argument("--participants", type=int, required=True, help="participants in main dataset")
    ukb.add_argument("--seed", type=int)
    ukb.add_argument("--workers", type=int, help="processes writing the ECG XML files")
    ukb.add_argument("--n-proteins", type=int, help="Olink proteins (1463 in UKB)")
    ukb.add_argument("--olink-frac", type=float, help="share with baseline Olink")
    ukb.add_argument("--nmr-frac", type=float, help="share with baseline NMR")
    ukb.add_argument("--hes-frac", type=float, help="share with hospital episodes")
    ukb.add_argument("--ecg-frac", type=float, help="share with a resting ECG XML")
    ukb.add_argument(
        "--signal-strength", type=float,
        help="how strongly the shared latents show in each modality (0 = independent)",
    )
    ukb.add_argument("--hes-date-format", choices=setting_choices("synth.ukb.hes_date_format"))
    ukb.add_argument("--main-style", choices=setting_choices("synth.ukb.main_style"),
                     help="column spelling of ukb_main.csv: 23400-0.0, f.23400.0.0 or p23400_i0")
    ukb.set_defaults(func=_run_ukb)


def _report(summary: dict) -> int:
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.stages.flags import given
    from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic

    settings = given(
        args, "admissions", "seed", "signal_strength", "image_size", "workers",
        "ecg_outside_per_admission",
    )
    if settings.get("workers") == 0:
        settings["workers"] = os.cpu_count() or 1
    cfg = MimicSynthConfig(**settings, faults=args.faults, scale=args.scale)
    return _report(generate_mimic(args.out, cfg))


def _run_xnor(args: argparse.Namespace) -> int:
    from gated_symile.stages.flags import given
    from gated_symile.synthetic.xnor import XnorConfig, write_xnor

    settings = given(
        args, "n_samples", "n_bits", "dim", "a_rule", "embed_mode", "signal_scale",
        "distractor_std", "p", "corr_mode", "bc_corr_split", "eval_batch", "seed",
    )
    if args.p_flips is not None:
        settings["p_flips"] = tuple(args.p_flips)
    cfg = XnorConfig(**settings, exclusive=not args.independent)
    return _report(write_xnor(args.out, cfg))


def _run_xor(args: argparse.Namespace) -> int:
    from gated_symile.stages.flags import given
    from gated_symile.synthetic.xor import XorConfig, write_xor

    cfg = XorConfig(**given(args, "d", "p_hat", "n_train", "n_val", "n_test", "seed"))
    return _report(write_xor(args.out, cfg))


def _run_ukb(args: argparse.Namespace) -> int:
    from gated_symile.stages.flags import given
    from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb

    cfg = UkbSynthConfig(**given(
        args, "participants", "seed", "workers", "n_proteins", "olink_frac", "nmr_frac",
        "hes_frac", "ecg_frac", "signal_strength", "hes_date_format", "main_style",
    ))
    return _report(generate_ukb(args.out, cfg))
