"""The cyclic garbage collector around consumed batches: one rule for every service's consumers."""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Iterator

# A batch keeps hundreds of thousands of objects alive until it commits (decoded events, rows, results), so
# they survive young collections and the default gen0 threshold (700) promotes them into the old generation,
# which then triggers full collections that walk the whole heap: in the scoring service that was ~0.4 ms per
# event, as much as the scoring itself. A larger gen0 threshold lets a batch die young instead, and freezing
# what start-up allocated (after collecting its garbage) keeps it out of every later full collection.
GC_THRESHOLDS = (50_000, 20, 100)


@functools.cache  # once per process, however many consumers it runs
def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class _InFlight:
    batches = 0  # consumers of this process inside `collector_paused`
    collector_was_enabled = False


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection while a batch is processed and committed (the next one is decoded meanwhile):
    each would walk the batch's live events and results again. Refcounting still frees everything acyclic
    at once; what the batch leaves in cycles is collected after it. Counted, for a process running several
    consumers: the collector comes back when the last of them is between batches."""
    if _InFlight.batches == 0:
        _InFlight.collector_was_enabled = gc.isenabled()
        gc.disable()
    _InFlight.batches += 1
    try:
        yield
    finally:
        _InFlight.batches -= 1
        if _InFlight.batches == 0 and _InFlight.collector_was_enabled:
            gc.enable()
