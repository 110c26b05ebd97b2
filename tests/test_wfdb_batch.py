"""The batch ECG check equals the per-record check on every record, mutated or not.

``check_chunk`` decides the common case for a whole work item (``qc_wfdb_batch``) and sends every
other record through the per-record reader; the cohort's verdicts, reasons and problems must be
exactly those of checking each record alone, whatever mix of good and broken records a work item
holds.  Records are MIMIC-IV-ECG files as the synthetic generator writes them (bytes equal to
``wfdb.wrsamp``'s), then mutated.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gated_symile.data.mimic.ecg_qc_scan import _check, check_chunk
from gated_symile.records.column_reduce import reduce_columns, reduce_columns_stacked
from gated_symile.records.wfdb_batch import BLOCK_RECORDS, qc_wfdb_batch
from gated_symile.records.wfdb_ecg import read_wfdb_samples
from gated_symile.synthetic.mimic.ecg_waveform import write_wfdb

WHEN = dt.datetime(2180, 7, 23, 8, 44, 0)


def _digital(rng: np.random.Generator, mutation: str) -> np.ndarray:
    low, high = (-3, 3) if mutation == "tiny_range" else (-600, 600)
    digital = rng.integers(low, high, size=(5000, 12), endpoint=True).astype(np.int64)
    if mutation == "nan":
        digital[rng.integers(0, 5000, size=3), rng.integers(0, 12, size=3)] = -32768
    elif mutation == "nan_lead":
        digital[:, rng.integers(0, 12)] = -32768
    elif mutation == "flat_lead":
        digital[:, rng.integers(0, 12)] = rng.integers(-100, 100)
    elif mutation == "all_zero":
        digital[:] = 0
    elif mutation == "extreme_values":
        digital[0, :] = 32767
        digital[1, :] = -32767
    return digital


def _edit_header(text: str, mutation: str) -> str:
    lines = text.split("\n")
    edits = {
        "crlf": lambda: text.replace("\n", "\r\n"),
        "tab": lambda: text.replace(" 16 0 ", "\t16 0 ", 1),
        "double_space": lambda: text.replace(" 0 I\n", "  0 I\n"),
        "blank_line": lambda: text.replace("\n", "\n\n", 1),
        "no_date": lambda: "\n".join([" ".join(lines[0].split()[:5]), *lines[1:]]),
        "bad_date": lambda: text.replace(lines[0].split()[5], "31/02/2180", 1),
        "bad_time": lambda: text.replace(lines[0].split()[4], "25:00:00", 1),
        "fs_250": lambda: text.replace(" 500 5000 ", " 250 5000 ", 1),
        "fs_float": lambda: text.replace(" 500 5000 ", " 500.0 5000 ", 1),
        "swapped_leads": lambda: "\n".join([lines[0], lines[2], lines[1], *lines[3:]]),
        "lower_case_lead": lambda: text.replace(" aVR\n", " avr\n"),
        "unknown_lead": lambda: text.replace(" V6\n", " V7\n"),
        "zero_gain": lambda: text.replace("200.0(0)/mV", "0(0)/mV", 1),
        "uv_units": lambda: text.replace("200.0(0)/mV", "200.0(0)/uV", 1),
        "all_uv_units": lambda: text.replace("200.0(0)/mV", "200.0(0)/uV"),
        "baseline_5": lambda: text.replace("200.0(0)/mV", "200.0(5)/mV"),
        "other_units": lambda: text.replace("200.0(0)/mV", "200.0(0)/mmHg", 1),
        "fmt_212": lambda: text.replace(".dat 16 ", ".dat 212 "),
        "wrong_checksum": lambda: _shift_checksum(lines, 1),
        "signed_checksum": lambda: _shift_checksum(lines, -65536),
        "huge_checksum": lambda: _shift_checksum(lines, 65536 * 10**30),
        "comment_inside": lambda: "\n".join([lines[0], "# x", *lines[1:]]),
        "other_dat_name": lambda: text.replace(".dat 16", "x.dat 16", 1),
        "other_dat_name_last": lambda: "x.dat 16".join(text.rsplit(".dat 16", 1)),
        "no_final_newline": lambda: text.rstrip("\n"),
        "non_ascii": lambda: text.replace("# <subject", "# \u00e9<subject"),
        "length_4999": lambda: text.replace(" 500 5000 ", " 500 4999 ", 1),
        "n_sig_11": lambda: text.replace(" 12 500 ", " 11 500 ", 1),
        "n_sig_13": lambda: text.replace(" 12 500 ", " 13 500 ", 1),
    }
    try:
        return edits[mutation]() if mutation in edits else text
    except (IndexError, ValueError):  # an earlier mutation removed what this one edits
        return text


def _shift_checksum(lines: list[str], shift: int) -> str:
    fields = lines[1].split(" ")
    fields[6] = str(int(fields[6]) + shift)
    return "\n".join([lines[0], " ".join(fields), *lines[2:]])


def _edit_data(dat: Path, mutation: str) -> None:
    if not dat.is_file():  # an earlier mutation removed it
        return
    if mutation == "truncated":
        dat.write_bytes(dat.read_bytes()[:-24])
    elif mutation == "extra_channel":
        dat.write_bytes(np.zeros((5000, 13), "<i2").tobytes())
    elif mutation == "trailing_bytes":
        dat.write_bytes(dat.read_bytes() + b"\x00")
    elif mutation == "no_dat":
        dat.unlink()
    elif mutation == "dat_is_folder":
        dat.unlink()
        dat.mkdir()
    elif mutation == "changed_sample":
        data = bytearray(dat.read_bytes())
        data[5000] ^= 0x04
        dat.write_bytes(bytes(data))


DATA_MUTATIONS = ["nan", "nan_lead", "flat_lead", "all_zero", "tiny_range", "extreme_values"]
FILE_MUTATIONS = ["truncated", "extra_channel", "trailing_bytes", "no_dat", "dat_is_folder",
                  "changed_sample", "no_hea"]  # fmt: skip
HEADER_MUTATIONS = ["crlf", "tab", "double_space", "blank_line", "no_date", "bad_date", "bad_time",
                    "fs_250", "fs_float", "swapped_leads", "lower_case_lead", "unknown_lead",
                    "zero_gain", "uv_units", "all_uv_units", "baseline_5", "other_units",
                    "fmt_212", "wrong_checksum", "signed_checksum", "huge_checksum", "comment_inside",
                    "other_dat_name", "other_dat_name_last", "n_sig_11", "n_sig_13", "no_final_newline", "non_ascii",
                    "length_4999"]  # fmt: skip
MUTATIONS = ["plain", *DATA_MUTATIONS, *FILE_MUTATIONS, *HEADER_MUTATIONS]


def write_record(root: Path, index: int, mutation: str, seed: int) -> str:
    """One record under ``root`` with the mutations ``mutation`` (joined by ``+``); returns its
    path relative to ``root``."""
    study = 40000000 + index
    folder = root / "files" / f"p{index % 3}"
    parts = mutation.split("+")
    data_part = next((part for part in parts if part in DATA_MUTATIONS), "plain")
    digital = _digital(np.random.default_rng(seed), data_part)
    write_wfdb(folder, study, 10000000 + index, WHEN, digital)
    hea, dat = folder / f"{study}.hea", folder / f"{study}.dat"
    text = hea.read_text()
    for part in parts:
        text = _edit_header(text, part)
        _edit_data(dat, part)
    hea.write_bytes(text.encode("utf-8"))
    if "no_hea" in parts:
        hea.unlink()
    return f"files/p{index % 3}/{study}"


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=2), st.integers(0, 99)),
        min_size=1,
        max_size=20,
    ),
    rule=st.sampled_from(["symile", "strict"]),
)
def test_batch_check_equals_per_record_check_on_mutated_records(records, rule):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = [write_record(root, i, "+".join(m), seed) for i, (m, seed) in enumerate(records)]
        batch = check_chunk(str(root), rule, True, paths)
        assert batch == [_check(str(root), rule, True, path) for path in paths]


ACCEPTED_HEADERS = ["plain", "lower_case_lead", "zero_gain", "uv_units", "all_uv_units",
                    "baseline_5", "signed_checksum", "huge_checksum"]  # fmt: skip


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["plain", *DATA_MUTATIONS]), st.sampled_from(ACCEPTED_HEADERS)),
        min_size=1,
        max_size=3 * BLOCK_RECORDS,
    ).map(lambda pairs: ["+".join(pair) for pair in pairs])
)
def test_batch_decides_readable_records_with_the_per_record_qc_facts(mutations):
    """Records the per-record reader reads are decided on the batch path, with identical facts."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stems = [str(root / write_record(root, i, m, i)) for i, m in enumerate(mutations)]
        decided = qc_wfdb_batch(stems)
        for stem, result in zip(stems, decided, strict=True):
            samples = read_wfdb_samples(stem)
            assert result is not None
            assert result.qc == samples.qc()
            assert result.file_name == samples.header.file_name


def test_header_variants_outside_the_common_shape_go_to_the_per_record_reader(tmp_path):
    odd = ["crlf", "tab", "double_space", "blank_line", "no_date", "bad_date", "fs_float",
           "comment_inside", "no_final_newline", "non_ascii", "fmt_212"]  # fmt: skip
    stems = [str(tmp_path / write_record(tmp_path, i, m, i)) for i, m in enumerate(odd)]
    assert qc_wfdb_batch(stems) == [None] * len(odd)


def test_real_headers_in_the_common_shape_give_the_per_record_layout():
    """Every real MIMIC-IV-ECG header has the common shape; every real header the batch accepts
    has the lead order and calibration the per-record checks give."""
    from gated_symile.records.wfdb_batch_header import parse_common_header
    from gated_symile.records.wfdb_ecg import check_header
    from gated_symile.records.wfdb_header import read_wfdb_header
    from tests.test_records_wfdb import _real_header_stems

    for stem in _real_header_stems():
        common = parse_common_header(
            stem.with_suffix(".hea").read_bytes(), expected_fs=500, expected_samples=5000
        )
        if "Mimic-Prep" in str(stem):
            assert common is not None, stem
        if common is not None:
            order, gain, baseline, scale = check_header(
                read_wfdb_header(stem), "", expected_fs=500, expected_samples=5000
            )
            np.testing.assert_array_equal(common.layout.order, order)
            np.testing.assert_array_equal(common.layout.gain, gain[order])
            np.testing.assert_array_equal(common.layout.baseline, baseline[order])
            np.testing.assert_array_equal(common.layout.unit_scale, scale[order])


@settings(max_examples=50, deadline=None)
@given(
    n_arrays=st.integers(1, 5),
    n_rows=st.sampled_from([1, 7, 100, 250, 300, 5000]),
    seed=st.integers(0, 2**32 - 1),
)
def test_stacked_column_reduction_equals_each_arrays_reduction(n_arrays, n_rows, seed):
    stack = np.random.default_rng(seed).integers(-32768, 32767, (n_arrays, n_rows, 12), "<i2")
    for ufunc, view, dtype in [
        (np.minimum, stack, None),
        (np.maximum, stack, None),
        (np.add, stack.view(np.uint16), np.uint16),
    ]:
        expected = [reduce_columns(ufunc, array, dtype) for array in view]
        np.testing.assert_array_equal(reduce_columns_stacked(ufunc, view, dtype), expected)


@pytest.mark.parametrize("mutation", ["n_sig_11", "n_sig_13"])
def test_a_signal_count_unlike_the_cached_layouts_gets_the_per_record_verdict(tmp_path, mutation):
    """A header whose record line declares another number of signals than it lists, after plain
    records have cached their layout, is judged as the per-record reader judges it."""
    paths = [write_record(tmp_path, i, m, i) for i, m in enumerate(["plain", "plain", mutation])]
    batch = check_chunk(str(tmp_path), "symile", True, paths)
    assert batch == [_check(str(tmp_path), "symile", True, path) for path in paths]


def test_a_signal_file_named_otherwise_is_read_on_the_batch_path(tmp_path):
    """The record's files are opened a block ahead as ``<stem>.dat``; a header naming another,
    existing signal file still gets the per-record reader's facts from that file."""
    rel = write_record(tmp_path, 0, "flat_lead", 0)
    stem = tmp_path / rel
    stem.with_suffix(".dat").rename(stem.parent / f"{stem.name}x.dat")
    hea = stem.with_suffix(".hea")
    hea.write_text(hea.read_text().replace(".dat 16", "x.dat 16"))
    [decided] = qc_wfdb_batch([str(stem)])
    samples = read_wfdb_samples(str(stem))
    assert decided is not None
    assert (decided.qc, decided.file_name) == (samples.qc(), samples.header.file_name)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_the_batch_check_closes_every_file_it_opened_ahead(tmp_path):
    """Over several blocks of good, broken and missing records, with and without hashing, and
    when a record's check fails midway, no descriptor opened ahead is left open."""
    mix = ["plain", "no_hea", "no_dat", "dat_is_folder", "other_dat_name", "truncated", "crlf"]
    stems = [str(tmp_path / write_record(tmp_path, i, mix[i % len(mix)], i)) for i in range(3 * BLOCK_RECORDS + 5)]  # fmt: skip
    before = _open_descriptors()
    for hash_files in (False, True):
        qc_wfdb_batch(stems, hash_files=hash_files)
        assert _open_descriptors() == before
    with pytest.raises(TypeError):
        qc_wfdb_batch([*stems[:BLOCK_RECORDS], None, *stems])  # type: ignore[list-item]
    assert _open_descriptors() == before
