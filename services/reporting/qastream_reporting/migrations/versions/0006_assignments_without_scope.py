"""reporting: a partial index of the assignments without their own agent and team (the rows
assignments_with_scope joins to their conversation)."""

from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.execute(
        "CREATE INDEX IF NOT EXISTS assignments_without_scope ON assignments (tenant_id, conversation_id) "
        "WHERE agent_id IS NULL AND team IS NULL"
    )
