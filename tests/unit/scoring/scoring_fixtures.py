from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qastream_shared.conversation import Conversation, Role, Turn

T0 = datetime(2024, 1, 1, 9, 0, tzinfo=UTC)


def convo(*turns: tuple[str, str], gap_s: float = 10.0, **kw: object) -> Conversation:
    """A conversation from (role, text) pairs, one turn every gap_s seconds."""
    return Conversation.model_validate(
        {
            "conversation_id": "c1",
            "turns": [
                Turn(role=Role(r), text=t, ts=T0 + timedelta(seconds=i * gap_s))
                for i, (r, t) in enumerate(turns)
            ],
            **kw,
        }
    )
