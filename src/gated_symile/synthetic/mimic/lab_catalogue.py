"""The lab items the generator writes: the 50 Symile-MIMIC labs (docs/data.md §5) plus others.

Labels, fluids, categories, units and reference ranges follow MIMIC-IV ``d_labitems`` /
``labevents`` conventions (as seen in the open MIMIC-IV demo v2.2, ODbL: Johnson et al.,
PhysioNet 2023, doi:10.13026/dp1f-ex47).  Distributions are rough clinical ranges, not fitted.

``latent`` names the admission latent an item carries (``f``: fluid/inflammation, ``b``: the
electrolyte bit) and ``loading`` its effect in units of the item's spread (negative = down).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LabItem:
    itemid: int
    label: str
    fluid: str
    category: str
    uom: str
    ref_lower: float | None
    ref_upper: float | None
    log: bool  # lognormal (center = median, spread = sd of log) or normal
    center: float
    spread: float
    decimals: int
    panel: str
    latent: str = ""
    loading: float = 0.0


B, C, H, G = "Blood", "Chemistry", "Hematology", "Blood Gas"

NUMERIC_ITEMS: tuple[LabItem, ...] = (
    # complete blood count
    LabItem(51221, "Hematocrit", B, H, "%", 40, 51, False, 33, 6, 1, "CBC"),
    LabItem(51222, "Hemoglobin", B, H, "g/dL", 13.7, 17.5, False, 11, 2, 1, "CBC"),
    LabItem(51248, "MCH", B, H, "pg", 26, 32, False, 30, 2.2, 1, "CBC"),
    LabItem(51249, "MCHC", B, H, "g/dL", 32, 37, False, 32.8, 1.4, 1, "CBC"),
    LabItem(51250, "MCV", B, H, "fL", 82, 98, False, 91, 7, 0, "CBC"),
    LabItem(51265, "Platelet Count", B, H, "K/uL", 150, 400, True, 200, 0.5, 0, "CBC"),
    LabItem(51277, "RDW", B, H, "%", 10.5, 15.5, False, 15, 2, 1, "CBC"),
    LabItem(
        51279, "Red Blood Cells", B, H, "m/uL", 4.6, 6.1, False, 3.6, 0.7, 2, "CBC"
    ),
    LabItem(
        51301,
        "White Blood Cells",
        B,
        H,
        "K/uL",
        4,
        10,
        True,
        9,
        0.45,
        1,
        "CBC",
        "f",
        1.2,
    ),
    LabItem(52172, "RDW-SD", B, H, "fL", 35.1, 46.3, False, 52, 8, 1, "CBC"),
    # differential
    LabItem(51146, "Basophils", B, H, "%", 0, 1, True, 0.4, 0.6, 1, "DIFF"),
    LabItem(51200, "Eosinophils", B, H, "%", 1, 7, True, 1.2, 0.9, 1, "DIFF"),
    LabItem(
        51244, "Lymphocytes", B, H, "%", 19, 53, False, 20, 10, 1, "DIFF", "f", -0.9
    ),
    LabItem(51254, "Monocytes", B, H, "%", 5, 13, False, 7, 3, 1, "DIFF"),
    LabItem(
        51256, "Neutrophils", B, H, "%", 34, 71, False, 68, 11, 1, "DIFF", "f", 1.0
    ),
    LabItem(
        51133,
        "Absolute Lymphocyte Count",
        B,
        H,
        "K/uL",
        1.2,
        3.7,
        True,
        1.5,
        0.6,
        2,
        "DIFF",
    ),
    LabItem(
        52069,
        "Absolute Basophil Count",
        B,
        H,
        "K/uL",
        0.01,
        0.08,
        True,
        0.03,
        0.7,
        2,
        "DIFF",
    ),
    LabItem(
        52073,
        "Absolute Eosinophil Count",
        B,
        H,
        "K/uL",
        0.04,
        0.54,
        True,
        0.12,
        0.9,
        2,
        "DIFF",
    ),
    LabItem(
        52074,
        "Absolute Monocyte Count",
        B,
        H,
        "K/uL",
        0.2,
        0.8,
        True,
        0.6,
        0.5,
        2,
        "DIFF",
    ),
    LabItem(
        52075,
        "Absolute Neutrophil Count",
        B,
        H,
        "K/uL",
        1.6,
        6.1,
        True,
        6,
        0.5,
        2,
        "DIFF",
        "f",
        1.2,
    ),
    LabItem(
        52135, "Immature Granulocytes", B, H, "%", 0, 0.6, True, 0.5, 0.6, 1, "DIFF"
    ),
    # chemistry
    LabItem(
        50912,
        "Creatinine",
        B,
        C,
        "mg/dL",
        0.5,
        1.2,
        True,
        1.0,
        0.5,
        1,
        "CHEM",
        "f",
        1.0,
    ),
    LabItem(
        50971,
        "Potassium",
        B,
        C,
        "mEq/L",
        3.3,
        5.1,
        False,
        4.2,
        0.45,
        1,
        "CHEM",
        "b",
        1.6,
    ),
    LabItem(
        51006, "Urea Nitrogen", B, C, "mg/dL", 6, 20, True, 19, 0.6, 0, "CHEM", "f", 1.0
    ),
    LabItem(50983, "Sodium", B, C, "mEq/L", 133, 145, False, 138, 4, 0, "CHEM"),
    LabItem(50902, "Chloride", B, C, "mEq/L", 96, 108, False, 101, 5, 0, "CHEM"),
    LabItem(
        50882,
        "Bicarbonate",
        B,
        C,
        "mEq/L",
        22,
        32,
        False,
        25,
        3.5,
        0,
        "CHEM",
        "f",
        -0.8,
    ),
    LabItem(50868, "Anion Gap", B, C, "mEq/L", 8, 20, False, 14, 3, 0, "CHEM"),
    LabItem(50931, "Glucose", B, C, "mg/dL", 70, 100, True, 120, 0.35, 0, "CHEM"),
    LabItem(
        50960,
        "Magnesium",
        B,
        C,
        "mg/dL",
        1.6,
        2.6,
        False,
        2.0,
        0.25,
        1,
        "CHEM",
        "b",
        1.4,
    ),
    LabItem(
        50893, "Calcium, Total", B, C, "mg/dL", 8.4, 10.3, False, 8.6, 0.6, 1, "CHEM"
    ),
    LabItem(
        50970,
        "Phosphate",
        B,
        C,
        "mg/dL",
        2.7,
        4.5,
        False,
        3.6,
        0.9,
        1,
        "CHEM",
        "b",
        1.4,
    ),
    LabItem(50934, "H", B, C, "U", 0, 40, True, 7, 1.0, 0, "CHEM"),
    LabItem(51678, "L", B, C, "U", 0, 60, True, 10, 0.8, 0, "CHEM"),
    LabItem(50947, "I", B, C, "U", 0, 10, True, 1.2, 0.7, 0, "CHEM"),
    # coagulation
    LabItem(51237, "INR(PT)", B, H, "", 0.9, 1.1, True, 1.3, 0.3, 1, "COAG"),
    LabItem(51274, "PT", B, H, "sec", 9.4, 12.5, True, 14, 0.3, 1, "COAG"),
    LabItem(51275, "PTT", B, H, "sec", 25, 36.5, True, 33, 0.3, 1, "COAG"),
    # liver panel
    LabItem(
        50861,
        "Alanine Aminotransferase (ALT)",
        B,
        C,
        "IU/L",
        0,
        40,
        True,
        28,
        0.9,
        0,
        "LFT",
    ),
    LabItem(
        50878,
        "Asparate Aminotransferase (AST)",
        B,
        C,
        "IU/L",
        0,
        40,
        True,
        37,
        0.9,
        0,
        "LFT",
    ),
    LabItem(
        50863, "Alkaline Phosphatase", B, C, "IU/L", 40, 130, True, 91, 0.5, 0, "LFT"
    ),
    LabItem(50885, "Bilirubin, Total", B, C, "mg/dL", 0, 1.5, True, 0.6, 0.8, 1, "LFT"),
    LabItem(
        50862, "Albumin", B, C, "g/dL", 3.5, 5.2, False, 3.5, 0.6, 1, "LFT", "f", -0.8
    ),
    LabItem(
        50910, "Creatine Kinase (CK)", B, C, "IU/L", 47, 322, True, 124, 1.1, 0, "LFT"
    ),
    # blood gas
    LabItem(50802, "Base Excess", B, G, "mEq/L", None, None, False, -1, 5, 0, "BG"),
    LabItem(
        50804, "Calculated Total CO2", B, G, "mEq/L", 21, 30, False, 25, 5, 0, "BG"
    ),
    LabItem(
        50813, "Lactate", B, G, "mmol/L", 0.5, 2.0, True, 1.8, 0.5, 1, "BG", "f", 1.0
    ),
    LabItem(50818, "pCO2", B, G, "mm Hg", 35, 45, False, 41, 9, 0, "BG"),
    LabItem(50820, "pH", B, G, "units", 7.35, 7.45, False, 7.37, 0.07, 2, "BG"),
    LabItem(50821, "pO2", B, G, "mm Hg", 85, 105, True, 100, 0.6, 0, "BG"),
    # not among the 50
    LabItem(51003, "Troponin T", B, C, "ng/mL", 0, 0.01, True, 0.05, 1.2, 2, "CHEM"),
    LabItem(51491, "pH", "Urine", H, "units", 5, 8, False, 6, 0.7, 1, "UA"),
    LabItem(
        51498,
        "Specific Gravity",
        "Urine",
        H,
        " ",
        1.001,
        1.035,
        False,
        1.018,
        0.007,
        3,
        "UA",
    ),
)

TEXT_ITEMS: tuple[tuple[int, str, str, str, str, tuple[str, ...]], ...] = (
    # itemid, label, fluid, category, panel, possible text values (valuenum always empty)
    (51478, "Glucose", "Urine", H, "UA", ("NEG", "NEG", "TR", "100")),
    (51484, "Ketone", "Urine", H, "UA", ("NEG", "NEG", "TR")),
    (51487, "Nitrite", "Urine", H, "UA", ("NEG", "NEG", "POS")),
    (51466, "Blood", "Urine", H, "UA", ("NEG", "TR", "SM", "MOD")),
    (51514, "Urobilinogen", "Urine", H, "UA", ("NEG", "NEG", "NORMAL")),
    (52033, "Specimen Type", B, G, "BG", ("ART.", "VEN.", "ART.", "CENTRAL VENOUS.")),
    (
        50933,
        "Green Top Hold (plasma)",
        B,
        C,
        "HOLD",
        ("HOLD.  DISCARD GREATER THAN 4 HOURS OLD.",),
    ),
    (50920, "Estimated GFR (MDRD equation)", B, C, "CHEM", ("",)),
)

PANELS: tuple[str, ...] = ("CBC", "DIFF", "CHEM", "COAG", "LFT", "BG", "UA", "HOLD")

SYMILE_LABS: tuple[int, ...] = tuple(sorted(i.itemid for i in NUMERIC_ITEMS[:50]))
"""The 50 labs of docs/data.md §5 in tensor order (ascending itemid)."""

TEXT_RESULTS: tuple[str, ...] = ("___", "UNABLE TO REPORT", "HEMOLYZED", "NEG", "ERROR")
"""Text a numeric lab may carry instead of a number (valuenum empty)."""

COMMENTS: tuple[str, ...] = (
    "New reference range as of ___.",
    "If fasting, 70-100 normal, >125 provisional diabetes.",
    'HEMOLYSIS PRESENT.\nRESULT MAY BE AFFECTED, "RECOLLECT" ADVISED.',
    "VERIFIED BY REPLICATE ANALYSIS.",
    "Using this patient's age, gender, and serum creatinine value,\n"
    "estimated GFR (eGFR) is likely between 39 and 47 mL/min/1.73 m2,\n"
    "provided the serum creatinine value is stable.",
    "___",
    'NOTIFIED DR. ___ AT 10:15AM, "CRITICAL" VALUE READ BACK.',
)
