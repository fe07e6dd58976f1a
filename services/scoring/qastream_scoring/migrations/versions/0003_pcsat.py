"""scoring: the predicted satisfaction (pCSAT) of each AutoQA review

0001 creates every table of the current definitions on a fresh schema, so this adds the column only where an
older schema lacks it.
"""

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.execute("ALTER TABLE reviews ADD COLUMN IF NOT EXISTS pcsat JSONB")
