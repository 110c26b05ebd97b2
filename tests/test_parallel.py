"""Order-preserving process maps (``gated_symile.data.mimic.parallel``) on a real spawn pool."""

from __future__ import annotations

import pytest

from gated_symile.data.mimic.parallel import RecordPool, chunk_size, ordered_imap, ordered_map


def _square(x: int) -> int:
    return x * x


def _drop_last(chunk: list[int]) -> list[int]:
    return chunk[:-1]


@pytest.mark.parametrize("workers", [1, 2])
def test_results_in_input_order_for_any_worker_count(workers):
    items = list(range(103))
    assert ordered_map(_square, items, workers=workers) == [x * x for x in items]


def test_chunks_give_every_worker_several_items_and_stay_bounded():
    assert chunk_size(10, 4) == 1
    assert chunk_size(1000, 2) == 125
    assert chunk_size(10**6, 2) == 256


def test_a_chunk_function_that_loses_results_is_an_error():
    with RecordPool(1) as pool, pytest.raises(RuntimeError, match="returned 0 results for 1 items"):
        pool.map_chunks(_drop_last, [1, 2])


def test_imap_hands_over_results_before_the_last_chunk_runs():
    """The tensors stage folds chunk results into its read set as they come: a generator that
    computed everything first would hold every chunk's result at once."""
    seen: list[int] = []

    def note(x: int) -> int:  # in-process (one worker), so the closure is fine
        seen.append(x)
        return x

    results = ordered_imap(note, list(range(40)), workers=1)
    assert next(results) == 0
    assert len(seen) < 40
    assert list(results) == list(range(1, 40))
