"""scoring: calibration sessions get an optional name (conditional: 0001 may have created it already)"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.execute("ALTER TABLE calibration_sessions ADD COLUMN IF NOT EXISTS name text")
