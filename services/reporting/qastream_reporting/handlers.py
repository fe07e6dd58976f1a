"""Every QA topic → the reporting projection. Thin: admission (ServiceSpec.accepts) has already let
through only the declared event types of known tenants."""

from __future__ import annotations

from qastream_reporting.deltas import Compaction
from qastream_reporting.projection import project
from qastream_shared.events import Envelope, PartitionHeartbeat
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import Handler, UnitOfWork


def make_handler(runtime: ServiceRuntime) -> Handler:
    compaction = Compaction()

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        # Heartbeats pace the sampler's watermark; nothing reported depends on them.
        reported = [e for e in events if not isinstance(e.data, PartitionHeartbeat)]
        await project(uow.session, reported, compaction)

    return handle
