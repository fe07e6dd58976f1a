"""reporting: published scorecard versions, for shadow scoring"""

from alembic import op

from qastream_reporting.tables import scorecards

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    # 0001 creates every table of the current definitions: on a fresh schema this one exists already.
    scorecards.create(op.get_bind(), checkfirst=True)
