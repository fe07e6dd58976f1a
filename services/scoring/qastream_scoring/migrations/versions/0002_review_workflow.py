"""scoring: the human review workflow (reviewer pools, assignments, review revisions, disputes, calibration)

0001 creates every table of the current definitions on a fresh schema, so each step here is conditional:
it adds what an existing 0001 schema lacks and is a no-op on a fresh one.
"""

from alembic import op

from qastream_scoring.tables import WORKFLOW_TABLES, reviews

revision = "0002"
down_revision = "0001"

_NEW_REVIEW_COLUMNS = ("revision", "assignment_id", "time_spent_s", "comments", "idempotency_key")


def upgrade() -> None:
    bind = op.get_bind()
    for name in _NEW_REVIEW_COLUMNS:
        column = reviews.c[name]
        ddl = column.type.compile(dialect=bind.dialect)
        default = f" DEFAULT {column.server_default.arg}" if column.server_default is not None else ""  # type: ignore[attr-defined]
        null = "" if column.nullable else " NOT NULL"
        op.execute(f"ALTER TABLE reviews ADD COLUMN IF NOT EXISTS {name} {ddl}{default}{null}")
    for index in reviews.indexes:
        index.create(bind, checkfirst=True)
    for table in WORKFLOW_TABLES:
        table.create(bind, checkfirst=True)
