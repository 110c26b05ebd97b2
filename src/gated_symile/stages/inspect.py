"""Summarise raw records (WFDB ECG, DICOM, JPG/PNG, CardioSoft XML) and say whether they are usable.

``gated-symile inspect PATH...`` detects each file's kind, prints a one-screen summary (header,
tags, per-lead or image statistics, ECG QC verdicts) on stdout, and for every record the pipeline
cannot use -- unreadable, or an ECG failing the QC rule in force -- prints exactly one line
``PATH: problem`` on stderr and moves on.  It uses the same readers as the cohort stage and, by
default, its QC rule, so "inspect exits 0" means "the cohort will read these records and keep
them".
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from gated_symile.records.ecg_qc import EcgQC

_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
_WFDB_SUFFIXES = {".hea", ".dat"}

USABLE, FAILS_QC, UNREADABLE = 0, 1, 2
"""Exit statuses, in increasing severity: the run exits with the worst one of its records."""

EXIT_STATUS_HELP = (
    "exit status: 0 when every record is usable; 1 when some record is readable but an ECG "
    "fails the QC rule in force (one 'PATH: reason' line per such record on stderr); 2 when some "
    "record cannot be read or used at all (missing, malformed, not the expected format, sampling "
    "rate, length or leads; one 'PATH: problem' line each). 2 wins over 1."
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="WFDB record (.hea, .dat or stem), DICOM, JPG/PNG or CardioSoft XML file",
    )
    parser.add_argument(
        "--qc-rule",
        default=None,
        metavar="RULE",
        help="ECG QC rule that decides exit status 1: symile (default, the cohort's default: NaN "
        "or all-zero records fail) or strict (also flat leads and implausible amplitudes)",
    )
    parser.epilog = EXIT_STATUS_HELP
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gated_symile.data.mimic.cohort import MimicCohortConfig
    from gated_symile.errors import ConfigError
    from gated_symile.records.ecg_qc import QC_RULES
    from gated_symile.stages.flags import field_default

    # the cohort's default rule (one default); checked here, not by argparse, for a one-line error
    rule = field_default(MimicCohortConfig, "qc_rule") if args.qc_rule is None else args.qc_rule
    if rule not in QC_RULES:
        raise ConfigError(f"--qc-rule must be one of {', '.join(QC_RULES)}, got {rule!r}")
    statuses = [
        inspect_path(raw_path, out=sys.stdout, err=sys.stderr, qc_rule=rule)
        for raw_path in args.paths
    ]
    return max(statuses, default=USABLE)


@dataclass(frozen=True)
class Summary:
    """What a summariser found: the lines to print and, for an ECG, its QC facts."""

    lines: list[str]
    qc: EcgQC | None = None


def inspect_path(raw_path: str, *, out: TextIO, err: TextIO, qc_rule: str) -> int:
    """Print the summary of one path; return its exit status (:data:`USABLE`, ...).

    An unreadable record prints only ``PATH: problem`` on ``err``; a readable ECG that fails
    ``qc_rule`` prints its summary on ``out`` and ``PATH: reason`` on ``err``.
    """
    from gated_symile.errors import GatedSymileError, RecordError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            kind = detect_kind(raw_path)
            summary = _SUMMARISERS[kind](raw_path)
        notes = sorted(
            {str(w.message).splitlines()[0] for w in caught if not _is_developer_warning(w)}
        )
    except GatedSymileError as exc:
        print(_one_line(raw_path, exc), file=err)
        return UNREADABLE
    except Exception as exc:  # a third-party decoder failed in a way the readers did not map
        wrapped = RecordError(raw_path, f"{type(exc).__name__}: {exc}")
        print(_one_line(raw_path, wrapped), file=err)
        return UNREADABLE
    print("\n".join(summary.lines + [f"  note: {note}" for note in notes]), file=out)
    reason = summary.qc.reject_reason(qc_rule) if summary.qc is not None else None
    if reason is None:
        return USABLE
    failed = RecordError(raw_path, f"fails ECG QC rule {qc_rule}: {reason}")
    print(_one_line(raw_path, failed), file=err)
    return FAILS_QC


def _is_developer_warning(message: warnings.WarningMessage) -> bool:
    """Deprecation chatter from libraries says nothing about the record; file warnings do."""
    return issubclass(
        message.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    )


def detect_kind(raw_path: str) -> str:
    """``'wfdb'``, ``'dicom'``, ``'image'`` or ``'xml'`` from the name, then from the content."""
    from gated_symile.errors import RecordError

    path = Path(raw_path)
    suffix = path.suffix.lower()
    if suffix in _WFDB_SUFFIXES:
        return "wfdb"
    if not path.exists():
        if Path(f"{raw_path}.hea").is_file():
            return "wfdb"
        raise RecordError(path, "file does not exist (nor a WFDB header PATH.hea)")
    if path.is_dir():
        raise RecordError(path, "is a directory, expected a record file")
    if suffix in _IMAGE_SUFFIXES:
        return "image"
    if suffix == ".xml":
        return "xml"
    if suffix == ".dcm" or _has_dicom_preamble(path):
        return "dicom"
    with path.open("rb") as handle:
        start = handle.read(64).lstrip()
    if start.startswith(b"<"):
        return "xml"
    return "dicom"  # last resort: the DICOM reader force-reads files without a preamble


def _has_dicom_preamble(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(132)
    return head[128:132] == b"DICM"


def _one_line(raw_path: str, exc: Exception) -> str:
    from gated_symile.errors import RecordError

    text = str(exc)
    if isinstance(exc, RecordError) and Path(exc.path) != Path(raw_path):
        text = f"{raw_path}: {text}"
    elif not isinstance(exc, RecordError):
        text = f"{raw_path}: {text}"
    return " ".join(text.split())


def _summarise_wfdb(raw_path: str) -> Summary:
    from gated_symile.records import read_wfdb_ecg, record_stem

    record = read_wfdb_ecg(record_stem(raw_path))
    details = record.details
    lines = [f"{raw_path}: WFDB record {details['record_name']}"]
    lines += [
        f"  fmt {_compact(details['fmt'])}, gain {_compact(details['adc_gain'])} adu/unit, "
        f"baseline {_compact(details['baseline'])}, units {_compact(details['units'])}, "
        f"adc_res {_compact(details['adc_res'])}, file {_compact(details['file_name'])}"
    ]
    return _ecg_summary(lines, record)


def _summarise_xml(raw_path: str) -> Summary:
    from gated_symile.records import read_cardiosoft_xml

    record = read_cardiosoft_xml(raw_path)
    d = record.details
    lines = [
        f"{raw_path}: CardioSoft CardiologyXML ({d['device']} {d['software']}, "
        f"{d['observation_type']})",
        f"  resolution {d['resolution']} {d['resolution_units']}",
    ]
    return _ecg_summary(lines, record)


def _ecg_summary(lines: list[str], record) -> Summary:
    """The header ``lines`` plus the lead table and QC verdicts of both rules."""
    import numpy as np

    from gated_symile.records import QC_RULES, qc_ecg

    signal = record.signal
    reordered = [n.casefold() for n in record.source_lead_names] != [
        n.casefold() for n in record.lead_names
    ]
    lines = lines + [
        f"  {len(record.lead_names)} leads, {record.fs:g} Hz, {record.n_samples} samples "
        f"({record.n_samples / record.fs:g} s), start {record.base_datetime or '-'}, "
        f"subject_id {record.subject_id if record.subject_id is not None else '-'}",
        f"  source leads: {' '.join(record.source_lead_names)}"
        + ("  (reordered to MIMIC order)" if reordered else ""),
    ]
    for comment in record.comments[:4]:
        lines.append(f"  # {comment[:100]}")
    if len(record.comments) > 4:
        lines.append(f"  # ... {len(record.comments) - 4} more comment lines")
    lines.append(f"  {'lead':<5}{'min mV':>9}{'max mV':>9}{'mean mV':>9}{'NaN':>6}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN lead
        lows, highs = np.nanmin(signal, axis=0), np.nanmax(signal, axis=0)
        means = np.nanmean(signal, axis=0)
    nans = np.isnan(signal).sum(axis=0)
    for i, name in enumerate(record.lead_names):
        lines.append(f"  {name:<5}{lows[i]:>9.3f}{highs[i]:>9.3f}{means[i]:>9.3f}{int(nans[i]):>6}")
    qc = qc_ecg(signal)
    verdicts = [
        f"{rule}: {qc.reject_reason(rule) and 'reject (' + qc.reject_reason(rule) + ')' or 'keep'}"
        for rule in QC_RULES
    ]
    lines.append(f"  QC max |x| {qc.max_abs_mv:.3f} mV; " + "; ".join(verdicts))
    return Summary(lines, qc)


def _summarise_dicom(raw_path: str) -> Summary:
    import numpy as np

    from gated_symile.records import read_dicom_image

    image = read_dicom_image(raw_path)
    tags = {k: v for k, v in image.tags.items() if v is not None}
    missing = [k for k, v in image.tags.items() if v is None]
    pixels = image.pixels
    values = image.modality_values()
    lines = [
        f"{raw_path}: DICOM {tags.get('Modality', '?')} image {image.height}x{image.width}",
        f"  transfer syntax {image.transfer_syntax_name} ({image.transfer_syntax_uid})",
        f"  {image.photometric}"
        + (" (inverted once for display)" if image.is_inverted else "")
        + f", bits allocated {image.bits_allocated}, stored {image.bits_stored}, "
        f"pixel representation {image.pixel_representation}",
        f"  rescale slope {image.rescale_slope:g} intercept {image.rescale_intercept:g}; "
        f"window {_or_dash(image.window_center)}/{_or_dash(image.window_width)}; "
        f"VOI LUT {'yes' if image.has_voi_lut else 'no'}; "
        f"PresentationLUTShape {image.presentation_lut_shape or '-'}",
        f"  decoded {pixels.dtype} min {pixels.min()} max {pixels.max()} "
        f"mean {float(np.mean(pixels)):.1f}; modality values {values.min():g}..{values.max():g}",
    ]
    lines += [f"  {key}: {str(value)[:80]}" for key, value in tags.items()]
    if missing:
        lines.append(f"  missing tags: {' '.join(missing)}")
    return Summary(lines)


def _summarise_image(raw_path: str) -> Summary:
    import numpy as np

    from gated_symile.records import read_jpg_gray

    pixels = read_jpg_gray(raw_path)
    return Summary([
        f"{raw_path}: image {pixels.shape[0]}x{pixels.shape[1]} (grayscale uint8)",
        f"  min {pixels.min()} max {pixels.max()} mean {float(np.mean(pixels)):.1f} "
        f"std {float(np.std(pixels)):.1f}",
    ])


def _compact(values) -> str:
    """``(16, 16, 16)`` -> ``16``; mixed values are listed."""
    distinct = list(dict.fromkeys(values))
    return str(distinct[0]) if len(distinct) == 1 else ",".join(str(v) for v in values)


def _or_dash(value) -> str:
    return "-" if value is None else f"{value:g}"


_SUMMARISERS = {
    "wfdb": _summarise_wfdb,
    "dicom": _summarise_dicom,
    "image": _summarise_image,
    "xml": _summarise_xml,
}
