"""GE CardioSoft CardiologyXML reader: the two real Onyx files, MUSE rejection, synthetic edge cases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from gated_symile.records import (
    MIMIC_LEAD_ORDER,
    MissingRecord,
    UnreadableRecord,
    UnsupportedRecord,
    WrongLeads,
    WrongLength,
    WrongSamplingRate,
    qc_ecg,
    read_cardiosoft_xml,
)
from tests._realdata import realdata

CARDIOSOFT = [
    ("onyx-cardiosoft-xml", "interface-ecg-cardiosoft", "src", "test", "resources", "Ecg.XML"),
    ("onyx-cardiosoft-xml", "interface-ecg-cardiosoft-mac800", "src", "test", "resources", "000000.XML"),
]  # fmt: skip
MUSE = [
    ("egm-r-package", "inst", "extdata", "muse-sinus.xml"),
    ("braveheart-muse-xml", "Example ECGs", "example1.xml"),
]
CARDIOSOFT_ORDER = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")


def independent_strip_counts(path: Path) -> dict[str, np.ndarray]:
    """StripData counts per lead, parsed separately from the reader."""
    strip = ET.parse(path).getroot().find("StripData")
    return {
        w.get("lead"): np.array([int(v) for v in w.text.replace("\n", "").split(",") if v.strip()])
        for w in strip.iter("WaveformData")
    }


@pytest.mark.parametrize("parts", CARDIOSOFT)
def test_real_cardiosoft_files_give_5000_by_12_mv_in_mimic_order(parts):
    path = realdata(*parts)
    record = read_cardiosoft_xml(path)
    assert record.signal.shape == (5000, 12) and record.fs == 500
    assert record.lead_names == MIMIC_LEAD_ORDER
    assert record.source_lead_names == CARDIOSOFT_ORDER  # aVL before aVF in the file
    counts = independent_strip_counts(path)
    for column, name in enumerate(MIMIC_LEAD_ORDER):
        np.testing.assert_allclose(record.signal[:, column], counts[name] * 5 / 1000)
    assert qc_ecg(record.signal).reject_reason("strict") is None


def test_cardiosoft_observation_time_is_the_base_datetime():
    record = read_cardiosoft_xml(realdata(*CARDIOSOFT[0]))
    assert record.base_datetime == datetime(2008, 9, 23, 10, 48, 34)
    assert record.details["software"] == "V6.51"


@pytest.mark.parametrize("parts", MUSE)
def test_ge_muse_files_are_rejected_by_name(parts):
    path = realdata(*parts)
    with pytest.raises(UnsupportedRecord) as caught:
        read_cardiosoft_xml(path)
    assert caught.value.problem == (
        "not a CardioSoft CardiologyXML file (root element RestingECG: GE MUSE)"
    )


def write_cardiosoft(
    path: Path,
    *,
    names=CARDIOSOFT_ORDER,
    n_samples: int = 5000,
    rate: str = "500",
    resolution: str = "5",
    values: str | None = None,
) -> Path:
    root = ET.Element("CardiologyXML")
    stamp = ET.SubElement(root, "ObservationDateTime")
    for tag, value in zip(
        ("Hour", "Minute", "Second", "Day", "Month", "Year"), (9, 5, 1, 2, 3, 2010), strict=True
    ):
        ET.SubElement(stamp, tag).text = str(value)
    strip = ET.SubElement(root, "StripData")
    ET.SubElement(strip, "NumberOfLeads").text = str(len(names))
    ET.SubElement(strip, "SampleRate", units="Hz").text = rate
    ET.SubElement(strip, "ChannelSampleCountTotal").text = str(n_samples)
    ET.SubElement(strip, "Resolution", units="uVperLsb").text = resolution
    for lead, name in enumerate(names):
        text = (
            values
            if values is not None
            else ",".join(str(lead * 10 + i % 7) for i in range(n_samples))
        )
        ET.SubElement(strip, "WaveformData", lead=name).text = "\t\t" + text + ",\n"
    ET.ElementTree(root).write(path, encoding="ISO-8859-1", xml_declaration=True)
    return path


def test_synthetic_ukb_file_upper_case_leads_and_subject_from_file_name(tmp_path):
    names = ("I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6")
    record = read_cardiosoft_xml(write_cardiosoft(tmp_path / "1234567_20205_2_0.xml", names=names))
    assert record.subject_id == 1234567
    assert record.base_datetime == datetime(2010, 3, 2, 9, 5, 1)
    # column of canonical lead k holds counts 10 * (its position in the file) + i % 7
    folded = [n.casefold() for n in names]
    expected_first_row = [10 * folded.index(n.casefold()) * 5 / 1000 for n in MIMIC_LEAD_ORDER]
    np.testing.assert_allclose(record.signal[0], expected_first_row)


@pytest.mark.parametrize(
    ("kwargs", "error", "problem"),
    [
        ({"rate": "250"}, WrongSamplingRate, "fs is 250 Hz, expected 500"),
        ({"n_samples": 600}, WrongLength, "600 samples"),
        ({"names": CARDIOSOFT_ORDER[:8]}, WrongLeads, "8 leads"),
        ({"values": "1,2,x"}, UnreadableRecord, "lead I: non-integer sample"),
        ({"values": "1,2,3"}, WrongLength, "lead I has 3 samples"),
        ({"resolution": "0"}, UnreadableRecord, "StripData Resolution is 0"),
    ],
)
def test_synthetic_bad_strips_are_rejected(tmp_path, kwargs, error, problem):
    path = write_cardiosoft(tmp_path / "ecg.xml", **kwargs)
    with pytest.raises(error) as caught:
        read_cardiosoft_xml(path)
    assert caught.value.problem.startswith(problem)
    assert caught.value.path == str(path)


def test_not_xml_other_root_and_missing_file(tmp_path):
    with pytest.raises(MissingRecord):
        read_cardiosoft_xml(tmp_path / "absent.xml")
    (tmp_path / "a.xml").write_text("not <xml")
    with pytest.raises(UnreadableRecord, match="not well-formed XML"):
        read_cardiosoft_xml(tmp_path / "a.xml")
    (tmp_path / "b.xml").write_text("<Other><StripData/></Other>")
    with pytest.raises(UnreadableRecord, match=r"root element Other\)$"):
        read_cardiosoft_xml(tmp_path / "b.xml")
    (tmp_path / "c.xml").write_text("<CardiologyXML/>")
    with pytest.raises(UnreadableRecord, match="without StripData"):
        read_cardiosoft_xml(tmp_path / "c.xml")
