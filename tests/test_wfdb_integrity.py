"""WFDB signal files that disagree with their header (size, checksums) are rejected, not misread."""

from __future__ import annotations

import numpy as np
import pytest

from gated_symile.data.mimic.ecg_qc_scan import EcgQcTask, qc_record
from gated_symile.records import UnreadableRecord, WrongLength, qc_ecg, read_wfdb_ecg
from gated_symile.records.wfdb_integrity import signal_file_bytes
from tests.test_records_wfdb import write_mimic_record


def _digital(seed: int = 0, leads: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(-400, 400, size=(5000, leads), dtype=np.int32)


def test_one_more_interleaved_channel_than_the_header_says_is_rejected(tmp_path):
    stem = write_mimic_record(tmp_path)
    # the same header, but a signal file written with 13 interleaved channels
    _digital(leads=13).astype("<i2").tofile(stem.with_suffix(".dat"))
    with pytest.raises(UnreadableRecord) as caught:
        read_wfdb_ecg(stem)
    assert caught.value.path == str(stem.with_suffix(".dat"))
    assert "130000 bytes, its header implies 120000" in caught.value.problem
    assert "1 more interleaved signal(s) than the header lists" in caught.value.problem


def test_trailing_bytes_are_rejected(tmp_path):
    stem = write_mimic_record(tmp_path)
    dat = stem.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes() + b"\x00\x01\x02")
    with pytest.raises(UnreadableRecord, match=r"\.dat: signal file has 120003 bytes"):
        read_wfdb_ecg(stem)


def test_a_changed_sample_fails_the_header_checksum(tmp_path):
    digital = _digital(seed=3)
    stem = write_mimic_record(tmp_path, digital=digital)
    changed = digital.copy()
    changed[2000, 4] += 7  # one sample of lead aVF (MIMIC order), file size unchanged
    changed.astype("<i2").tofile(stem.with_suffix(".dat"))
    with pytest.raises(UnreadableRecord) as caught:
        read_wfdb_ecg(stem)
    assert caught.value.path == str(stem.with_suffix(".dat"))
    assert caught.value.problem.startswith("checksum mismatch for 1 signal(s) (aVF)")


def test_samples_shifted_by_one_frame_fail_the_checksum(tmp_path):
    # fewer samples, padded back to the right size: every lead's sum changes
    digital = _digital(seed=4)
    stem = write_mimic_record(tmp_path, digital=digital)
    shifted = np.vstack([digital[1:], np.zeros((1, 12), np.int32)])
    shifted.astype("<i2").tofile(stem.with_suffix(".dat"))
    with pytest.raises(UnreadableRecord, match="checksum mismatch for 12 signal"):
        read_wfdb_ecg(stem)


def test_format_212_short_file_is_truncated_not_zero_padded(tmp_path):
    stem = write_mimic_record(tmp_path, fmt="212")
    dat = stem.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:-18])  # the last frame: 12 samples x 1.5 bytes
    with pytest.raises(WrongLength, match=r"signal file truncated: 89982 bytes, expected 90000"):
        read_wfdb_ecg(stem)


def test_format_212_checksum_is_checked_too(tmp_path):
    stem = write_mimic_record(tmp_path, fmt="212", digital=_digital(seed=5))
    dat = stem.with_suffix(".dat")
    data = bytearray(dat.read_bytes())
    data[30_000] ^= 0x01  # lowest bit of one 12-bit sample
    dat.write_bytes(bytes(data))
    with pytest.raises(UnreadableRecord, match="checksum mismatch for 1 signal"):
        read_wfdb_ecg(stem)


def test_cohort_ecg_qc_quarantines_the_record_with_the_true_reason(tmp_path):
    good = write_mimic_record(tmp_path, "40000001", digital=_digital(seed=1))
    scrambled = write_mimic_record(tmp_path, "40000002", digital=_digital(seed=2))
    _digital(seed=2, leads=13).astype("<i2").tofile(scrambled.with_suffix(".dat"))
    reasons = [qc_record(EcgQcTask(str(tmp_path), stem.name)) for stem in (good, scrambled)]
    assert reasons[0] is None
    assert reasons[1].startswith("ECG record unreadable: signal file has 130000 bytes")
    # what the scrambled file would have been without the check: an ECG that passes QC
    raw = np.fromfile(scrambled.with_suffix(".dat"), "<i2", count=60000).reshape(5000, 12)
    assert qc_ecg(raw / 200.0).reject_reason("strict") is None


@pytest.mark.parametrize(
    ("fmt", "n", "sizes"),
    [("16", 10, (20,)), ("212", 3, (5,)), ("8", 7, (7,)), ("24", 2, (6,)),
     ("310", 5, (7, 8)), ("311", 4, (6, 8)), ("310", 3, (4,)), ("516", 9, ())],
)  # fmt: skip
def test_signal_file_bytes(fmt, n, sizes):
    assert signal_file_bytes(fmt, n) == sizes


def test_real_sample_files_have_the_sizes_their_headers_imply():
    # every real sample record (formats 8, 16, 24, 32, 61, 80, 160, 212, 310, 311, offsets)
    import wfdb

    from gated_symile.records.wfdb_header import read_wfdb_header
    from gated_symile.records.wfdb_integrity import (
        check_checksums,
        check_signal_file_sizes,
        signal_file_sizes,
    )
    from tests._realdata import REALDATA

    stems = sorted(h.with_suffix("") for h in REALDATA.rglob("*.hea"))
    checked = 0
    for stem in stems:
        header = read_wfdb_header(stem)
        if not all((stem.parent / name).is_file() for name in header.file_name):
            continue
        sizes = signal_file_sizes(stem, header, stem.with_suffix(".hea"))
        check_signal_file_sizes(stem, header, stem.with_suffix(".hea"), sizes)
        check_checksums(wfdb.rdrecord(str(stem), physical=False).d_signal, header, stem)
        checked += 1
    if not checked:
        pytest.skip("no real WFDB records available")
    assert checked >= 9
