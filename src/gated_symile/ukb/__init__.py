"""UK-Biobank-style dataset: cohort (presence, folds, exclusions), EHR featurisers and tensors.

Raw-table readers live in ``gated_symile.records.ukb_tables``; the synthetic release generator in
``gated_symile.synthetic.ukb``.  See docs/data.md §9 and docs/synthetic-ukb.md.
"""
