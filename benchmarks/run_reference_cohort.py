"""Run the reference Symile-MIMIC cohort script, unmodified, on a gated-symile release folder.

Issue 13 compares ``gated-symile cohort mimic`` with the reference cohort step of the Symile paper
(rajesh-lab/symile, ``experiments/data_processing/symile_mimic/process_mimic_data.py``, MIT
licence) run side by side on the same files.  None of the reference code lives in this
repository: fetch it yourself, e.g.

    git clone https://github.com/rajesh-lab/symile /work/reference
    git -C /work/reference checkout d12e2c8b0a528cd536ccc5175f910f38f07bb6cb   # commit measured

and install its dependencies into a separate environment (the reference pins numpy 2.1.2,
wfdb 4.1.2 and a pandas 2.2 conda build on Python 3.11; this wrapper needs nothing else):

    python3.11 -m venv /work/refvenv
    /work/refvenv/bin/pip install numpy==2.1.2 pandas==2.2.3 wfdb==4.1.2

What this wrapper adapts, and why (the reference's own code is executed as is):

* ``--mimic-iv`` is the release's MIMIC-IV root (the folder our ``cohort mimic`` takes); the
  reference's ``--mimiciv_hosp_dir`` wants its ``hosp/`` module folder, so ``hosp`` is appended.
* ``--ecg``, ``--cxr`` and ``--out`` become the reference's ``--ecg_data_dir``,
  ``--cxr_data_dir`` and ``--save_dir`` unchanged; its output is ``<out>/symile_mimic_data.csv``.
* The script imports its siblings ``args`` and ``constants`` by bare name, which only works when
  its folder is on ``sys.path``; the wrapper puts it there and runs the script in this process
  with ``runpy`` (as ``__main__``), so that a timer wrapped around this command (bench_scale.py's
  ``--reference-cmd``, ``/usr/bin/time -v``) sees the reference's own wall time and peak RSS.

``--reference-dir`` may be the repository root or the ``symile_mimic`` folder itself.

    /work/refvenv/bin/python benchmarks/run_reference_cohort.py --reference-dir /work/reference \\
        --mimic-iv REL/mimic-iv --ecg REL/mimic-iv-ecg --cxr REL/mimic-cxr-jpg --out /tmp/refout
"""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

SCRIPT_DIR = Path("experiments") / "data_processing" / "symile_mimic"
SCRIPT = "process_mimic_data.py"
# Inputs the reference reads, relative to the folder it is given (its README lists them).
NEEDED = {
    "mimic_iv": (
        "hosp/patients.csv.gz",
        "hosp/admissions.csv.gz",
        "hosp/labevents.csv.gz",
    ),
    "ecg": ("record_list.csv",),
    "cxr": ("mimic-cxr-2.0.0-metadata.csv.gz", "mimic-cxr-2.0.0-chexpert.csv.gz"),
}


FLAGS = {
    "--reference-dir": "rajesh-lab/symile checkout, or its symile_mimic folder",
    "--mimic-iv": "MIMIC-IV root (holds hosp/)",
    "--ecg": "MIMIC-IV-ECG root (holds record_list.csv)",
    "--cxr": "MIMIC-CXR-JPG root (metadata + chexpert csv.gz)",
    "--out": "the reference's --save_dir",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for flag, text in FLAGS.items():
        parser.add_argument(flag, type=Path, required=True, help=text)
    return parser.parse_args(argv)


def find_script(reference_dir: Path) -> Path:
    """The reference script under a checkout root or its own folder; one-line error if neither."""
    for folder in (reference_dir / SCRIPT_DIR, reference_dir):
        if (folder / SCRIPT).is_file():
            return folder / SCRIPT
    raise SystemExit(
        f"{reference_dir}: no {SCRIPT} here or under {SCRIPT_DIR} (fetch rajesh-lab/symile)"
    )


def check_inputs(args: argparse.Namespace) -> None:
    """Fail in one line naming the missing file, before the reference spends minutes and then dies."""
    for key, names in NEEDED.items():
        for name in names:
            path = getattr(args, key) / name
            if not path.is_file():
                raise SystemExit(
                    f"{path}: missing (the reference cohort script reads it)"
                )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    script = find_script(args.reference_dir)
    check_inputs(args)
    sys.path.insert(0, str(script.parent))
    sys.argv = [str(script), "--mimiciv_hosp_dir", str(args.mimic_iv / "hosp"),
                "--ecg_data_dir", str(args.ecg), "--cxr_data_dir", str(args.cxr),
                "--save_dir", str(args.out)]  # fmt: skip
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
