"""``gated-symile inspect``: summaries for good records, one stderr line per bad one, exit codes."""

from __future__ import annotations

import numpy as np
import pytest

from gated_symile.cli import main
from tests._realdata import realdata
from tests.test_records_dicom import write_dicom
from tests.test_records_wfdb import write_mimic_record


def run_inspect(capsys, *paths) -> tuple[int, str, list[str]]:
    code = main(["inspect", *map(str, paths)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.splitlines()


def test_good_wfdb_record_given_three_ways(tmp_path, capsys):
    stem = write_mimic_record(tmp_path)
    for given in (stem, stem.with_suffix(".hea"), stem.with_suffix(".dat")):
        code, out, err = run_inspect(capsys, given)
        assert (code, err) == (0, [])
        assert "WFDB record 40000001" in out
        assert "12 leads, 500 Hz, 5000 samples (10 s), start 2180-07-23 08:44:00" in out
        assert "subject_id 10000032" in out
        assert "symile: keep; strict: keep" in out


def test_bad_records_print_one_line_each_and_the_run_continues(tmp_path, capsys):
    good = write_mimic_record(tmp_path, "40000002")
    short = write_mimic_record(tmp_path, "40000003", digital=np.zeros((2500, 12), dtype=np.int32))
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    code, out, err = run_inspect(capsys, short, tmp_path / "absent", text, good)
    assert code == 2
    assert len(err) == 3
    assert err[0].startswith(f"{short}: ") and "2500 samples" in err[0]
    assert err[1].startswith(f"{tmp_path / 'absent'}: file does not exist")
    assert err[2].startswith(f"{text}: ")
    assert "WFDB record 40000002" in out  # the good record after the bad ones is still shown
    assert "Traceback" not in out + "\n".join(err)


def test_nan_sample_shows_in_the_lead_table_and_qc_verdict(tmp_path, capsys):
    digital = np.ones((5000, 12), dtype=np.int32)
    digital[10, 0] = -32768
    stem = write_mimic_record(tmp_path, digital=digital)
    code, out, err = run_inspect(capsys, stem)
    assert code == 1  # readable, but fails the QC rule in force
    assert err == [f"{stem}: fails ECG QC rule symile: ECG has 1 NaN samples"]
    assert "symile: reject (ECG has 1 NaN samples)" in out
    lead_i = next(line for line in out.splitlines() if line.strip().startswith("I "))
    assert lead_i.split()[-1] == "1"


def test_dicom_summary_and_rejection(tmp_path, capsys):
    good = write_dicom(tmp_path / "a.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8))
    multi = write_dicom(tmp_path / "b.dcm", np.zeros((2, 4, 4), np.uint16), frames=2)
    code, out, err = run_inspect(capsys, good, multi)
    assert code == 2
    assert "DICOM DX image 8x8" in out and "MONOCHROME1 (inverted once for display)" in out
    assert "bits allocated 16, stored 12" in out and "ViewPosition: PA" in out
    assert err == [f"{multi}: multi-frame image (2 frames), expected one"]


def test_jpg_summary(tmp_path, capsys):
    from PIL import Image

    Image.fromarray(np.full((20, 30), 7, np.uint8)).save(tmp_path / "x.jpg")
    code, out, _ = run_inspect(capsys, tmp_path / "x.jpg")
    assert code == 0 and "image 20x30 (grayscale uint8)" in out


def test_unexpected_decoder_exception_is_one_line(tmp_path, capsys, monkeypatch):
    from gated_symile.stages import inspect as stage

    def explode(_path):
        raise KeyError("decoder blew up")

    monkeypatch.setitem(stage._SUMMARISERS, "image", explode)
    (tmp_path / "y.png").write_bytes(b"")
    code, _, err = run_inspect(capsys, tmp_path / "y.png")
    assert code == 2
    assert err == [f"{tmp_path / 'y.png'}: KeyError: 'decoder blew up'"]


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        (("pydicom-data", "data_store", "data", "RG1_J2KI.dcm"), "JPEG 2000 Image Compression"),
        (("onyx-cardiosoft-xml", "interface-ecg-cardiosoft", "src", "test", "resources", "Ecg.XML"),
         "CardioSoft CardiologyXML"),
    ],
)  # fmt: skip
def test_real_good_files(capsys, parts, expected):
    code, out, err = run_inspect(capsys, realdata(*parts))
    assert (code, err) == (0, [])
    assert expected in out


@pytest.mark.parametrize(
    ("parts", "problem"),
    [
        (("wfdb-python-sample-data", "100.hea"), "fs is 360 Hz, expected 500"),
        (("egm-r-package", "inst", "extdata", "muse-sinus.xml"), "root element RestingECG: GE MUSE"),
        (("pydicom-3.0.2-wheel", "pydicom", "data", "test_files", "SC_rgb_small_odd.dcm"),
         "not grayscale"),
        (("mimic-iv-ecg-from-SebPelay0-Mimic-Prep", "SampleData", "p10000032", "s40689238",
          "40689238.hea"), "40689238.dat: signal file does not exist"),
    ],
)  # fmt: skip
def test_real_bad_files_give_one_line(capsys, parts, problem):
    path = realdata(*parts)
    code, out, err = run_inspect(capsys, path)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith(str(path)) and problem in err[0]
