"""reporting: rollup delta tables (appended by each batch, folded into the rollups by compaction), and the
views reads sum (each rollup with its deltas)"""

from alembic import op

from qastream_reporting.tables import deltas, view_ddl

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    # 0001 creates every table of the current definitions: on a fresh schema these exist already.
    for table in deltas.values():
        table.create(op.get_bind(), checkfirst=True)
    for name in deltas:
        op.execute(view_ddl(name))
