"""Raw-record readers: WFDB and CardioSoft XML ECGs, DICOM and JPG radiographs.

Every reader returns a small dataclass or array and raises a typed
:class:`~gated_symile.errors.RecordError` (file + problem) for anything it cannot use.  This
package never imports torch, so cohort stages and ``inspect`` stay light.
"""

from gated_symile.records.dicom_cxr import CxrImage, read_dicom_image
from gated_symile.records.dicom_header import MIMIC_TAGS, read_dicom_header
from gated_symile.records.ecg_qc import MAX_PLAUSIBLE_MV, QC_RULES, EcgQC, qc_ecg
from gated_symile.records.ecg_record import EcgRecord
from gated_symile.records.ecg_xml import read_cardiosoft_xml
from gated_symile.records.errors import (
    MissingRecord,
    NotGrayscale,
    RecordError,
    UnreadableRecord,
    UnsupportedRecord,
    WrongLeads,
    WrongLength,
    WrongSamplingRate,
)
from gated_symile.records.jpg_cxr import read_jpg_gray
from gated_symile.records.lead_names import (
    MIMIC_LEAD_ORDER,
    canonical_lead_name,
    canonical_order_index,
)
from gated_symile.records.mimic_jpg import equalize_histogram, mimic_jpg_pixels, scale_to_uint8
from gated_symile.records.wfdb_ecg import WFDB_MISSING_VALUE, read_wfdb_ecg, record_stem

__all__ = [
    "MAX_PLAUSIBLE_MV",
    "MIMIC_LEAD_ORDER",
    "MIMIC_TAGS",
    "QC_RULES",
    "WFDB_MISSING_VALUE",
    "CxrImage",
    "EcgQC",
    "EcgRecord",
    "MissingRecord",
    "NotGrayscale",
    "RecordError",
    "UnreadableRecord",
    "UnsupportedRecord",
    "WrongLeads",
    "WrongLength",
    "WrongSamplingRate",
    "canonical_lead_name",
    "canonical_order_index",
    "equalize_histogram",
    "mimic_jpg_pixels",
    "qc_ecg",
    "read_cardiosoft_xml",
    "read_dicom_header",
    "read_dicom_image",
    "read_jpg_gray",
    "read_wfdb_ecg",
    "record_stem",
    "scale_to_uint8",
]
