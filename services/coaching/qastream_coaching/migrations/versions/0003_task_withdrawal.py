"""coaching: tasks.withdrawn (dismissed because its case fell away, not by a person) and tasks.generation (how
many times its id was taken up again after such a dismissal)"""

from alembic import op
from sqlalchemy import text

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    conn = op.get_bind()
    # IF NOT EXISTS: 0001 creates the tables from the current definitions, which already have them.
    conn.execute(text("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS withdrawn boolean NOT NULL DEFAULT false"))
    conn.execute(text("ALTER TABLE tasks ADD COLUMN IF NOT EXISTS generation integer NOT NULL DEFAULT 0"))
