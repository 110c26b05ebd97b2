"""Retrieval evaluation: ranking, metrics with bootstrap intervals, gate diagnostics."""
