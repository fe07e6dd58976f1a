"""reporting: AutoQA-vs-human score pairs (Krippendorff's α), risk alerts, and assignments read with their
conversation's agent and team. Figures from before this revision fill in on `qa reporting rebuild`."""

from alembic import op

from qastream_reporting.tables import deltas, risk_alerts, rollups, view_ddl

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    # 0001 creates every table of the current definitions: on a fresh schema these exist already.
    bind = op.get_bind()
    for table in (rollups["agreement_pairs"], deltas["agreement_pairs"], risk_alerts):
        table.create(bind, checkfirst=True)
    op.execute(view_ddl("agreement_pairs"))
    # The assignment's agent and team come from its conversation now (assignments_with_scope).
    op.execute("ALTER TABLE assignments DROP COLUMN IF EXISTS agent_id, DROP COLUMN IF EXISTS team")
    op.execute(
        "CREATE OR REPLACE VIEW assignments_with_scope AS SELECT a.tenant_id, a.assignment_id, "
        "a.conversation_id, a.reviewer_id, a.action, a.inclusion_probability, a.created_at, a.changed_at, "
        "a.day, c.agent_id, c.team FROM assignments a LEFT JOIN conversations c "
        "ON c.tenant_id = a.tenant_id AND c.conversation_id = a.conversation_id"
    )
