"""reporting: rollup delta tables (appended by each batch, folded into the rollups by compaction), and the
views reads sum (each rollup with its deltas)"""

from alembic import op

from qastream_reporting.tables import deltas, view_ddl

revision = "0003"
down_revision = "0002"


# The rollups of this revision (later ones make their own deltas and views).
ROLLUPS = (
    "score_rollup",
    "category_rollup",
    "root_cause_rollup",
    "agreement_rollup",
    "conversation_rollup",
    "csat_pairs",
    "reviewer_rollup",
)


def upgrade() -> None:
    # 0001 creates every table of the current definitions: on a fresh schema these exist already.
    for name in ROLLUPS:
        deltas[name].create(op.get_bind(), checkfirst=True)
    for name in ROLLUPS:
        op.execute(view_ddl(name))
