"""The 50 Symile-MIMIC laboratory items (docs/data.md §5).

Why one constant: the cohort table, the percentile normalisation and the tensors must agree on the
same 50 items in the same order, and the tensor order of the reference is the sorted
``"<itemid>_percentile"`` strings, which for these 5-digit ids is simply ascending itemid.  Lab
columns are always keyed by the itemid as a *string* (``"51221"``) so that a CSV/parquet round trip
cannot turn the key into an int in one place and leave it a string in another.
"""

from __future__ import annotations

__all__ = ["LAB_COLUMNS", "LAB_ITEMIDS", "LAB_NAMES", "lab_column"]

LAB_NAMES: dict[int, str] = {
    51221: "Hematocrit",
    51265: "Platelet Count",
    50912: "Creatinine",
    50971: "Potassium",
    51222: "Hemoglobin",
    51301: "White Blood Cells",
    51249: "MCHC",
    51279: "Red Blood Cells",
    51250: "MCV",
    51248: "MCH",
    51277: "RDW",
    51006: "Urea Nitrogen",
    50983: "Sodium",
    50902: "Chloride",
    50882: "Bicarbonate",
    50868: "Anion Gap",
    50910: "Creatine Kinase (CK)",
    50931: "Glucose",
    50960: "Magnesium",
    50893: "Calcium, Total",
    50970: "Phosphate",
    51237: "INR(PT)",
    51274: "PT",
    51275: "PTT",
    51146: "Basophils",
    51256: "Neutrophils",
    51254: "Monocytes",
    51200: "Eosinophils",
    51244: "Lymphocytes",
    52172: "RDW-SD",
    50934: "H",
    52073: "Absolute Eosinophil Count",
    52069: "Absolute Basophil Count",
    52135: "Immature Granulocytes",
    51678: "L",
    50947: "I",
    50861: "Alanine Aminotransferase (ALT)",
    50878: "Asparate Aminotransferase (AST)",
    50813: "Lactate",
    50863: "Alkaline Phosphatase",
    50885: "Bilirubin, Total",
    50820: "pH",
    50862: "Albumin",
    50802: "Base Excess",
    50821: "pO2",
    50804: "Calculated Total CO2",
    50818: "pCO2",
    52075: "Absolute Neutrophil Count",
    52074: "Absolute Monocyte Count",
    51133: "Absolute Lymphocyte Count",
}
"""itemid -> MIMIC-IV ``d_labitems`` label (for figures and reports only)."""

LAB_ITEMIDS: tuple[int, ...] = tuple(sorted(LAB_NAMES))
"""The 50 itemids in tensor order (ascending itemid)."""


def lab_column(itemid: int) -> str:
    """Column name of a lab in the cohort table: the itemid as a string, e.g. ``"51221"``."""
    return str(int(itemid))


LAB_COLUMNS: tuple[str, ...] = tuple(lab_column(i) for i in LAB_ITEMIDS)
"""Cohort-table lab column names, in tensor order."""
