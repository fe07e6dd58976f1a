"""A service publishes only what its ServiceSpec declares (the AsyncAPI document is made from it)."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest

from qastream_shared.events import ConversationIngested, CsatRecorded
from qastream_shared.settings import Settings
from qastream_shared.testing import conversation, ingested
from qastream_shared.topics import CONVERSATIONS, REVIEWS
from qastream_shared.unit_of_work import UndeclaredEvent, UnitOfWork


def uow(produces: Any) -> UnitOfWork:
    return UnitOfWork(cast(Any, None), Settings(), cast(Any, None), "x", produces=produces)


def test_a_declared_event_is_queued():
    out = uow({CONVERSATIONS: [ConversationIngested]})
    out.publish(CONVERSATIONS, ingested("acme", conversation("c-1")))
    assert len(out.pending) == 1


@pytest.mark.parametrize(
    "declared",
    [{CONVERSATIONS: [CsatRecorded]}, {REVIEWS: [ConversationIngested]}, {}],
    ids=["other type", "other topic", "nothing"],
)
def test_an_undeclared_event_raises(declared):
    out = uow(declared)
    with pytest.raises(UndeclaredEvent, match=re.escape("qa.conversation.ingested.v1 on qa.conversations")):
        out.publish(CONVERSATIONS, ingested("acme", conversation("c-1")))
    assert not out.pending
