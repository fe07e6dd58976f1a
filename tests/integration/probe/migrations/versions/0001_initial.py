"""probe tables"""

from alembic import op

from tests.integration.probe import metadata

revision = "0001"
down_revision = None


def upgrade() -> None:
    metadata.create_all(op.get_bind())
