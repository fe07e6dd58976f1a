"""Every QA topic → the reporting projection. Thin: admission (ServiceSpec.accepts) has already let
through only the declared event types of known tenants."""

from __future__ import annotations

from qastream_reporting.deltas import Compaction
from qastream_reporting.projection import project
from qastream_shared.events import Envelope
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import Handler, UnitOfWork


def make_handler(runtime: ServiceRuntime) -> Handler:
    compaction = Compaction()

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        await project(uow.session, events, compaction)

    return handle
