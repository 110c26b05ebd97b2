"""WFDB ECG reader, lead-name mapping and ECG QC: real sample records plus synthetic round trips."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import wfdb
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.records import (
    MIMIC_LEAD_ORDER,
    MissingRecord,
    UnreadableRecord,
    WrongLeads,
    WrongLength,
    WrongSamplingRate,
    canonical_order_index,
    qc_ecg,
    read_wfdb_ecg,
)
from tests._realdata import realdata

EGM = ("egm-r-package",)
WFDB_SAMPLES = ("wfdb-python-sample-data",)
MIMIC_HEADERS = ("mimic-iv-ecg-from-SebPelay0-Mimic-Prep", "SampleData", "p10000032")


def write_mimic_record(
    directory: Path,
    name: str = "40000001",
    *,
    digital: np.ndarray | None = None,
    lead_names: tuple[str, ...] = MIMIC_LEAD_ORDER,
    fs: int = 500,
    fmt: str = "16",
    seed: int = 0,
) -> Path:
    """Write a MIMIC-IV-ECG style record (fmt 16, gain 200, mV, subject comment); return its stem."""
    if digital is None:
        rng = np.random.default_rng(seed)
        digital = rng.integers(-400, 400, size=(5000, len(lead_names)), dtype=np.int32)
    n_leads = digital.shape[1]
    wfdb.wrsamp(
        name,
        fs=fs,
        units=["mV"] * n_leads,
        sig_name=list(lead_names),
        d_signal=digital.astype(np.int32),
        fmt=[fmt] * n_leads,
        adc_gain=[200.0] * n_leads,
        baseline=[0] * n_leads,
        comments=["<subject_id>: 10000032"],
        base_time=datetime(2180, 7, 23, 8, 44).time(),
        base_date=datetime(2180, 7, 23).date(),
        write_dir=str(directory),
    )
    return directory / name


def reference_signal(stem: Path, canonical: tuple[str, ...] = MIMIC_LEAD_ORDER) -> np.ndarray:
    """``wfdb.rdrecord`` reordered by hand into the canonical order (independent of the reader)."""
    record = wfdb.rdrecord(str(stem))
    folded = [name.casefold() for name in record.sig_name]
    return record.p_signal[:, [folded.index(name.casefold()) for name in canonical]]


# ---------------------------------------------------------------- real sample records (accept)


def test_muse_sinus_is_read_in_canonical_order_identical_to_wfdb():
    stem = realdata(*EGM, "inst", "extdata", "muse-sinus", stem=True)
    record = read_wfdb_ecg(stem)
    assert record.signal.shape == (5000, 12)
    assert record.signal.dtype == np.float64
    assert record.lead_names == MIMIC_LEAD_ORDER
    assert record.source_lead_names[3:6] == ("AVF", "AVL", "AVR")
    assert record.fs == 500
    assert record.base_datetime == datetime(2023, 4, 29, 22, 41, 16)
    np.testing.assert_array_equal(record.signal, reference_signal(stem))
    assert qc_ecg(record.signal).reject_reason("symile") is None


def test_muse_af_upper_case_leads_are_mapped_column_by_column():
    stem = realdata(*EGM, "inst", "extdata", "muse-af", stem=True)
    record = read_wfdb_ecg(f"{stem}.hea")  # a .hea suffix is tolerated
    raw = wfdb.rdrecord(str(stem))
    for source_column, name in enumerate(raw.sig_name):
        canonical = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(name, name)
        np.testing.assert_array_equal(
            record.signal[:, MIMIC_LEAD_ORDER.index(canonical)], raw.p_signal[:, source_column]
        )


def test_muse_af_amplitude_is_below_the_strict_limit_but_a_5x_larger_copy_is_rejected():
    # The MUSE->WFDB conversion stored these 5x too large, yet the peak is only ~5.2 mV, so the
    # 10 mV plausibility limit keeps it; a further scaling beyond 10 mV must be rejected.
    stem = realdata(*EGM, "inst", "extdata", "muse-af", stem=True)
    signal = read_wfdb_ecg(stem).signal
    qc = qc_ecg(signal)
    assert qc.max_abs_mv == pytest.approx(5.245)
    assert qc.reject_reason("symile") is None
    scaled = qc_ecg(signal * 2.5)
    assert scaled.reject_reason("symile") is None
    assert "implausible amplitude" in scaled.reject_reason("strict")


def test_ludb_lower_case_leads_with_baseline_are_accepted():
    stem = realdata(*EGM, "tests", "testthat", "ludb-ecg", stem=True)
    record = read_wfdb_ecg(stem)
    assert record.source_lead_names[:6] == ("i", "ii", "iii", "avr", "avl", "avf")
    assert record.base_datetime is None
    np.testing.assert_array_equal(record.signal, reference_signal(stem))
    assert qc_ecg(record.signal).reject_reason("strict") is None


def test_all_zero_ecg_is_rejected_by_the_symile_rule():
    stem = realdata(*EGM, "tests", "testthat", "bad-ecg", stem=True)
    qc = qc_ecg(read_wfdb_ecg(stem).signal)
    assert qc.all_zero and len(qc.flat_leads) == 12
    assert qc.reject_reason("symile") == "ECG is all zeros"


# ---------------------------------------------------------------- real sample records (reject)


def test_broken_header_data_pair_names_the_missing_signal_file():
    # inst/extdata/ludb-ecg.hea refers to "1.dat", which does not exist.
    stem = realdata(*EGM, "inst", "extdata", "ludb-ecg", stem=True)
    with pytest.raises(MissingRecord, match=r"1\.dat: signal file does not exist"):
        read_wfdb_ecg(stem)


@pytest.mark.parametrize(
    ("parts", "fs"),
    [
        (EGM + ("tests", "testthat", "egm"), 1000),
        (WFDB_SAMPLES + ("100",), 360),
        (WFDB_SAMPLES + ("s0010_re",), 1000),
    ],
)
def test_wrong_sampling_rate_is_rejected_with_the_rate_in_the_message(parts, fs):
    stem = realdata(*parts, stem=True)
    with pytest.raises(WrongSamplingRate, match=rf"{stem.name}\.hea: fs is {fs} Hz, expected 500"):
        read_wfdb_ecg(stem)


def test_ptb_15_channels_are_rejected_as_wrong_leads_even_at_its_own_rate():
    stem = realdata(*WFDB_SAMPLES, "s0010_re", stem=True)
    with pytest.raises(WrongLeads, match=r"15 leads.*unknown \['vx', 'vy', 'vz'\]"):
        read_wfdb_ecg(stem, expected_fs=1000, expected_samples=38400)


def test_four_lead_record_is_rejected():
    stem = realdata(*WFDB_SAMPLES, "test01_00s", stem=True)
    with pytest.raises(WrongLeads, match="4 leads"):
        read_wfdb_ecg(stem)


def test_real_mimic_header_without_dat_is_a_clean_missing_record():
    stem = realdata(*MIMIC_HEADERS, "s40689238", "40689238", stem=True)
    with pytest.raises(MissingRecord) as caught:
        read_wfdb_ecg(stem)
    assert caught.value.path.endswith("40689238.dat")
    assert "signal file does not exist" in caught.value.problem


def fake_signal_matching_checksums(header: Path) -> np.ndarray:
    """A (5000, 12) int16 pattern whose last sample per lead makes its sum equal the header checksum."""
    from gated_symile.records.wfdb_header import read_wfdb_header

    checksums = read_wfdb_header(header.with_suffix("")).checksum
    digital = (np.arange(5000 * 12).reshape(5000, 12) % 300 - 150).astype(np.int64)
    rest = digital[:-1].sum(axis=0)
    digital[-1] = (np.array(checksums, dtype=np.int64) - rest + 32768) % 65536 - 32768
    assert not (digital == -32768).any()  # no accidental "missing sample" value
    return digital.astype("<i2")


def test_real_mimic_header_parses_subject_date_and_unsigned_checksums(tmp_path):
    for study in ("40689238", "49036311"):
        header = realdata(*MIMIC_HEADERS, f"s{study}", f"{study}.hea")
        shutil.copy(header, tmp_path / header.name)  # tmp copy only: pair it with a fake .dat
        pattern = (np.arange(5000 * 12).reshape(5000, 12) % 300 - 150).astype("<i2")
        pattern.tofile(tmp_path / f"{study}.dat")
        with pytest.raises(UnreadableRecord, match=r"\.dat: checksum mismatch for 12 signal"):
            read_wfdb_ecg(tmp_path / study)  # the real checksums do not fit the fake samples
        digital = fake_signal_matching_checksums(tmp_path / header.name)
        digital.tofile(tmp_path / f"{study}.dat")
        record = read_wfdb_ecg(tmp_path / study)
        assert record.subject_id == 10000032
        assert record.source_lead_names == MIMIC_LEAD_ORDER
        np.testing.assert_array_equal(record.signal, digital / 200.0)
    assert record.base_datetime == datetime(2180, 8, 6, 9, 7)


# ---------------------------------------------------------------- synthetic round trips


def test_mimic_round_trip_with_missing_sample_reads_nan_and_fails_symile_qc(tmp_path):
    digital = np.random.default_rng(1).integers(-300, 300, size=(5000, 12)).astype(np.int32)
    digital[1234, 7] = -32768
    stem = write_mimic_record(tmp_path, digital=digital)
    record = read_wfdb_ecg(stem)
    assert record.subject_id == 10000032
    assert record.base_datetime == datetime(2180, 7, 23, 8, 44)
    assert np.isnan(record.signal[1234, 7]) and np.isnan(record.signal).sum() == 1
    np.testing.assert_array_equal(record.signal, reference_signal(stem))
    qc = qc_ecg(record.signal)
    assert qc.reject_reason("symile") == "ECG has 1 NaN samples"
    assert qc_ecg(read_wfdb_ecg(stem).signal) == qc  # deterministic


def test_shuffled_mixed_case_leads_are_reordered(tmp_path):
    names = ("v6", "AVL", "I", "avf", "V1", "III", "aVR", "V3", "ii", "V2", "v5", "V4")
    digital = np.tile(np.arange(12, dtype=np.int32) * 10, (5000, 1))  # column j holds 10*j
    stem = write_mimic_record(tmp_path, digital=digital, lead_names=names)
    record = read_wfdb_ecg(stem)
    folded = [n.casefold() for n in names]
    expected = [10 * folded.index(name.casefold()) / 200.0 for name in MIMIC_LEAD_ORDER]
    np.testing.assert_array_equal(record.signal[0], expected)
    assert record.source_lead_names == names


def test_truncated_dat_is_reported_with_byte_counts(tmp_path):
    stem = write_mimic_record(tmp_path)
    dat = stem.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:100_000])
    with pytest.raises(
        WrongLength, match=r"\.dat: signal file truncated: 100000 bytes, expected 120000"
    ):
        read_wfdb_ecg(stem)


def test_missing_header_is_missing_record(tmp_path):
    with pytest.raises(MissingRecord, match=r"nothing\.hea: header file does not exist"):
        read_wfdb_ecg(tmp_path / "nothing")


@pytest.mark.parametrize(
    "header_text",
    ["this is not a header\n", "40000001 12 fivehundred 5000\n", ""],
)
def test_broken_header_is_unreadable_record(tmp_path, header_text):
    stem = write_mimic_record(tmp_path)
    stem.with_suffix(".hea").write_text(header_text)
    with pytest.raises(UnreadableRecord) as caught:
        read_wfdb_ecg(stem)
    assert caught.value.path.endswith("40000001.hea")


def test_header_with_fewer_signal_lines_than_declared_is_wrong_leads(tmp_path):
    stem = write_mimic_record(tmp_path)
    stem.with_suffix(".hea").write_text(
        "40000001 12 500 5000\n40000001.dat 16 200.0(0)/mV 16 0 -31 9616 0 I\n"
    )
    with pytest.raises(WrongLeads, match=r"1 leads \['I'\]; missing \['II'"):
        read_wfdb_ecg(stem)


def test_short_record_is_wrong_length(tmp_path):
    digital = np.zeros((2500, 12), dtype=np.int32)
    stem = write_mimic_record(tmp_path, digital=digital)
    with pytest.raises(WrongLength, match=r"2500 samples \(5 s\), expected 5000"):
        read_wfdb_ecg(stem)


def test_format_212_falls_back_to_wfdb_and_matches_it(tmp_path):
    stem = write_mimic_record(tmp_path, fmt="212")
    record = read_wfdb_ecg(stem)
    np.testing.assert_array_equal(record.signal, reference_signal(stem))


def test_truncated_format_212_gives_a_clean_error(tmp_path):
    stem = write_mimic_record(tmp_path, fmt="212")
    dat = stem.with_suffix(".dat")
    dat.write_bytes(dat.read_bytes()[:5000])
    with pytest.raises((WrongLength, UnreadableRecord)):
        read_wfdb_ecg(stem)


# ---------------------------------------------------------------- lead names and QC units


@settings(max_examples=60, deadline=None)
@given(st.permutations(range(12)), st.lists(st.booleans(), min_size=12, max_size=12))
def test_canonical_order_index_inverts_any_permutation_and_casing(permutation, upper):
    names = [MIMIC_LEAD_ORDER[i] for i in permutation]
    names = [n.upper() if u else n.lower() for n, u in zip(names, upper, strict=True)]
    index = canonical_order_index(names)
    assert [names[i].casefold() for i in index] == [n.casefold() for n in MIMIC_LEAD_ORDER]


def test_canonical_order_index_reports_duplicates_and_missing():
    problem = canonical_order_index(["I", "i", *MIMIC_LEAD_ORDER[2:]])
    assert isinstance(problem, str)
    assert "duplicated ['i']" in problem and "missing ['II']" in problem


def test_qc_rules():
    rng = np.random.default_rng(0)
    good = rng.normal(0, 0.3, size=(5000, 12))
    assert qc_ecg(good).reject_reason("strict") is None
    flat = good.copy()
    flat[:, 4] = 0.25
    assert qc_ecg(flat).flat_leads == (4,)
    assert qc_ecg(flat).reject_reason("symile") is None
    assert qc_ecg(flat).reject_reason("strict") == "flat leads (zero variance) at columns [4]"
    spike = good.copy()
    spike[10, 0] = -10.5
    assert "implausible amplitude" in qc_ecg(spike).reject_reason("strict")
    assert qc_ecg(np.zeros((5000, 12))).reject_reason("symile") == "ECG is all zeros"
    with pytest.raises(ValueError, match="unknown ECG QC rule"):
        qc_ecg(good).reject_reason("lenient")


# ---------------------------------------------------------------- direct header parser vs wfdb


def _real_header_stems() -> list[Path]:
    from tests._realdata import REALDATA

    folders = [REALDATA / "egm-r-package", REALDATA / "wfdb-python-sample-data",
               REALDATA / "mimic-iv-ecg-from-SebPelay0-Mimic-Prep"]  # fmt: skip
    stems = sorted(h.with_suffix("") for f in folders if f.is_dir() for h in f.rglob("*.hea"))
    if not stems:
        pytest.skip("no real WFDB headers available")
    return stems


def _read_both_ways(stem: Path, monkeypatch, **expected):
    """``read_wfdb_ecg`` with the direct header parser and with wfdb's: (result or error) twice."""
    from gated_symile.records import wfdb_header

    outcomes = []
    for fast in (True, False):
        with monkeypatch.context() as patch:
            if not fast:
                patch.setattr(wfdb_header, "parse_plain_header", lambda text: None)
            try:
                outcomes.append(read_wfdb_ecg(stem, **expected))
            except Exception as exc:  # compared below: same type and message both ways
                outcomes.append((type(exc), str(exc)))
    return outcomes


def test_direct_header_parser_equals_wfdb_on_every_real_header(monkeypatch):
    from gated_symile.records.wfdb_header import parse_plain_header, read_wfdb_header

    fallbacks = []
    for stem in _real_header_stems():
        reference = read_wfdb_header(stem, fast=False)
        parsed = parse_plain_header(stem.with_suffix(".hea").read_text("ascii", "ignore"))
        if parsed is None:
            fallbacks.append(stem.name)
        else:
            assert parsed == reference, stem
        assert read_wfdb_header(stem) == reference
        fast, slow = _read_both_ways(
            stem, monkeypatch, expected_fs=reference.fs, expected_samples=reference.sig_len
        )
        if isinstance(fast, tuple):
            assert fast == slow, stem
        else:
            np.testing.assert_array_equal(fast.signal, slow.signal)
            fields = [name for name in vars(fast) if name != "signal"]
            assert [getattr(fast, n) for n in fields] == [getattr(slow, n) for n in fields], stem
    assert fallbacks == ["a103l"]  # "16+24" byte offsets: the only non-plain sample header


@pytest.mark.parametrize(
    "text",
    [
        "r 2 500 5000 08:44:00 23/07/2180\nr.dat 16 200.0(0)/mV 16 0 -31 40438 0 I\n"
        "r.dat 16 200.0(0)/mV 16 0 2 65535 0 II\n# <subject_id>: 1\n",  # unsigned checksums
        "r 1 500/1000(5) 5000 8:4:0.25\nr.dat 16 200/uV 12 7 0 -1 0 lead with spaces\n",
        "r 1 500.0 5000\nr.dat 16 1.5e+02(3) 12 2048\n",  # no units; baseline given
        "r 1\nr.dat 16 0 12 2048\n",  # fs default 250, gain 0 -> 200, baseline = adc zero
        "r 1 360 10\nr.dat 212\n",  # only file and format
        "r 1 128 10 59\n~ 16 100/NU\n#\n# two  spaces #\n",
        "# leading comment\nr 1 500 10 12:00:00 01/01/2000\r\nr.dat 16 200(-4)/mV 16 0 0 0 512 x\n",
    ],
)
def test_direct_header_parser_equals_wfdb_on_grammar_variants(tmp_path, text):
    from gated_symile.records.wfdb_header import parse_plain_header, read_wfdb_header

    (tmp_path / "r.hea").write_bytes(text.encode("ascii"))
    parsed = parse_plain_header(text)
    assert parsed is not None
    assert parsed == read_wfdb_header(tmp_path / "r", fast=False)


@pytest.mark.parametrize(
    "text",
    [
        "r/2 2 500 5000\nseg1 2500\nseg2 2500\n",  # multi-segment
        "r 1 500 5000\nr.dat 16x2 200/mV\n",  # samples per frame
        "r 1 500 5000\nr.dat 16+24 200/mV\n",  # byte offset
        "r 1 500 5000\nr.dat 16 200/mV 16 0 0 0 0 I\tII\n",  # tab inside the description
        "r 1 fivehundred 5000\nr.dat 16 200/mV\n",
        "r 1 500 5000 25:00:00\nr.dat 16 200/mV\n",  # invalid time: wfdb's error
        "r 1 500 5000\n",  # no signal lines
    ],
)
def test_direct_header_parser_leaves_other_headers_to_wfdb(text):
    from gated_symile.records.wfdb_header import parse_plain_header

    assert parse_plain_header(text) is None


def test_unparseable_header_error_names_the_file(tmp_path):
    (tmp_path / "r.hea").write_text("r 1 500 5000 25:00:00\nr.dat 16 200/mV\n")
    with pytest.raises(UnreadableRecord, match=r"r\.hea: cannot parse WFDB header") as caught:
        read_wfdb_ecg(tmp_path / "r")
    assert caught.value.path == str(tmp_path / "r.hea")
