"""A minimal service used to test the platform itself: it records one effect row per event it handles."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Column, DateTime, MetaData, String, Table, Text, func

from qastream_shared.db import array_insert, array_params
from qastream_shared.events import ConversationIngested, Envelope
from qastream_shared.platform_tables import add_platform_tables
from qastream_shared.runtime import ServiceRuntime, ServiceSpec
from qastream_shared.unit_of_work import Handler, Rejected, UnitOfWork

metadata = MetaData()
tables = add_platform_tables(metadata)
effects = Table(
    "effects",
    metadata,
    # No unique constraint on purpose: a double effect must show up as a second row.
    Column("event_id", Text, nullable=False),
    Column("tenant_id", String(64), nullable=False),
    Column("conversation_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now()),
)
tables["effects"] = effects
TOPIC = "qa.conversations"
_EFFECT_COLUMNS = ("event_id", "tenant_id", "conversation_id")
_EFFECTS_INSERT = array_insert(effects, _EFFECT_COLUMNS, suffix="")


def make_handler(runtime: ServiceRuntime) -> Handler:
    poison = os.environ.get("PROBE_POISON")
    reject = os.environ.get("PROBE_REJECT")

    async def handle(uow: UnitOfWork, events: list[Envelope]) -> None:
        rows = []
        for env in events:
            assert isinstance(env.data, ConversationIngested)
            cid = env.data.conversation.conversation_id
            if poison and cid.startswith(poison):
                raise ValueError(f"poisoned conversation {cid}")
            if reject and cid.startswith(reject):
                raise Rejected(env.id, f"rejected conversation {cid}")
            rows.append({"event_id": env.id, "tenant_id": env.tenant, "conversation_id": cid})
        await uow.session.execute(_EFFECTS_INSERT, array_params(_EFFECT_COLUMNS, rows)) if rows else None

    return handle


SPEC = ServiceSpec(
    name="probe",
    metadata=metadata,
    tables=tables,
    migrations=str(Path(__file__).parent / "migrations"),
    consumes=[TOPIC],
    accepts={TOPIC: [ConversationIngested]},
    # The fault tests use the probe as the source of the conversations it then consumes.
    produces={TOPIC: [ConversationIngested]},
    handler=make_handler,
    uses_directory=False,
)
