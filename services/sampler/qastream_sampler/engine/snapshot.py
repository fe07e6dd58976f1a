"""One tenant's engine state as bytes and back, for the store's snapshots (`snapshot_store`).

Plans and the auto policy are left out: they live in their own tables and are installed on load, as on a
rebuild. The rest is pickled: every class in it is this package's own plain data (dataclasses, a NamedTuple,
an enum, datetimes), and the bytes are written and read only by the sampler, in its own schema. `FORMAT`
names their layout: a change to a field of `SamplerState` or of a class it holds must bump it, and a
snapshot of another format is refused rather than misread (`SnapshotFormatError`).
"""

from __future__ import annotations

import pickle
from dataclasses import fields
from typing import Any

from qastream_sampler.engine.state import SamplerState

FORMAT = 1
_LEFT_OUT = {"plans", "plan_versions", "auto_policy", "_active"}
_KEPT = [f.name for f in fields(SamplerState) if f.name not in _LEFT_OUT]


class SnapshotFormatError(RuntimeError):
    """A stored snapshot written in a layout this code does not read."""


def dump(state: SamplerState) -> bytes:
    return pickle.dumps({name: getattr(state, name) for name in _KEPT}, protocol=pickle.HIGHEST_PROTOCOL)


def load(body: bytes) -> SamplerState:
    kept: dict[str, Any] = pickle.loads(body)  # the sampler's own bytes: see the module doc
    return SamplerState(**kept)
