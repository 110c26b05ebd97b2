"""Resting ECGs written as GE CardioSoft ``CardiologyXML`` (UK Biobank field 20205; docs/data.md §9.2).

The waveform comes from the MIMIC generator's dipole model (``synthetic.mimic.ecg_waveform``), so
the two datasets share one ECG physiology; here it is quantised at 5 uV per count and laid out like
the CardioSoft V6.51 sample files: ``ObservationType``, ``ObservationDateTime``,
``ClinicalInfo/DeviceInfo``, ``PatientInfo`` (no identifiers), ``FilterSetting``,
``RestingECGMeasurements`` with a 12 x 600 ``MedianSamples`` block, and ``StripData`` with 12
``WaveformData`` leads of 5000 comma-separated integers in CardioSoft order (aVL before aVF).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from gated_symile.synthetic.mimic.ecg_waveform import FS, LEADS, N_SAMPLES, synthesize_ecg

CARDIOSOFT_LEADS: tuple[str, ...] = (
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
)  # fmt: skip
RESOLUTION_UV = 5
MEDIAN_SAMPLES = 600
_VALUES_PER_LINE = 500


def ecg_file_name(eid: int, instance: int = 2) -> str:
    return f"{eid}_20205_{instance}_0.xml"


def write_cardiosoft_ecg(job: tuple[str, int, int, int, float, int]) -> str:
    """Worker: ``(path, seed, stream, eid, h_ecg, a_ecg)`` -> write one XML file, return its path.

    The random stream is keyed on ``eid``, so the bytes do not depend on worker count or order.
    """
    path, seed, stream, eid, h_ecg, a_ecg = job
    rng = np.random.default_rng([seed, stream, eid])
    signal = synthesize_ecg(rng, h_ecg, a_ecg)
    order = [LEADS.index(name) for name in CARDIOSOFT_LEADS]
    counts = np.rint(signal[:, order] * 1000.0 / RESOLUTION_UV).astype(np.int64)
    day = dt.date(2014, 5, 1) + dt.timedelta(days=int(rng.integers(0, 6 * 365)))
    clock = dt.time(int(rng.integers(8, 18)), int(rng.integers(0, 60)), int(rng.integers(0, 60)))
    when = dt.datetime.combine(day, clock)
    rate = int(round(62 if a_ecg == 0 else 96 + rng.normal(0, 4)))
    text = _document(counts, when, rate)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(text.encode("ascii"))
    return path


def _waveforms(counts: np.ndarray, indent: str) -> str:
    lines = []
    for lead, column in zip(CARDIOSOFT_LEADS, counts.T):
        chunks = [
            ",".join(map(str, column[i : i + _VALUES_PER_LINE].tolist()))
            for i in range(0, column.size, _VALUES_PER_LINE)
        ]
        body = f",\n{indent}\t".join(chunks)
        lines.append(f'{indent}<WaveformData lead="{lead}">\t{body}\n{indent}</WaveformData>')
    return "\n".join(lines)


def _document(counts: np.ndarray, when: dt.datetime, rate: int) -> str:
    median = counts[1000 : 1000 + MEDIAN_SAMPLES]
    return f"""<?xml version="1.0" encoding="ISO8859-1" ?>
<CardiologyXML>
\t<ObservationType>RestECG</ObservationType>
\t<ObservationDateTime>
\t\t<Hour>{when.hour}</Hour>
\t\t<Minute>{when.minute}</Minute>
\t\t<Second>{when.second}</Second>
\t\t<Day>{when.day}</Day>
\t\t<Month>{when.month}</Month>
\t\t<Year>{when.year}</Year>
\t</ObservationDateTime>
\t<ClinicalInfo>
\t\t<DeviceInfo>
\t\t\t<Desc>CardioSoft</Desc>
\t\t\t<SoftwareVer>V6.73</SoftwareVer>
\t\t\t<AnalysisVer>12SL 21</AnalysisVer>
\t\t</DeviceInfo>
\t</ClinicalInfo>
\t<PatientInfo>
\t\t<PID></PID>
\t\t<PaceMaker>no</PaceMaker>
\t</PatientInfo>
\t<FilterSetting>
\t\t<CubicSpline>No</CubicSpline>
\t\t<Filter50Hz>Yes</Filter50Hz>
\t\t<Filter60Hz>No</Filter60Hz>
\t\t<LowPass units="Hz">150</LowPass>
\t\t<HighPass units="Hz">0.05</HighPass>
\t</FilterSetting>
\t<RestingECGMeasurements>
\t\t<VentricularRate units="BPM">{rate}</VentricularRate>
\t\t<RRInterval units="ms">{round(60000 / rate)}</RRInterval>
\t\t<MedianSamples>
\t\t\t<NumberOfLeads>12</NumberOfLeads>
\t\t\t<SampleRate units="Hz">{FS}</SampleRate>
\t\t\t<ChannelSampleCountTotal>{MEDIAN_SAMPLES}</ChannelSampleCountTotal>
\t\t\t<Resolution units="uVperLsb">{RESOLUTION_UV}</Resolution>
\t\t\t<FirstValid units="Sample">0</FirstValid>
\t\t\t<LastValid units="Sample">{MEDIAN_SAMPLES - 1}</LastValid>
{_waveforms(median, chr(9) * 3)}
\t\t</MedianSamples>
\t</RestingECGMeasurements>
\t<StripData>
\t\t<NumberOfLeads>12</NumberOfLeads>
\t\t<SampleRate units="Hz">{FS}</SampleRate>
\t\t<ChannelSampleCountTotal>{N_SAMPLES}</ChannelSampleCountTotal>
\t\t<Resolution units="uVperLsb">{RESOLUTION_UV}</Resolution>
{_waveforms(counts, chr(9) * 2)}
\t</StripData>
</CardiologyXML>
"""
