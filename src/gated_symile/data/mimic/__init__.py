"""Symile-MIMIC dataset: cohort rules, lab panel, splits and tensors (data.md §4-§7)."""
