"""Misalignment injection by indirection (docs/method.md §10): draw, store and apply corruption manifests.

With probability ``p`` per sample one modality is corrupted; the choice is either ``exclusive``
(one of the non-target modalities, uniformly, at most one per sample, as in the paper) or a fixed
list of modalities (each corrupted independently with probability ``p``). How:

- ``swap`` (misleading): modality m is read from another row of the same split, the donor, taken
  from a seeded permutation per modality. A row drawn as its own donor keeps its data (as in the
  synthetic generator; its flag stays set). The donor's presence travels with its data. With
  ``exclude_same_subject`` donors of the same ``subject_id`` (self included) are redrawn.
- ``noise`` (uninformative): float inputs are replaced by N(0, 1) in standardised feature space,
  i.e. ``mean + std * z`` with the per-feature mean/std of the clean train split; ``image_uint8``
  inputs by uniform random pixels. The noise is a function of (seed, split, modality, row) only,
  so a sample gets the same noise in every batch and epoch.
- ``drop``: the modality is marked missing (present = False), which exercises docs/method.md §9.

For MIMIC, the ECG and lab tensors are computed per record (one ECG, one lab panel per
admission), so swapping the ECG or labs row of admission i with another admission's row is
exactly a record-level swap: what a wrong timestamp or identifier join would produce.

Why indirection: the manifests (``manifest_<split>.parquet``) are drawn once per (dataset, split,
p, seed) and are small; the clean tensors are never modified or copied, so every p of a sweep reads
the same files, and the loader (``gated_symile.data.datasets``) applies a manifest per batch.

Masks come from one uniform per sample (per sample and modality when not exclusive) compared with
``p``, and the donor permutations do not depend on ``p``: for one seed the corrupted sets are nested
across p (common random numbers), so a p sweep differs only in how many samples are corrupted.
"""
