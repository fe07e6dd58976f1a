"""ingest: conversations.event_time (for the partition heartbeats), back-filled from the stored bodies"""

from alembic import op
from sqlalchemy import text

from qastream_shared.events import ConversationIngested, conversation_time

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    conn = op.get_bind()
    # IF NOT EXISTS: 0001 creates the tables from the current definitions, which already have them.
    conn.execute(text("ALTER TABLE conversations ADD COLUMN IF NOT EXISTS event_time timestamptz"))
    conn.execute(text("CREATE INDEX IF NOT EXISTS conversations_by_event_time ON conversations (event_time)"))
    rows = conn.execute(
        text("SELECT tenant_id, conversation_id, body FROM conversations WHERE event_time IS NULL")
    )
    for tenant, cid, body in rows.all():
        event = ConversationIngested.model_validate_json(body)
        conn.execute(
            text("UPDATE conversations SET event_time = :e WHERE tenant_id = :t AND conversation_id = :c"),
            {"e": conversation_time(event.conversation, event.ingested_at), "t": tenant, "c": cid},
        )
