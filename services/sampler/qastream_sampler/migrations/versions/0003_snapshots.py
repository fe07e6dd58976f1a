"""sampler: state snapshots (snapshots, snapshot_mark), so that inputs they cover can be compacted away"""

from alembic import op

from qastream_sampler.tables import metadata, snapshot_mark, snapshots

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # checkfirst: 0001 creates the tables from the current definitions, which already have these.
    metadata.create_all(op.get_bind(), tables=[snapshots, snapshot_mark], checkfirst=True)
