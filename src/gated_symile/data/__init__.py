"""Datasets: cohorts (MIMIC, UKB), splits, tensors and their format, misalignment injection."""
