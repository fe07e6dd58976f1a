"""The cyclic garbage collector around consumed batches: one rule for every service's consumers."""

from __future__ import annotations

import contextlib
import functools
import gc
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import Histogram

# A batch keeps hundreds of thousands of objects alive until it commits (decoded events, rows, results), so
# they survive young collections and the default gen0 threshold (700) promotes them into the old generation,
# which then triggers full collections that walk the whole heap: in the scoring service that was ~0.4 ms per
# event, as much as the scoring itself. A larger gen0 threshold lets a batch die young instead, and freezing
# what start-up allocated (after collecting its garbage) keeps it out of every later full collection.
GC_THRESHOLDS = (50_000, 20, 100)

# A collection holds the whole process, its event loop included: every record in flight waits it out.
GC_PAUSE = Histogram(
    "qa_gc_pause_seconds",
    "Cyclic garbage collections, by generation: how long each held the process",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class _Timing:
    started = 0.0


def _time_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _Timing.started = time.perf_counter()
    else:
        GC_PAUSE.labels(str(info["generation"])).observe(time.perf_counter() - _Timing.started)


@functools.cache  # once per process, whatever it runs (a consumer or not: ingest's API and relay)
def time_collections() -> None:
    gc.callbacks.append(_time_collection)


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
