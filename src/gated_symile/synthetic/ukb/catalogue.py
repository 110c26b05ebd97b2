"""Fixed catalogues of the UK-Biobank-style release: fields, biochemistry, ICD-10, proteins.

Field ids follow docs/data.md §9.2 (NMR 23400-23648, blood biochemistry 30600-30890, sex 31, year
of birth 34, assessment date 53).  Biochemistry means are typical UK Biobank medians (order of
magnitude only).  The ICD-10 and protein catalogues are synthetic apart from a few common
three-character codes; they do not depend on the seed, so two generated releases share a vocabulary.
"""

from __future__ import annotations

import numpy as np

FIELD_SEX = 31
FIELD_YEAR_OF_BIRTH = 34
FIELD_ASSESSMENT_DATE = 53
NMR_FIELDS: tuple[int, ...] = tuple(range(23400, 23649))
"""249 Nightingale NMR biomarkers (category 220)."""
ECG_FIELD = 20205
OLINK_PROTEIN_CODES = 1463
"""Size of data-coding 143 (the Olink Explore 1536 panel as released)."""

BIOCHEMISTRY: tuple[tuple[int, str, float, float, float], ...] = (
    # field, name, median, log-sd, extra missing share
    (30600, "albumin", 45.0, 0.06, 0.0),
    (30610, "alkaline phosphatase", 83.0, 0.3, 0.0),
    (30620, "alanine aminotransferase", 23.0, 0.45, 0.0),
    (30630, "apolipoprotein A", 1.54, 0.17, 0.05),
    (30640, "apolipoprotein B", 1.03, 0.23, 0.0),
    (30650, "aspartate aminotransferase", 26.0, 0.3, 0.0),
    (30660, "direct bilirubin", 1.8, 0.4, 0.15),
    (30670, "urea", 5.4, 0.25, 0.0),
    (30680, "calcium", 2.38, 0.04, 0.05),
    (30690, "cholesterol", 5.7, 0.2, 0.0),
    (30700, "creatinine", 72.0, 0.22, 0.0),
    (30710, "C-reactive protein", 2.6, 0.9, 0.0),
    (30720, "cystatin C", 0.9, 0.17, 0.0),
    (30730, "gamma glutamyltransferase", 37.0, 0.6, 0.0),
    (30740, "glucose", 5.1, 0.2, 0.05),
    (30750, "glycated haemoglobin (HbA1c)", 36.0, 0.15, 0.0),
    (30760, "HDL cholesterol", 1.45, 0.27, 0.05),
    (30770, "IGF-1", 21.4, 0.27, 0.0),
    (30780, "LDL direct", 3.56, 0.24, 0.0),
    (30790, "lipoprotein A", 44.0, 1.0, 0.2),
    (30800, "oestradiol", 400.0, 0.7, 0.75),
    (30810, "phosphate", 1.16, 0.14, 0.05),
    (30820, "rheumatoid factor", 25.0, 0.6, 0.9),
    (30830, "SHBG", 51.0, 0.4, 0.05),
    (30840, "total bilirubin", 9.0, 0.4, 0.0),
    (30850, "testosterone", 6.7, 0.9, 0.05),
    (30860, "total protein", 72.5, 0.06, 0.05),
    (30870, "triglycerides", 1.74, 0.45, 0.0),
    (30880, "urate", 309.0, 0.25, 0.0),
    (30890, "vitamin D", 49.0, 0.45, 0.05),
)
BIOCHEMISTRY_FIELDS: tuple[int, ...] = tuple(row[0] for row in BIOCHEMISTRY)

_COMMON_ICD10 = (
    "I10", "E11", "E78", "J45", "K21", "M54", "I25", "K57", "N39", "R07", "K80", "I48", "J44",
    "E66", "F32", "M17", "K29", "R10", "Z86", "I20", "N18", "E03", "G47", "K44", "J18", "D64",
    "M19", "H25", "K63", "C44", "L57", "Z92", "F17", "E87", "R69", "I50", "K59", "N40", "R55",
)  # fmt: skip
N_ICD10_CODES = 400


def icd10_catalogue() -> tuple[str, ...]:
    """``N_ICD10_CODES`` distinct three-character ICD-10 codes, most common first.

    Real frequent codes first, then synthetic ``<letter><two digits>`` codes in a fixed order
    (chapter letters without U, which ICD-10 reserves).
    """
    rng = np.random.default_rng(1010)
    pool = [f"{letter}{n:02d}" for letter in "ABCDEFGHIJKLMNOPQRSTVWXYZ" for n in range(100)]
    pool = [code for code in pool if code not in _COMMON_ICD10]
    extra = [pool[i] for i in rng.permutation(len(pool))[: N_ICD10_CODES - len(_COMMON_ICD10)]]
    return _COMMON_ICD10 + tuple(extra)


ICD9_CODES: tuple[str, ...] = ("4019", "2500", "2724", "4939", "5309", "7242", "4140", "5990")
"""ICD-9 codes written (in ``diag_icd9``, no ICD-10) for episodes before 1997 (older Scottish records)."""


def protein_meaning(protein_id: int) -> str:
    """Coding-143 ``meaning``: ``"ABBR;Full protein name"``."""
    return f"P{protein_id:04d};Synthetic Olink protein {protein_id}"
