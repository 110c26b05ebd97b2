"""Order-preserving process-parallel maps for per-record scans (ECG QC, DICOM headers, decoding).

Why: reading records is the slowest part of the cohort and the tensors; the work is independent
per record, but the output must not depend on the number of workers.  ``Executor.map`` returns
results in input order, so any worker count gives identical results; ``spawn`` avoids forking a
process that holds DuckDB threads.

Why chunks: a task per record costs a pickle round trip and a scheduler wake-up (~100 us) on top
of a record read of about the same size, so :class:`RecordPool` sends *lists* of records, sized so
that every worker still gets several of them (load balance), and keeps its processes for the
whole stage (the cohort checks ECGs in rounds and then DICOM headers: one start-up, not one per
round).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from multiprocessing import get_context
from typing import TypeVar

__all__ = ["MAX_CHUNK", "RecordPool", "chunk_size", "ordered_imap", "ordered_map"]

T = TypeVar("T")
R = TypeVar("R")

MAX_CHUNK = 256
"""Most records per work item: larger ones only worsen the load balance of the last items."""
CHUNKS_PER_WORKER = 4
"""Work items per worker at least (when there are enough records): the slowest item bounds the
wall time, so a worker that drew slow records must not hold a quarter of the stage."""


def chunk_size(n_items: int, workers: int) -> int:
    """Records per work item for ``n_items`` records over ``workers`` processes."""
    return max(1, min(MAX_CHUNK, -(-n_items // (max(1, workers) * CHUNKS_PER_WORKER))))


def _each(func: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [func(item) for item in chunk]


def ordered_map(func: Callable[[T], R], items: Sequence[T], *, workers: int = 1) -> list[R]:
    """``[func(x) for x in items]``, computed by ``workers`` processes; result order = input order.

    ``func`` must be a module-level function (picklable); items travel in chunks
    (:class:`RecordPool`).  With ``workers <= 1`` or few items the map runs in this process.
    """
    return list(ordered_imap(func, items, workers=workers))


def ordered_imap(func: Callable[[T], R], items: Sequence[T], *, workers: int = 1) -> Iterator[R]:
    """:func:`ordered_map` as a generator: each result is handed over as soon as it and those
    before it are done, so a caller that folds the results never holds all of them."""
    with RecordPool(workers) as pool:
        yield from pool.imap_chunks(partial(_each, func), items)


class RecordPool:
    """``workers`` processes, started on first need and kept until :meth:`close`.

    :meth:`imap_chunks` applies a *chunk function* ``func(list_of_items) -> list_of_results``
    (module-level, or a ``functools.partial`` of one) to consecutive slices of ``items`` and
    yields the results in input order; :meth:`map_chunks` returns them as one list.  With one
    worker, or too few items to be worth a process hop, it runs in this process.
    """

    def __init__(self, workers: int = 1) -> None:
        self.workers = max(1, int(workers))
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> RecordPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def map_chunks(self, func: Callable[[list[T]], list[R]], items: Sequence[T]) -> list[R]:
        return list(self.imap_chunks(func, items))

    def imap_chunks(self, func: Callable[[list[T]], list[R]], items: Sequence[T]) -> Iterator[R]:
        size = chunk_size(len(items), self.workers)
        chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
        if self.workers == 1 or len(chunks) < 2:
            parts: Iterable[list[R]] = map(func, chunks)
        else:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"))
            parts = self._pool.map(func, chunks)
        for chunk, part in zip(chunks, parts):
            if len(part) != len(chunk):
                raise RuntimeError(f"chunk function returned {len(part)} results for {len(chunk)} items")
            yield from part
