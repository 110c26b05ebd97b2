"""Symile-MIMIC dataset: cohort rules, lab panel, splits and tensors (docs/data.md §4-§7)."""
