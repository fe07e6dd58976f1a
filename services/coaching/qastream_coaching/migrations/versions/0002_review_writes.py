"""coaching: reviews.write_seq (a number per insert or update of a row) for the history cache's check"""

from alembic import op
from sqlalchemy import text

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    conn = op.get_bind()
    # IF NOT EXISTS: 0001 creates the tables from the current definitions, which already have them.
    conn.execute(text("CREATE SEQUENCE IF NOT EXISTS review_writes"))
    conn.execute(
        text(
            "ALTER TABLE reviews ADD COLUMN IF NOT EXISTS write_seq bigint NOT NULL"
            " DEFAULT nextval('review_writes')"
        )
    )
    conn.execute(text("DROP INDEX IF EXISTS reviews_by_agent"))
    conn.execute(
        text("CREATE INDEX reviews_by_agent ON reviews (tenant_id, agent_id, at) INCLUDE (write_seq)")
    )
