"""Byte-wise fuzzing of every raw-record reader with hypothesis.

Each target is one real or generated sample file -- WFDB header and signal files, DICOM, MIMIC
csv.gz tables, UK-Biobank-style tables, CardioSoft ECG XML, JPG -- that a few mutations (flip a
bit; insert, delete or overwrite bytes; truncate) change before the reader runs on it.  The
property: the reader returns a valid record, or raises the project's ``RecordError`` naming a file
of the record in one line.  Any other exception type fails the test, and so does a case that runs
past :data:`CASE_SECONDS` (a hang: a reader looping or allocating on a corrupt length field).

Mutations hit a uniformly drawn offset or one near a structural *anchor* of the file (DICOM element
headers, XML tags, CSV separators, JPEG markers, gzip header and trailer), so that small budgets
still reach headers and length fields.  Examples are derandomised (the same cases every run); the
``slow`` test runs many more.  Real samples come from ``../shared/realdata`` and are skipped when it
is absent; the generated ones (synthetic generator, wfdb, pydicom, Pillow) always run.
"""

from __future__ import annotations

import gzip
import importlib
import io
import re
import signal
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gated_symile.errors import RecordError
from tests._realdata import REALDATA

CASE_SECONDS = 60
"""Wall-clock bound of one case.  Readers take milliseconds; only a hang gets near this, even on a
loaded machine."""
FAST_EXAMPLES = 40
SLOW_EXAMPLES = 300
"""Mutation lists per sample in the full suite: about 3 minutes of CI over all samples (600 took 6;
the whole suite must stay under 30 minutes on 2 cores)."""
_FUZZ = dict(
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ mutations


SPECIAL_BYTES = (
    b"\x00", b"\xff", b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff", b"\x80",
    b"0", b"-", b"9999999999999999999999", b"1e999", b"-1e999", b"inf", b"nan", b"NaN", b"-0",
    b"\n", b"\r\n", b"\t", b" ", b",", b"\"", b"'", b"<", b">", b"&", b"]]>", b"<!--",
    b"\xef\xbb\xbf", b"\xc3\x28", b"#", b"/", b"x", b"16", b"212", b"500", b"5000", b"12",
)  # fmt: skip
"""Bytes that tend to matter: length fields, number syntax, separators, markup, bad UTF-8."""


@st.composite
def _offset(draw, anchors_available: bool):
    """("uniform", raw) or ("anchor", index, delta); resolved against the data in :func:`mutate`."""
    if anchors_available and draw(st.booleans()):
        return ("anchor", draw(st.integers(0, 1 << 16)), draw(st.integers(-6, 6)))
    return ("uniform", draw(st.integers(0, 1 << 31)))


def _payload():
    return st.one_of(st.sampled_from(SPECIAL_BYTES), st.binary(min_size=1, max_size=12))


def mutations(anchors_available: bool = True):
    offset = _offset(anchors_available)
    operation = st.one_of(
        st.tuples(st.just("flip"), offset, st.integers(0, 7)),
        st.tuples(st.just("insert"), offset, _payload()),
        st.tuples(st.just("delete"), offset, st.integers(1, 64)),
        st.tuples(st.just("overwrite"), offset, _payload()),
        st.tuples(st.just("truncate"), offset),
    )
    return st.lists(operation, min_size=1, max_size=3)


def _resolve(offset: tuple, size: int, anchors: list[int]) -> int:
    if size == 0:
        return 0
    if offset[0] == "anchor" and anchors:
        return min(max(anchors[offset[1] % len(anchors)] + offset[2], 0), size - 1)
    return offset[-1] % size


def mutate(data: bytes, operations: list[tuple], anchors: list[int]) -> bytes:
    out = bytearray(data)
    for operation in operations:
        kind, offset = operation[0], operation[1]
        at = _resolve(offset, len(out), anchors)
        if kind == "flip" and out:
            out[at] ^= 1 << operation[2]
        elif kind == "insert":
            out[at:at] = operation[2]
        elif kind == "delete":
            del out[at : at + operation[2]]
        elif kind == "overwrite":
            out[at : at + len(operation[2])] = operation[2]
        elif kind == "truncate":
            del out[at:]
    return bytes(out)


# ------------------------------------------------------------------ running one case


class CaseTimeout(BaseException):
    """A reader ran past :data:`CASE_SECONDS`.  Not an ``Exception``: no reader may swallow it."""


@contextmanager
def case_deadline(seconds: float):
    def expire(signum, frame):
        raise CaseTimeout(f"reader still running after {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass(frozen=True)
class Target:
    """Sample files of one record, the one to mutate, how to read the record and check it."""

    files: dict[str, bytes] = field(repr=False)
    mutated: str
    read: Callable[[Path], object] = field(repr=False)
    check: Callable[[object], None] = field(repr=False)
    anchors: tuple[int, ...] = field(default=(), repr=False)
    gzip_text: bool = False  # mutate the decompressed text, then compress again

    def run(self, operations: list[tuple]) -> None:
        original = self.files[self.mutated]
        if self.gzip_text:
            data = gzip.compress(
                mutate(gzip.decompress(original), operations, list(self.anchors)), mtime=0
            )
        else:
            data = mutate(original, operations, list(self.anchors))
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            folder = self._write(Path(tmp), data)
            with case_deadline(CASE_SECONDS):
                try:
                    record = self.read(folder)
                except RecordError as exc:
                    assert Path(exc.path).resolve().is_relative_to(folder.resolve()), exc.path
                    assert exc.problem and "\n" not in str(exc), repr(str(exc))
                    return
            self.check(record)

    def read_original(self):
        with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
            return self.read(self._write(Path(tmp), self.files[self.mutated]))

    def _write(self, folder: Path, data: bytes) -> Path:
        """The record's files in ``folder``, the mutated one holding ``data``."""
        for name, content in self.files.items():
            (folder / name).write_bytes(data if name == self.mutated else content)
        return folder


# ------------------------------------------------------------------ anchors


def _all(data: bytes, pattern: bytes, limit: int = 4000) -> list[int]:
    found = [m.start() for m in re.finditer(re.escape(pattern), data)]
    step = max(1, len(found) // limit)
    return found[::step]


def _dicom_anchors(data: bytes) -> tuple[int, ...]:
    """Tag, length and value offsets of every top-level element (file meta included)."""
    import pydicom

    anchors = [128, 132]
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True, defer_size=64)
        for tag in sorted(ds.keys()):
            tell = getattr(ds.get_item(tag, keep_deferred=True), "value_tell", None)
            if tell is not None:
                anchors += [tell - 8, tell - 4, tell - 2, tell]
    except Exception:  # noqa: BLE001 -- a sample pydicom cannot walk just gets fewer anchors
        pass
    return tuple(a for a in anchors if 0 <= a < len(data))


def _text_anchors(data: bytes) -> tuple[int, ...]:
    return tuple(
        sorted(set(_all(data, b",") + _all(data, b"\t") + _all(data, b"\n") + _all(data, b" ")))
    )


def _xml_anchors(data: bytes) -> tuple[int, ...]:
    marks = _all(data, b"<") + _all(data, b'="')
    for name in (b"SampleRate", b"NumberOfLeads", b"ChannelSampleCountTotal", b"Resolution",
                 b"WaveformData", b"StripData"):  # fmt: skip
        marks += [m + len(name) + 1 for m in _all(data, b"<" + name)]
    return tuple(sorted(set(marks)))


def _jpeg_anchors(data: bytes) -> tuple[int, ...]:
    return tuple(_all(data, b"\xff"))


# ------------------------------------------------------------------ record checks


def check_ecg(record) -> None:
    from gated_symile.records import MIMIC_LEAD_ORDER, EcgRecord

    assert isinstance(record, EcgRecord)
    assert record.signal.shape == (5000, 12) and record.signal.dtype == np.float64
    assert record.fs == 500 and record.lead_names == MIMIC_LEAD_ORDER
    assert not np.isinf(record.signal).any()


def check_dicom(result) -> None:
    tags, image, converted = result
    assert image.pixels.ndim == 2 and image.pixels.size > 0
    assert image.pixels.shape == (int(image.tags["Rows"]), int(image.tags["Columns"]))
    assert tags == image.tags
    assert converted.dtype == np.uint8 and converted.shape == image.pixels.shape


def check_gray(pixels) -> None:
    assert pixels.dtype == np.uint8 and pixels.ndim == 2 and pixels.size > 0


def check_columns(expected: tuple[str, ...]) -> Callable[[object], None]:
    def check(columns) -> None:
        assert tuple(columns) == expected

    return check


def check_frame(frame) -> None:
    assert "eid" in frame.columns


def check_olink(matrix) -> None:
    assert matrix.values.shape == (matrix.eids.size, matrix.protein_ids.size)


# ------------------------------------------------------------------ readers under test


RECORDS = "gated_symile.records"


def reader(function: str, name: str, **kwargs) -> Callable[[Path], object]:
    """``module.function(folder / name, **kwargs)``; the module is imported when the case runs."""
    module, _, attribute = function.rpartition(".")

    def read(folder: Path):
        return getattr(importlib.import_module(module), attribute)(folder / name, **kwargs)

    return read


def read_dicom(name: str) -> Callable[[Path], object]:
    def read(folder: Path):
        from gated_symile.records import read_dicom_header, read_dicom_image
        from gated_symile.records.mimic_jpg import mimic_jpg_from_image

        tags = read_dicom_header(folder / name)
        image = read_dicom_image(folder / name)
        return tags, image, mimic_jpg_from_image(image)

    return read


def read_mimic_table(name: str, spec_name: str) -> Callable[[Path], object]:
    def read(folder: Path):
        import duckdb

        from gated_symile.records import mimic_tables

        con = duckdb.connect()
        try:
            mimic_tables.load_table(
                con, "t", folder / name, getattr(mimic_tables, spec_name), file_row=True
            )
            return [row[0] for row in con.execute("DESCRIBE t").fetchall()]
        finally:
            con.close()

    return read


# ------------------------------------------------------------------ the samples


def _files(folder: Path, names: list[str]) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in names}


def _wfdb_targets(key: str, folder: Path, stem: str) -> dict[str, Target]:
    files = _files(folder, [f"{stem}.hea", f"{stem}.dat"])
    read = reader(f"{RECORDS}.read_wfdb_ecg", stem)
    header, signal = files[f"{stem}.hea"], files[f"{stem}.dat"]
    return {
        f"{key}-hea": Target(files, f"{stem}.hea", read, check_ecg, _text_anchors(header)),
        f"{key}-dat": Target(files, f"{stem}.dat", read, check_ecg, (0, 1, len(signal) - 2)),
    }


def _dicom_target(data: bytes) -> Target:
    return Target({"x.dcm": data}, "x.dcm", read_dicom("x.dcm"), check_dicom, _dicom_anchors(data))


def _xml_target(data: bytes) -> Target:
    read = reader(f"{RECORDS}.read_cardiosoft_xml", "x.xml")
    return Target({"x.xml": data}, "x.xml", read, check_ecg, _xml_anchors(data))


def _generated(root: Path) -> dict[str, Target]:
    """Samples made here: synthetic generators, wfdb, Pillow, and the MIMIC demo in tests/data."""
    import datetime as dt

    from PIL import Image

    from gated_symile.records.mimic_jpg import mimic_jpg_pixels
    from gated_symile.synthetic.mimic.ecg_waveform import digitize, synthesize_ecg, write_wfdb
    from gated_symile.synthetic.mimic.radiograph import synthesize_cxr, write_dicom
    from gated_symile.synthetic.ukb import UkbSynthConfig, generate_ukb
    from gated_symile.synthetic.ukb.ecg_xml import write_cardiosoft_ecg
    from tests.test_records_wfdb import write_mimic_record

    rng = np.random.default_rng(0)
    targets: dict[str, Target] = {}
    digital = digitize(synthesize_ecg(rng, 0.3, 1), "ok", rng)
    write_wfdb(root / "ecg", 40000001, 10000032, dt.datetime(2180, 7, 23, 8, 44), digital)
    targets.update(_wfdb_targets("wfdb-synthetic", root / "ecg", "40000001"))
    (root / "ecg212").mkdir()
    write_mimic_record(root / "ecg212", fmt="212")
    targets.update(_wfdb_targets("wfdb-format212", root / "ecg212", "40000001"))

    pixels = synthesize_cxr(rng, "PA", 0.2, 0.1, 1, 48)
    tags = {"study_key": "s", "subject_id": 10000032, "StudyDate": "21800723",
            "StudyTime": "084400", "ViewPosition": "PA",
            "PerformedProcedureStepDescription": "CHEST (PA AND LAT)",
            "ViewCodeSequence_CodeMeaning": "postero-anterior",
            "PatientOrientationCodeSequence_CodeMeaning": "Erect"}  # fmt: skip
    write_dicom(root / "cxr.dcm", pixels, "MONOCHROME1", tags, "fuzz")
    targets["dicom-synthetic"] = _dicom_target((root / "cxr.dcm").read_bytes())
    Image.fromarray(mimic_jpg_pixels(root / "cxr.dcm")).save(root / "cxr.jpg", quality=95)
    jpg = (root / "cxr.jpg").read_bytes()
    read = reader(f"{RECORDS}.read_jpg_gray", "x.jpg")
    targets["jpg-synthetic"] = Target({"x.jpg": jpg}, "x.jpg", read, check_gray, _jpeg_anchors(jpg))

    xml = root / "ukb.xml"
    write_cardiosoft_ecg((str(xml), 0, 0, 1000001, 0.2, 1))
    targets["cardiosoft-synthetic"] = _xml_target(xml.read_bytes())

    ukb = root / "ukb"
    generate_ukb(ukb, UkbSynthConfig(participants=12, seed=3, olink_frac=0.5, ecg_frac=0.0,
                                     n_proteins=4))  # fmt: skip
    nmr = tuple(range(23400, 23410))
    for key, name, function, kwargs, check in (
        ("main", "ukb_main.csv", "read_main_dataset", {"fields": (53, *nmr), "instances": (0,)},
         check_frame),
        ("olink", "olink_data.txt", "pivot_olink", {}, check_olink),
        ("hesin", "hesin.txt", "read_hesin", {}, check_frame),
        ("hesin-diag", "hesin_diag.txt", "read_hesin_diag", {}, check_frame),
    ):  # fmt: skip
        data = (ukb / name).read_bytes()
        read = reader(f"{RECORDS}.ukb_tables.{function}", name, **kwargs)
        targets[f"ukb-{key}"] = Target({name: data}, name, read, check, _text_anchors(data))

    demo = Path(__file__).parent / "data" / "mimic-iv-demo-2.2" / "hosp"
    from gated_symile.records import mimic_tables

    for key, name, spec, lines in (
        ("patients", "patients.csv.gz", "PATIENTS", None),
        ("admissions", "admissions.csv.gz", "ADMISSIONS", 60),
        ("labevents", "labevents.csv.gz", "LABEVENTS", 120),
    ):
        text = gzip.decompress((demo / name).read_bytes())
        if lines is not None:  # the first rows are enough, and keep each case fast
            text = b"".join(io.BytesIO(text).readlines()[: lines + 1])
        data = gzip.compress(text, mtime=0)
        spec_columns = getattr(mimic_tables, spec)
        columns = (*spec_columns.required, *spec_columns.optional, "file_row")
        read = read_mimic_table(name, spec)
        targets[f"mimic-{key}-text"] = Target({name: data}, name, read, check_columns(columns),
                                              _text_anchors(text), gzip_text=True)  # fmt: skip
        gz_anchors = (*range(0, 12), *range(len(data) - 8, len(data)))
        targets[f"mimic-{key}-gzip"] = Target({name: data}, name, read, check_columns(columns),
                                              gz_anchors)  # fmt: skip
    return targets


REAL_SAMPLES = {
    "wfdb-real-muse-sinus": ("egm-r-package", "inst", "extdata", "muse-sinus"),
    "wfdb-real-ludb": ("egm-r-package", "tests", "testthat", "ludb-ecg"),
    "dicom-real-ct-small": ("pydicom-3.0.2-wheel", "pydicom", "data", "test_files", "CT_small.dcm"),
    "dicom-real-implicit": ("pydicom-3.0.2-wheel", "pydicom", "data", "test_files",
                            "MR_small_implicit.dcm"),
    "dicom-real-bigendian": ("pydicom-3.0.2-wheel", "pydicom", "data", "test_files",
                             "MR_small_bigendian.dcm"),
    "dicom-real-rle": ("pydicom-3.0.2-wheel", "pydicom", "data", "test_files", "MR_small_RLE.dcm"),
    "dicom-real-jpeg2000": ("pydicom-3.0.2-wheel", "pydicom", "data", "test_files", "JPEG2000.dcm"),
    "dicom-real-dx": ("highdicom", "data", "test_files", "dx_image.dcm"),
    "cardiosoft-real": ("onyx-cardiosoft-xml", "interface-ecg-cardiosoft", "src", "test",
                        "resources", "Ecg.XML"),
}  # fmt: skip


def _real(key: str) -> dict[str, Target]:
    path = REALDATA.joinpath(*REAL_SAMPLES[key])
    if key.startswith("wfdb"):
        return _wfdb_targets(key, path.parent, path.name)
    data = path.read_bytes()
    if key.startswith("dicom"):
        return {key: _dicom_target(data)}
    return {key: _xml_target(data)}


def _real_available(key: str) -> bool:
    path = REALDATA.joinpath(*REAL_SAMPLES[key])
    return (path.with_name(path.name + ".hea") if key.startswith("wfdb") else path).is_file()


GENERATED = (
    "wfdb-synthetic-hea", "wfdb-synthetic-dat", "wfdb-format212-hea", "wfdb-format212-dat",
    "dicom-synthetic", "jpg-synthetic", "cardiosoft-synthetic",
    "ukb-main", "ukb-olink", "ukb-hesin", "ukb-hesin-diag",
    "mimic-patients-text", "mimic-patients-gzip", "mimic-admissions-text",
    "mimic-admissions-gzip", "mimic-labevents-text", "mimic-labevents-gzip",
)  # fmt: skip
REAL = tuple(
    name
    for key in REAL_SAMPLES
    for name in ((f"{key}-hea", f"{key}-dat") if key.startswith("wfdb") else (key,))
)
TARGET_PARAMS = [pytest.param(name, id=name) for name in GENERATED] + [
    pytest.param(
        name,
        id=name,
        marks=pytest.mark.skipif(
            not _real_available(next(k for k in REAL_SAMPLES if name.startswith(k))),
            reason="real sample files not available",
        ),
    )
    for name in REAL
]


class Targets(dict):
    """The samples by name, with a short repr: hypothesis prints a failing case's arguments."""

    def __repr__(self) -> str:
        return f"<{len(self)} fuzz targets>"

    def _repr_pretty_(self, printer, cycle) -> None:
        printer.text(repr(self))


@pytest.fixture(scope="module")
def targets(tmp_path_factory) -> Targets:
    found = Targets(_generated(tmp_path_factory.mktemp("fuzz-samples")))
    for key in REAL_SAMPLES:
        if _real_available(key):
            found.update(_real(key))
    return found


def test_unmutated_samples_are_valid_records(targets):
    """The property is only meaningful if every sample itself reads as a valid record."""
    for target in targets.values():
        target.check(target.read_original())


def fuzz_test(max_examples: int):
    """The property over every target, ``max_examples`` mutation lists each."""

    @pytest.mark.parametrize("name", TARGET_PARAMS)
    @settings(max_examples=max_examples, **_FUZZ)
    @given(operations=mutations())
    def test(targets, name, operations):
        targets[name].run(operations)

    return test


test_mutated_sample_is_a_valid_record_or_a_record_error = pytest.mark.timeout(900)(
    fuzz_test(FAST_EXAMPLES)
)
test_many_mutations_of_each_sample = pytest.mark.slow(
    pytest.mark.timeout(3600)(fuzz_test(SLOW_EXAMPLES))
)
