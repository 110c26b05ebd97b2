"""Generate synthetic data: raw MIMIC- and UK-Biobank-style records, Synthetic-XNOR and XOR tensors.

``synth mimic`` writes byte-format-faithful raw releases (MIMIC-IV hosp tables, MIMIC-IV-ECG WFDB
records, MIMIC-CXR DICOMs and the derived MIMIC-CXR-JPG release) so that the real cohort code runs
on them unchanged; ``synth ukb`` does the same for a UK-Biobank-style release (docs/synthetic-ukb.md).
``synth xnor`` and ``synth xor`` write the synthetic benchmarks directly in the
tensor format (docs/tensor-format.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def configure_parser(parser: argparse.ArgumentParser) -> None:
    kinds = parser.add_subparsers(dest="kind", required=True, metavar="KIND")

    mimic = kinds.add_parser("mimic", help="raw MIMIC-IV / MIMIC-IV-ECG / MIMIC-CXR(-JPG) records")
    mimic.add_argument("--out", type=Path, required=True, help="output root")
    mimic.add_argument("--admissions", type=int, required=True, help="number of admissions")
    mimic.add_argument("--seed", type=int, default=0)
    mimic.add_argument(
        "--signal-strength",
        type=float,
        default=1.0,
        help="how strongly the shared latents show in each modality (0 = independent modalities)",
    )
    mimic.add_argument("--image-size", type=int, default=256, help="radiograph edge in pixels")
    mimic.add_argument("--workers", type=int, default=1, help="parallel worker processes")
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

    xnor = kinds.add_parser("xnor", help="Synthetic-XNOR misalignment benchmark (tensor format)")
    xnor.add_argument("--out", type=Path, required=True)
    xnor.add_argument("--n-samples", type=int, default=30000)
    xnor.add_argument("--n-bits", type=int, default=16)
    xnor.add_argument("--dim", type=int, default=128, help="vector width of every modality")
    xnor.add_argument("--a-rule", choices=["xnor", "xor"], default="xnor")
    xnor.add_argument("--embed-mode", choices=["u_v_uv", "xnor_only"], default="u_v_uv")
    xnor.add_argument("--signal-scale", type=float, default=1.0)
    xnor.add_argument("--distractor-std", type=float, default=3.0)
    xnor.add_argument("--p", type=float, default=1.0, help="corruption probability of B/C")
    xnor.add_argument("--p-flips", type=float, nargs=2, default=[0.0, 0.0], metavar=("PB", "PC"))
    xnor.add_argument("--corr-mode", choices=["swap_signal", "gaussian"], default="swap_signal")
    xnor.add_argument(
        "--independent", action="store_true", help="corrupt B and C independently (not exclusive)"
    )
    xnor.add_argument("--bc-corr-split", type=float, default=0.5)
    xnor.add_argument("--eval-batch", type=int, default=128)
    xnor.add_argument("--seed", type=int, default=420)
    xnor.set_defaults(func=_run_xnor)

    xor = kinds.add_parser("xor", help="binary XOR dataset of the Symile paper (tensor format)")
    xor.add_argument("--out", type=Path, required=True)
    xor.add_argument("--d", type=int, default=5, help="bits per modality (2^d candidates)")
    xor.add_argument("--p-hat", type=float, default=1.0, help="probability that c = a XOR b")
    xor.add_argument("--n-train", type=int, default=10000)
    xor.add_argument("--n-val", type=int, default=1000)
    xor.add_argument("--n-test", type=int, default=5000)
    xor.add_argument("--seed", type=int, default=0)
    xor.set_defaults(func=_run_xor)

    ukb = kinds.add_parser(
        "ukb", help="raw UK-Biobank-style release: main dataset, Olink, HES, CardioSoft ECG XML"
    )
    ukb.add_argument("--out", type=Path, required=True, help="output folder")
    ukb.add_argument("--participants", type=int, required=True, help="participants in main dataset")
    ukb.add_argument("--seed", type=int, default=0)
    ukb.add_argument("--workers", type=int, default=1, help="processes writing the ECG XML files")
    ukb.add_argument("--n-proteins", type=int, default=200, help="Olink proteins (1463 in UKB)")
    ukb.add_argument("--olink-frac", type=float, default=0.10, help="share with baseline Olink")
    ukb.add_argument("--nmr-frac", type=float, default=0.95, help="share with baseline NMR")
    ukb.add_argument("--hes-frac", type=float, default=0.80, help="share with hospital episodes")
    ukb.add_argument("--ecg-frac", type=float, default=0.02, help="share with a resting ECG XML")
    ukb.add_argument(
        "--signal-strength", type=float, default=1.0,
        help="how strongly the shared latents show in each modality (0 = independent)",
    )
    ukb.add_argument("--hes-date-format", choices=["dmy", "iso"], default="dmy")
    ukb.add_argument("--main-style", choices=["ukbconv", "r", "rap"], default="ukbconv",
                     help="column spelling of ukb_main.csv: 23400-0.0, f.23400.0.0 or p23400_i0")
    ukb.set_defaults(func=_run_ukb)


def _report(summary: dict) -> int:
    print(json.dumps(summary, indent=2, sort_keys=True, default=str))
    return 0


def _run_mimic(args: argparse.Namespace) -> int:
    from gated_symile.outputs import output_folder
    from gated_symile.synthetic.mimic import MimicSynthConfig, generate_mimic

    output_folder(args.out)
    cfg = MimicSynthConfig(
        admissions=args.admissions,
        seed=args.seed,
        signal_strength=args.signal_strength,
        image_size=args.image_size,
        workers=args.workers,
        faults=args.faults,
        scale=args.scale,
    )
    return _report(generate_mimic(args.out, cfg))


def _run_xnor(args: argparse.Namespace) -> int:
    from gated_symile.synthetic.xnor import XnorConfig, write_xnor

    cfg = XnorConfig(
        n_samples=args.n_samples,
        n_bits=args.n_bits,
        dim=args.dim,
        a_rule=args.a_rule,
        embed_mode=args.embed_mode,
        signal_scale=args.signal_scale,
        distractor_std=args.distractor_std,
        p=args.p,
        p_flips=tuple(args.p_flips),
        corr_mode=args.corr_mode,
        exclusive=not args.independent,
        bc_corr_split=args.bc_corr_split,
        eval_batch=args.eval_batch,
        seed=args.seed,
    )
    return _report(write_xnor(args.out, cfg))


def _run_xor(args: argparse.Namespace) -> int:
    from gated_symile.synthetic.xor import XorConfig, write_xor

    cfg = XorConfig(
        d=args.d,
        p_hat=args.p_hat,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
    )
    return _report(write_xor(args.out, cfg))


def _run_ukb(args: argparse.Namespace) -> int:
    from gated_symile.outputs import output_folder
    from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb

    output_folder(args.out)
    cfg = UkbSynthConfig(
        participants=args.participants,
        seed=args.seed,
        workers=args.workers,
        n_proteins=args.n_proteins,
        olink_frac=args.olink_frac,
        nmr_frac=args.nmr_frac,
        hes_frac=args.hes_frac,
        ecg_frac=args.ecg_frac,
        signal_strength=args.signal_strength,
        hes_date_format=args.hes_date_format,
        main_style=args.main_style,
    )
    return _report(generate_ukb(args.out, cfg))
