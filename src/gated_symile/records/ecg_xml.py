"""GE CardioSoft ``CardiologyXML`` resting-ECG reader (UK Biobank field 20205; docs/data.md §9.2).

The 10 s rhythm strip lives in ``StripData``: ``NumberOfLeads``, ``SampleRate`` (Hz),
``ChannelSampleCountTotal``, ``Resolution`` (uV per LSB) and one ``WaveformData lead="..."`` per lead
holding comma-separated integers.  The reader converts to mV and reorders the leads to the MIMIC
order so the same ECG encoder serves both datasets.  Other ECG XML dialects (GE MUSE
``RestingECG``, HL7 aECG) are rejected by name rather than misread.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np

from gated_symile.records.ecg_record import EcgRecord
from gated_symile.records.errors import (
    MissingRecord,
    UnreadableRecord,
    UnsupportedRecord,
    WrongLeads,
    WrongLength,
    WrongSamplingRate,
)
from gated_symile.records.lead_names import MIMIC_LEAD_ORDER, canonical_order_index

__all__ = ["read_cardiosoft_xml"]

_OTHER_DIALECTS = {
    "RestingECG": "GE MUSE",
    "AnnotatedECG": "HL7 aECG",
    "sapphire": "Philips/Mortara Sapphire",
    "restingecgdata": "Philips PageWriter",
}
_UKB_FILE_NAME = re.compile(r"^(\d+)_20205_\d+_\d+")
_SEPARATORS = re.compile(r"[,\s]+")
_RESOLUTION_TO_MV = {"uvperlsb": 1e-3, "mvperlsb": 1.0, "nvperlsb": 1e-6}


def read_cardiosoft_xml(
    path: str | Path,
    *,
    expected_fs: float = 500,
    expected_samples: int = 5000,
) -> EcgRecord:
    """Read the rhythm strip of a CardioSoft XML file as a ``(n_samples, 12)`` mV signal.

    Raises :class:`MissingRecord`, :class:`UnreadableRecord` (not XML, another dialect, missing
    elements, non-integer samples), :class:`WrongSamplingRate`, :class:`WrongLeads` or
    :class:`WrongLength`.  ``subject_id`` is taken from a UK Biobank file name
    ``<eid>_20205_<instance>_<array>.xml`` when it has that form.
    """
    path = Path(path)
    root = _cardiology_root(path)
    strip = root.find("StripData")
    if strip is None:
        raise UnreadableRecord(path, "CardiologyXML without StripData (no rhythm strip)")
    signal, fs, names = _strip_signal(path, strip, expected_fs, expected_samples)
    return EcgRecord(
        path=str(path),
        signal=signal,
        fs=fs,
        lead_names=MIMIC_LEAD_ORDER,
        source_lead_names=names,
        base_datetime=_observation_datetime(root),
        comments=(),
        subject_id=_subject_from_file_name(path),
        source_format="cardiosoft-xml",
        details={
            "resolution": strip.findtext("Resolution", "").strip(),
            "resolution_units": (strip.find("Resolution").get("units") or ""),
            "device": (root.findtext("ClinicalInfo/DeviceInfo/Desc") or "").strip(),
            "software": (root.findtext("ClinicalInfo/DeviceInfo/SoftwareVer") or "").strip(),
            "observation_type": (root.findtext("ObservationType") or "").strip(),
        },
    )


def _cardiology_root(path: Path) -> ET.Element:
    """The root element of a CardioSoft file; another ECG dialect is *unsupported* (a valid
    record this reader does not decode), anything else *unreadable*."""
    if not path.is_file():
        raise MissingRecord(path, "file does not exist")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise UnreadableRecord(path, f"not well-formed XML ({exc})") from exc
    except (OSError, ValueError, LookupError) as exc:
        raise UnreadableRecord(path, f"cannot read XML ({type(exc).__name__}: {exc})") from exc
    if root.tag != "CardiologyXML":
        dialect = _OTHER_DIALECTS.get(root.tag)
        if dialect:  # a valid ECG file in a dialect this reader does not decode
            raise UnsupportedRecord(
                path, f"not a CardioSoft CardiologyXML file (root element {root.tag}: {dialect})"
            )
        raise UnreadableRecord(
            path, f"not a CardioSoft CardiologyXML file (root element {root.tag})"
        )
    return root


def _strip_signal(
    path: Path, strip: ET.Element, expected_fs: float, expected_samples: int
) -> tuple[np.ndarray, float, tuple[str, ...]]:
    """(mV signal in MIMIC lead order, fs, the file's lead names) of the rhythm strip.

    The declared rate, lead count and length are checked before any sample is parsed, so a
    wrong file fails on its header with the reason, not on a shape error.
    """
    fs = _number(path, strip, "SampleRate")
    if abs(fs - float(expected_fs)) > 1e-9:
        raise WrongSamplingRate(path, f"fs is {fs:g} Hz, expected {float(expected_fs):g}")
    waveforms = strip.findall("WaveformData")
    names = [str(w.get("lead", "")) for w in waveforms]
    declared_leads = strip.findtext("NumberOfLeads")
    if declared_leads is not None and declared_leads.strip() != str(len(names)):
        raise WrongLeads(
            path, f"NumberOfLeads is {declared_leads.strip()} but {len(names)} WaveformData found"
        )
    order = canonical_order_index(names)
    if isinstance(order, str):
        raise WrongLeads(path, order)
    declared_samples = _integer(path, strip, "ChannelSampleCountTotal")
    if declared_samples != expected_samples:
        raise WrongLength(
            path,
            f"{declared_samples} samples ({declared_samples / fs:g} s), expected {expected_samples}",
        )
    mv_per_count = _mv_per_count(path, strip)
    counts = np.empty((declared_samples, len(names)), dtype=np.int64)
    for column, waveform in enumerate(waveforms):
        counts[:, column] = _parse_counts(path, waveform, declared_samples)
    return counts[:, order].astype(np.float64) * mv_per_count, fs, tuple(names)


def _text(path: Path, parent: ET.Element, tag: str) -> str:
    text = parent.findtext(tag)
    if text is None or not text.strip():
        raise UnreadableRecord(path, f"StripData has no {tag}")
    return text.strip()


def _number(path: Path, parent: ET.Element, tag: str) -> float:
    """A finite number: ``nan`` would pass every comparison and ``inf`` scale samples to inf."""
    text = _text(path, parent, tag)
    try:
        value = float(text)
    except ValueError as exc:
        raise UnreadableRecord(path, f"StripData {tag} is not a number: {text!r}") from exc
    if not math.isfinite(value):
        raise UnreadableRecord(path, f"StripData {tag} is not a finite number: {text!r}")
    return value


def _integer(path: Path, parent: ET.Element, tag: str) -> int:
    text = _text(path, parent, tag)
    try:
        return int(text)
    except ValueError as exc:
        raise UnreadableRecord(path, f"StripData {tag} is not an integer: {text!r}") from exc


def _mv_per_count(path: Path, strip: ET.Element) -> float:
    resolution = _number(path, strip, "Resolution")
    element = strip.find("Resolution")
    units = (element.get("units") if element is not None else None) or "uVperLsb"
    factor = _RESOLUTION_TO_MV.get(units.strip().lower())
    if factor is None:
        raise UnreadableRecord(path, f"StripData Resolution has units {units!r}, expected uVperLsb")
    if not resolution > 0:
        raise UnreadableRecord(path, f"StripData Resolution is {resolution:g}")
    return resolution * factor


def _parse_counts(path: Path, waveform: ET.Element, n_samples: int) -> np.ndarray:
    lead = waveform.get("lead")
    tokens = [t for t in _SEPARATORS.split(waveform.text or "") if t]
    try:
        counts = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError) as exc:  # OverflowError: beyond 64 bits
        raise UnreadableRecord(path, f"lead {lead}: non-integer sample ({exc})") from exc
    if counts.size != n_samples:
        raise WrongLength(
            path, f"lead {lead} has {counts.size} samples, ChannelSampleCountTotal is {n_samples}"
        )
    return counts


def _observation_datetime(root: ET.Element) -> datetime | None:
    stamp = root.find("ObservationDateTime")
    if stamp is None:
        return None
    try:
        parts = [
            int(stamp.findtext(t) or "")
            for t in ("Year", "Month", "Day", "Hour", "Minute", "Second")
        ]
        return datetime(*parts)
    except ValueError:
        return None


def _subject_from_file_name(path: Path) -> int | None:
    match = _UKB_FILE_NAME.match(path.name)
    return int(match.group(1)) if match else None
