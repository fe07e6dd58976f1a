"""coaching: tasks.evidence_seq (a fresh number whenever a task's evidence is removed) for the per-process
record of the evidence rows known stored (known_evidence.py)"""

from alembic import op
from sqlalchemy import text

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    conn = op.get_bind()
    # IF NOT EXISTS: 0001 creates the tables from the current definitions, which already have them.
    conn.execute(text("CREATE SEQUENCE IF NOT EXISTS evidence_writes"))
    conn.execute(
        text(
            "ALTER TABLE tasks ADD COLUMN IF NOT EXISTS evidence_seq bigint NOT NULL"
            " DEFAULT nextval('evidence_writes')"
        )
    )
