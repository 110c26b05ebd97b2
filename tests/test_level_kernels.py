"""The compiled histogram and gather of the lookup-table conversion equal their numpy meanings."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gated_symile.records.level_kernels import gather_levels, level_histogram


@st.composite
def stored_values(draw):
    """1-D arrays of every integer dtype a decoder returns, spanning at most ~2^17 levels."""
    dtype = np.dtype(draw(st.sampled_from(["u1", "i1", "<u2", "<i2", "<u4", "<i4", "<i8"])))
    info = np.iinfo(dtype)
    elements = st.integers(max(int(info.min), -(2**16)), min(int(info.max), 2**16))
    return draw(arrays(dtype, st.integers(1, 500), elements=elements))


@settings(max_examples=100, deadline=None)
@given(stored_values(), st.booleans())
def test_histogram_and_gather_equal_numpy(flat, read_only):
    flat.flags.writeable = not read_only  # file views reach the kernels read-only
    low, high = int(flat.min()), int(flat.max())
    wide = flat.astype(np.int64) - low
    counts = level_histogram(flat, low, high - low + 1)
    np.testing.assert_array_equal(counts, np.bincount(wide, minlength=high - low + 1))
    assert counts.dtype == np.int64 and counts.sum() == flat.size
    table = np.random.default_rng(0).integers(0, 256, size=high - low + 1).astype(np.uint8)
    out = gather_levels(flat, low, table)
    np.testing.assert_array_equal(out, table[wide])
    assert out.dtype == np.uint8
