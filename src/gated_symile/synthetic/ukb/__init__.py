"""Synthetic UK-Biobank-style raw release (main dataset, Olink, HES, CardioSoft ECG XML).

See docs/synthetic-ukb.md.
"""

from gated_symile.synthetic.ukb.config import UkbSynthConfig
from gated_symile.synthetic.ukb.release import column_name, generate_ukb

__all__ = ["UkbSynthConfig", "column_name", "generate_ukb"]
