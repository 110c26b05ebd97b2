"""Peak memory of a code block, for the loss/gate benchmarks.

tracemalloc does not see torch's allocations and torch has no CPU allocator statistics, so:

* ``profiled_peak_mib`` (primary): the torch profiler's CPU memory timeline, i.e. the peak
  of live tensor bytes during the block; exact, blind to allocator caching.
* ``PeakRSS`` (secondary): a background thread samples the process RSS (psutil) every
  ``interval`` seconds while the block runs; the result is peak RSS minus the RSS just
  before the block. Torch releases the GIL inside its kernels, so the sampler keeps running
  during large ops. It measures memory actually touched, including allocator, thread-pool
  and GEMM-buffer overhead, and can miss short spikes. glibc raises its mmap threshold after
  large frees and then keeps freed blocks in the heap, which inflates RSS several-fold
  (1.2 GiB instead of ~0.15 GiB for the chunked n_squared loss); ``pin_mmap_threshold()``
  at start-up turns that off so RSS follows live memory.
"""

from __future__ import annotations

import ctypes
import json
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def pin_mmap_threshold(nbytes: int = 1 << 20) -> bool:
    """Serve every allocation >= nbytes by mmap (returned to the OS on free); glibc only."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, nbytes))
    except OSError:
        return False


class PeakRSS:
    """``with PeakRSS() as mem: ...`` then ``mem.peak_mib`` (peak RSS growth in MiB)."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.peak_mib = 0.0
        self._process = psutil.Process()
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self._process.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self._base = self._process.memory_info().rss
        self._peak = self._base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        self.peak_mib = (self._peak - self._base) / 2**20


def profiled_peak_mib(fn: Callable[[], T]) -> tuple[T, float]:
    """Run ``fn`` under the torch profiler; peak MiB of tensor memory allocated while it ran.

    Uses the profiler's CPU memory timeline (allocation/free events of every tensor), so
    unlike RSS it is exact and blind to allocator caching; the baseline is the memory live
    when profiling starts (inputs and parameters are not counted, the output is).
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        result = fn()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for CUDA, the CPU path works
        path = Path(tmp) / "memory_timeline.json"
        prof.export_memory_timeline(str(path), device="cpu")
        _, sizes = json.loads(path.read_text())
    totals = [sum(s) for s in sizes]
    return result, (max(totals) - totals[0]) / 2**20 if totals else 0.0
