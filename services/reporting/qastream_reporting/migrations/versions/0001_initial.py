"""reporting: initial tables (created from the table definitions of this first release)"""

from alembic import op

from qastream_reporting.tables import metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
