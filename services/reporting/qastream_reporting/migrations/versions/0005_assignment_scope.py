"""reporting: assignments keep the agent and team their AssignmentChanged events carry; the view joins the
conversation only for rows whose events predate those fields."""

from alembic import op

from qastream_reporting.tables import ASSIGNMENTS_VIEW_DDL

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.execute("DROP VIEW IF EXISTS assignments_with_scope")
    op.execute(
        "ALTER TABLE assignments ADD COLUMN IF NOT EXISTS agent_id VARCHAR(200), "
        "ADD COLUMN IF NOT EXISTS team VARCHAR(200)"
    )
    op.execute(ASSIGNMENTS_VIEW_DDL)
