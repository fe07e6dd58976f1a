"""sampler: inputs.event_time, agent_id and team (for explain), back-filled from the stored conversations"""

from alembic import op
from sqlalchemy import text

from qastream_sampler.engine import conversation_time
from qastream_shared.events import ConversationIngested

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    conn = op.get_bind()
    # IF NOT EXISTS: 0001 creates the tables from the current definitions, which already have them.
    conn.execute(
        text(
            "ALTER TABLE inputs ADD COLUMN IF NOT EXISTS event_time timestamptz,"
            " ADD COLUMN IF NOT EXISTS agent_id text, ADD COLUMN IF NOT EXISTS team text"
        )
    )
    conn.execute(text("CREATE INDEX IF NOT EXISTS inputs_by_event_time ON inputs (tenant_id, event_time)"))
    rows = conn.execute(
        text('SELECT topic, partition, "offset", body FROM inputs WHERE ce_type = :t AND event_time IS NULL'),
        {"t": ConversationIngested.TYPE},
    )
    for topic, partition, offset, body in rows.all():
        event = ConversationIngested.model_validate_json(body)
        conn.execute(
            text(
                'UPDATE inputs SET event_time = :e, agent_id = :a, team = :m WHERE topic = :t AND partition = :p AND "offset" = :o'
            ),
            {
                "e": conversation_time(event.conversation, event.ingested_at),
                "a": event.conversation.agent_id,
                "m": event.conversation.team,
                "t": topic,
                "p": partition,
                "o": offset,
            },
        )
