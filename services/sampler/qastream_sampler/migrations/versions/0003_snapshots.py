"""sampler: state snapshots (snapshots, snapshot_mark), so that inputs they cover can be compacted away"""

from alembic import op
from sqlalchemy import Column, LargeBinary, MetaData, PrimaryKeyConstraint, Table, Text

from qastream_sampler.tables import metadata, snapshot_mark

revision = "0003"
down_revision = "0002"

# As this release defined it: 0004 replaces it with snapshot_chunks.
snapshots = Table(
    "snapshots",
    MetaData(),
    Column("tenant_id", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    PrimaryKeyConstraint("tenant_id"),
)


def upgrade() -> None:
    # checkfirst: 0001 creates the tables from the current definitions, which already have snapshot_mark.
    snapshots.create(op.get_bind(), checkfirst=True)
    metadata.create_all(op.get_bind(), tables=[snapshot_mark], checkfirst=True)
