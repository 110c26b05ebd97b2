"""The fast DICOM header parser gives exactly what the pydicom path gives, or declines.

``read_dicom_header_and_length`` tries :mod:`gated_symile.records.dicom_fast_header` first and
falls back to pydicom; the cohort's verdicts must not depend on which of the two answered.  So
every test here compares the public entry point (and the fast parser alone, where it answers)
with :func:`read_dicom_header_with_pydicom` on real files: the project's synthetic radiographs,
edited ones, the real samples under ``../shared/realdata`` and random corruptions of a radiograph.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gated_symile.records.dicom_fast_header import (
    LONG_VRS,
    SHORT_VRS,
    TOP_LEVEL_TAGS,
    read_header_fast,
)
from gated_symile.records.dicom_header import (
    read_dicom_header_and_bytes,
    read_dicom_header_and_length,
    read_dicom_header_with_pydicom,
)
from gated_symile.records.errors import RecordError
from gated_symile.synthetic.mimic.radiograph import write_dicom as write_synthetic
from tests._realdata import REALDATA
from tests.test_records_dicom import write_dicom

TAGS = {
    "study_key": "s1", "subject_id": 10000032, "StudyDate": "21800723", "StudyTime": "084400.123",
    "ViewPosition": "PA", "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
    "ViewCodeSequence_CodeMeaning": "postero-anterior",
    "PatientOrientationCodeSequence_CodeMeaning": "Erect",
}  # fmt: skip


def outcome(read, path: Path):
    """What a reader makes of ``path``: its result, or the error's type and one-line problem."""
    try:
        return read(path)
    except RecordError as exc:
        return type(exc).__name__, exc.problem


def assert_same(path: Path) -> bool:
    """The entry points agree with pydicom on ``path``; returns whether the fast path answered."""
    expected = outcome(read_dicom_header_with_pydicom, path)
    assert outcome(read_dicom_header_and_length, path) == expected
    fast = read_header_fast(path)
    if fast is not None:
        tags, header, stat = fast
        assert (tags, len(header)) == expected
        assert header == path.read_bytes()[: len(header)] and stat.st_size == path.stat().st_size
        assert read_dicom_header_and_bytes(path)[:2] == (tags, header)
    return fast is not None


def synthetic(path: Path, **changes) -> Path:
    """A radiograph from the project's generator, with ``changes`` to its study tags."""
    pixels = (np.arange(64 * 48) % 4096).reshape(64, 48).astype(np.uint16)
    write_synthetic(path, pixels, "MONOCHROME2", {**TAGS, **changes}, "u1")
    return path


def test_the_dictionary_of_the_fast_parser_is_pydicom_s():
    from pydicom.datadict import dictionary_VR, keyword_for_tag
    from pydicom.filereader import ENCODED_VR
    from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

    for tag, (name, vr) in TOP_LEVEL_TAGS.items():
        assert (keyword_for_tag(tag), dictionary_VR(tag)) == (name, vr.decode())
    assert {vr.decode() for vr in LONG_VRS} == set(EXPLICIT_VR_LENGTH_32)
    assert LONG_VRS | SHORT_VRS == {vr for vr in ENCODED_VR if len(vr) == 2}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"ViewCodeSequence_CodeMeaning": None, "PatientOrientationCodeSequence_CodeMeaning": None},
        {"ViewPosition": "", "StudyTime": "0844"},
        {"ViewPosition": " AP", "PerformedProcedureStepDescription": "CHEST (PORTABLE AP) "},
    ],
)
def test_generated_radiographs_are_read_by_the_fast_path_alike(tmp_path, changes):
    assert assert_same(synthetic(tmp_path / "a.dcm", **changes))


def _edit(path: Path, edit, **save) -> Path:
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=True, **save)
    return path


def _implicit(ds) -> None:
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian


def _sequences_of_defined_length(ds) -> None:
    for name in ("ProcedureCodeSequence", "ViewCodeSequence"):
        ds[name].value.is_undefined_length = False
        for item in ds[name].value:
            item.is_undefined_length_sequence_item = False


EDITS = {  # name: (edit of the dataset, whether the fast path answers)
    "implicit VR": (_implicit, True),
    "sequences of defined length": (_sequences_of_defined_length, True),
    "ISO_IR 192": (lambda ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 192"), True),
    "ISO_IR 100": (lambda ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 100"), True),
    "Latin-1 value": (lambda ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 100")
                      or setattr(ds, "PatientID", "Müller"), False),  # fmt: skip
    "ISO_IR 13": (lambda ds: setattr(ds, "SpecificCharacterSet", "ISO_IR 13"), False),
    "two view positions": (lambda ds: setattr(ds, "ViewPosition", ["AP", "PA"]), False),
    "empty view code sequence": (lambda ds: setattr(ds, "ViewCodeSequence", []), True),
    "no PhotometricInterpretation": (lambda ds: delattr(ds, "PhotometricInterpretation"), False),
    "Rows as two values": (lambda ds: ds.__setitem__(0x00280010, pydicom.DataElement(
        0x00280010, "US", [64, 1])), False),  # fmt: skip
    "ViewPosition as LO": (lambda ds: ds.__setitem__(0x00185101, pydicom.DataElement(
        0x00185101, "LO", "PA")), False),  # fmt: skip
    "float pixel data too": (lambda ds: setattr(ds, "FloatPixelData", b"\0" * 8), False),
    "a private block": (lambda ds: ds.private_block(0x0099, "ACME", create=True).add_new(
        0x01, "OB", b"\1" * 3000), True),  # fmt: skip
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_edited_radiographs_agree_and_the_fast_path_declines_what_it_does_not_know(tmp_path, name):
    edit, answers = EDITS[name]
    path = _edit(synthetic(tmp_path / "a.dcm"), edit)
    assert assert_same(path) is answers


@pytest.mark.parametrize(
    ("transfer_syntax", "answers"),
    [("1.2.840.10008.1.2.1", True), ("1.2.840.10008.1.2", True), ("1.2.840.10008.1.2.2", False),
     ("1.2.840.10008.1.2.1.99", False), ("1.2.840.10008.1.2.4.90", False)],
)  # fmt: skip
def test_transfer_syntaxes_agree(tmp_path, transfer_syntax, answers):
    pixels = (np.arange(64 * 48) % 4096).reshape(64, 48).astype(np.uint16)
    path = write_dicom(tmp_path / "a.dcm", pixels, transfer_syntax=transfer_syntax)
    assert assert_same(path) is answers


def test_bytes_after_the_pixel_data_or_a_cut_go_to_pydicom(tmp_path):
    data = synthetic(tmp_path / "a.dcm").read_bytes()
    cases = {"tail": data + b"\0" * 8, "odd": data + b"\0" * 3, "cut": data[:-2],
             "head": data[:400], "meta": data[:180]}  # fmt: skip
    for name, content in cases.items():
        path = tmp_path / f"{name}.dcm"
        path.write_bytes(content)
        assert not assert_same(path)
    assert not assert_same(tmp_path / "absent.dcm")


def test_a_repeated_element_is_left_to_pydicom(tmp_path):
    """pydicom keeps the last of two elements with one tag: here an empty second ViewCodeSequence,
    so the view's code meaning is None, not the first sequence's."""
    data = synthetic(tmp_path / "a.dcm").read_bytes()
    at = data.index(b"\x54\x00\x10\x04SQ")  # PatientOrientationCodeSequence follows the view's
    path = tmp_path / "b.dcm"
    path.write_bytes(data[:at] + b"\x54\x00\x20\x02SQ\0\0\0\0\0\0" + data[at:])
    assert not assert_same(path)
    assert read_dicom_header_and_length(path)[0]["ViewCodeSequence_CodeMeaning"] is None


def test_real_sample_files_agree():
    files = sorted(REALDATA.rglob("*.dcm")) if REALDATA.is_dir() else []
    if not files:
        pytest.skip("no real DICOM samples available")
    answered = [path.name for path in files if assert_same(path)]
    assert len(answered) < len(files)  # the encapsulated samples go to pydicom


@st.composite
def corruptions(draw):
    """Overwrite, insert or delete a few bytes (mostly in the header), or cut the file."""
    steps = draw(st.lists(st.tuples(
        st.sampled_from(["set", "insert", "delete", "cut"]),
        st.one_of(st.integers(120, 1200), st.integers(0, 5000)),
        st.binary(min_size=1, max_size=4),
    ), min_size=1, max_size=3))  # fmt: skip
    return steps


_BASE: dict[str, bytes] = {}


def _base() -> bytes:
    if not _BASE:
        with tempfile.TemporaryDirectory() as folder:
            path = _edit(synthetic(Path(folder) / "a.dcm"), lambda ds: None)
            _BASE["explicit"] = path.read_bytes()
    return _BASE["explicit"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on corrupt values
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corruptions())
def test_corrupted_radiographs_agree(steps):
    data = bytearray(_base())
    for kind, pos, blob in steps:
        pos = min(pos, len(data))
        if kind == "set":
            data[pos : pos + len(blob)] = blob
        elif kind == "insert":
            data[pos:pos] = blob
        elif kind == "delete":
            del data[pos : pos + len(blob)]
        else:
            del data[pos:]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "a.dcm"
        path.write_bytes(bytes(data))
        assert_same(path)
