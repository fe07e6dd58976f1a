"""Synthetic conversations and a partitioned replay driver for the sampler's unit tests."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeAlias

from qastream_sampler.decisions import Decision
from qastream_sampler.engine import (
    SamplerConfig,
    SamplerState,
    close,
    observe_conversation,
    observe_csat,
    observe_update,
    watermark,
)
from qastream_shared.conversation import Conversation
from qastream_shared.events import ConversationIngested, ConversationUpdated, CsatRecorded

TENANT = "t1"
T0 = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday
CHANNELS = ("chat", "email", "voice")


def conversation(
    cid: str,
    ended_at: datetime,
    *,
    agent: str | None = "a1",
    team: str | None = "red",
    channel: str = "chat",
    **extra: object,
) -> ConversationIngested:
    conv = Conversation.model_validate(
        {
            "conversation_id": cid,
            "channel": channel,
            "agent_ids": [agent] if agent else [],
            "team": team,
            "started_at": ended_at - timedelta(minutes=10),
            "ended_at": ended_at,
            "turns": [],
            **extra,
        }
    )
    return ConversationIngested(conversation=conv, ingested_at=ended_at)


def population(n: int, *, agents: int, weeks: int, seed: int) -> list[ConversationIngested]:
    """`n` conversations over `weeks` weeks, agent volumes skewed (some agents busy, some nearly idle)."""
    rng = random.Random(seed)
    weights = [rng.paretovariate(1.5) for _ in range(agents)]
    span = timedelta(weeks=weeks).total_seconds()
    out = []
    for i in range(n):
        a = rng.choices(range(agents), weights)[0]
        t = T0 + timedelta(seconds=rng.random() * span)
        out.append(
            conversation(f"c{i:06d}", t, agent=f"a{a:03d}", team=f"team{a % 7}", channel=CHANNELS[i % 3])
        )
    out.sort(key=lambda e: e.ingested_at)
    return out


def partition_of(conversation_id: str, partitions: int = 3) -> int:
    digest = hashlib.blake2b(f"{TENANT}:{conversation_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") % partitions


Event: TypeAlias = ConversationIngested | CsatRecorded | ConversationUpdated


def event_conversation_id(e: Event) -> str:
    return e.conversation.conversation_id if isinstance(e, ConversationIngested) else e.conversation_id


def interleave(partitions: Sequence[Sequence[Event]], rng: random.Random | None) -> list[tuple[int, Event]]:
    """One consumer's view: partitions merged in a random order that keeps each partition's own order.

    With rng None the partitions are read one after the other (the most extreme interleaving).
    """
    cursors = [0] * len(partitions)
    out: list[tuple[int, Event]] = []
    while True:
        live = [p for p in range(len(partitions)) if cursors[p] < len(partitions[p])]
        if not live:
            return out
        p = rng.choice(live) if rng else live[0]
        take = rng.randint(1, 50) if rng else len(partitions[p])
        for e in partitions[p][cursors[p] : cursors[p] + take]:
            out.append((p, e))
        cursors[p] += take


@dataclass
class Run:
    state: SamplerState
    decisions: list[Decision]


def replay(
    state: SamplerState,
    stream: Sequence[tuple[int, Event]],
    *,
    partitions: int = 3,
    config: SamplerConfig,
    close_every: int = 1,
) -> Run:
    """Feed a stream as the service would: track each partition's high, close at the global watermark."""
    highs: dict[int, datetime] = {}
    decisions: list[Decision] = []
    for i, (p, e) in enumerate(stream):
        if isinstance(e, ConversationIngested):
            decisions += observe_conversation(state, e, partition_high=highs.get(p), config=config)
            t = e.conversation.ended_at
            assert t is not None
            highs[p] = max(highs.get(p, t), t)
        elif isinstance(e, CsatRecorded):
            decisions += observe_csat(state, e, config=config)
        else:
            decisions += observe_update(state, e, config=config)
        if i % close_every == 0:
            w = watermark(highs, partitions)
            if w is not None:
                decisions += close(state, w, config=config)
    w = watermark(highs, partitions)
    if w is not None:
        decisions += close(state, w, config=config)
    return Run(state, decisions)
