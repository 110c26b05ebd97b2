"""QC and checksums on the stored integers agree exactly with the float path they replace.

The cohort checks ECGs with :meth:`WfdbSamples.qc` (integers, two converted rows) and checksums with
a folded 16-bit sum; both must give the same facts as :func:`qc_ecg` on the full mV signal and as
numpy's plain ``axis=0`` reductions, whatever the calibration, lead order and sample values.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gated_symile.records import WFDB_MISSING_VALUE, qc_ecg
from gated_symile.records.column_reduce import BLOCK_ROWS, reduce_columns
from gated_symile.records.ecg_qc import qc_stored
from gated_symile.records.wfdb_ecg import WfdbSamples

N_LEADS = 12


@st.composite
def stored_records(draw) -> tuple[WfdbSamples, np.ndarray]:
    """A calibration (gains incl. huge and infinite, baselines incl. huge, uV leads), a lead
    order, and int16 samples with flat leads, leads at their baseline and missing samples (one,
    scattered, a whole lead, a lead but one sample, every sample)."""
    n_samples = draw(st.sampled_from([1, 7, BLOCK_ROWS * 2, BLOCK_ROWS * 3 + 17, 5000]))
    gain = draw(
        st.lists(
            st.sampled_from([200.0, 1.0, 0.37, 1e-300, 1e300, float("inf")]),
            min_size=N_LEADS, max_size=N_LEADS,
        )
    )  # fmt: skip
    baseline = draw(
        st.lists(
            st.sampled_from([0, 5, -2048, 2**40, -(2**60)]), min_size=N_LEADS, max_size=N_LEADS
        )
    )
    scale = draw(st.lists(st.sampled_from([1.0, 1e-3]), min_size=N_LEADS, max_size=N_LEADS))
    order = np.array(draw(st.permutations(range(N_LEADS))), dtype=np.intp)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    low, high = draw(st.sampled_from([(-3, 3), (-600, 600), (-32768, 32767)]))
    stored = rng.integers(low, high, size=(n_samples, N_LEADS), endpoint=True).astype(np.int16)
    for lead in draw(st.lists(st.integers(0, N_LEADS - 1), max_size=3)):
        stored[:, lead] = draw(st.integers(-32767, 32767))  # flat lead
    if draw(st.booleans()):
        stored[:] = np.clip(np.array(baseline), -32767, 32767)  # every lead at its baseline
    missing = draw(st.sampled_from(["none", "none", "one", "some", "lead", "lead_but_one", "all"]))
    lead = rng.integers(0, N_LEADS)
    if missing == "one":
        stored[rng.integers(0, n_samples), lead] = WFDB_MISSING_VALUE
    elif missing == "some":
        stored[rng.random(stored.shape) < 0.2] = WFDB_MISSING_VALUE
    elif missing in ("lead", "lead_but_one"):  # a lead with no or a single present sample
        stored[:, lead] = WFDB_MISSING_VALUE
        if missing == "lead_but_one":
            stored[rng.integers(0, n_samples), lead] = draw(st.integers(-32767, 32767))
    elif missing == "all":
        stored[:] = WFDB_MISSING_VALUE
    samples = WfdbSamples(
        stem="r", header=None, order=order, gain=np.array(gain), unit_scale=np.array(scale),
        baseline=np.array(baseline, dtype=np.float64), stored=stored,
    )  # fmt: skip
    return samples, stored


@settings(max_examples=500, deadline=None)
@given(stored_records())
def test_qc_on_stored_integers_equals_qc_of_the_mv_signal(case):
    samples, stored = case
    with np.errstate(over="ignore"):  # tiny gains overflow to inf on both paths alike
        expected = qc_ecg(samples.to_mv(stored))
        assert qc_stored(stored, WFDB_MISSING_VALUE, samples.to_mv) == expected
        assert samples.qc() == expected


def test_qc_on_stored_integers_needs_the_dtype_minimum_as_missing_value():
    with pytest.raises(ValueError, match="not the minimum"):
        qc_stored(np.zeros((10, 12), np.int16), -1, lambda rows: rows.astype(float))


@settings(max_examples=200, deadline=None)
@given(
    hnp.arrays(
        np.int16,
        st.tuples(st.integers(1, 5 * BLOCK_ROWS + 3), st.integers(1, 13)),
        elements=st.integers(-32768, 32767),
    ),
    st.booleans(),
)
def test_folded_column_reductions_equal_numpy_axis0(array, strided):
    if strided:
        array = array[:, ::-1]  # not C-contiguous: reduced directly
    for ufunc in (np.minimum, np.maximum):
        np.testing.assert_array_equal(reduce_columns(ufunc, array), ufunc.reduce(array, axis=0))
    sums = reduce_columns(np.add, array.view(np.uint16), np.uint16)
    np.testing.assert_array_equal(sums, array.sum(axis=0, dtype=np.int64) % 65536)
