"""sampler: snapshots in JSON chunks (snapshot_chunks, format 2) instead of one pickle per tenant (format 1)

A format-1 snapshot is converted, not dropped: the inputs it covers have been compacted away, so it is the
only record of that state.
"""

import pickle
from typing import Any

from alembic import op
from sqlalchemy import text

from qastream_sampler.engine import SamplerState
from qastream_sampler.engine import snapshot as codec
from qastream_sampler.snapshot_store import Mark, mark_body
from qastream_sampler.tables import metadata, snapshot_chunks
from qastream_shared.events import ReviewSubmitted

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    conn = op.get_bind()
    metadata.create_all(conn, tables=[snapshot_chunks], checkfirst=True)
    mark = conn.execute(text("SELECT format, body FROM snapshot_mark WHERE format = 1")).one_or_none()
    if mark is not None:
        # Format 1 is the sampler's own pickles, written by this code's dataclasses in its own schema.
        own: dict[str, Any] = pickle.loads(mark.body)
        parked = {
            key: [(ReviewSubmitted.model_validate_json(review), high) for review, high in waiting]
            for key, waiting in own["parked"].items()
        }
        body = mark_body(Mark(own["cursors"], own["highs"], own["review_highs"], own["pruned_to"], parked))
        for tenant, state in conn.execute(text("SELECT tenant_id, body FROM snapshots")).all():
            st = SamplerState(**pickle.loads(state))  # its tenant_id is in it
            for seq, (part, chunk) in enumerate(codec.chunks(st)):
                conn.execute(
                    snapshot_chunks.insert(), {"tenant_id": tenant, "seq": seq, "part": part, "body": chunk}
                )
        conn.execute(text("UPDATE snapshot_mark SET format = :f, body = :b"), {"f": codec.FORMAT, "b": body})
    conn.execute(text("DROP TABLE IF EXISTS snapshots"))
