"""Retention: the parts of one tenant's state that no input still to come can need, dropped so that memory
stays flat over months of traffic instead of growing with history.

The store calls `prune` with a horizon H = min(watermark of qa.conversations, watermark of qa.reviews) -
late_window - grace. Every input still to come on any partition is then at or after H + late_window + grace
on its partition, and the store ignores feedback and reviews that arrive after their partition has passed
their conversation's event time + late_window + grace (`past_window`), in pruned and unpruned runs alike.
So dropping a conversation's facts before H never changes a decision. What goes:

* pools whose every slot has closed: closing made all their decisions, and a conversation of a closed
  period can only arrive late (its partition is past the period's end + grace), so it joins no pool;
* the facts and sample-log entries of conversations older than H that are in no open pool and no pending
  decision. A duplicate of such a conversation arriving later is late and only repeats its per-conversation
  decisions, which the stored sample log already holds (they are not published twice).

`agent_first_seen` stays: one row per agent, bounded by the workforce, and needed by `new_agent` for ever.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from qastream_sampler.engine.state import ConversationFacts, SamplerConfig, SamplerState


def past_window(facts: ConversationFacts, partition_high: datetime | None, config: SamplerConfig) -> bool:
    """Whether an input about this conversation arrives too late to count: its partition has already passed
    the conversation's late window by more than the grace (a property of that partition's order alone)."""
    return (
        partition_high is not None and partition_high > facts.event_time + config.late_window + config.grace
    )


def horizon(
    conversations_w: datetime | None, reviews_w: datetime | None, config: SamplerConfig
) -> datetime | None:
    if conversations_w is None or reviews_w is None:
        return None
    return min(conversations_w, reviews_w) - config.late_window - config.grace


def prune(state: SamplerState, before: datetime) -> int:
    """Drops closed pools, and the facts and log entries of conversations older than `before` that nothing
    open refers to. Returns how many conversations went."""
    held: set[str] = {cid for cid, _ in state.pending}
    for key, pool in list(state.pools.items()):
        if pool.closed_slots >= pool.slots:
            del state.pools[key]
        else:
            held.update(pool.candidates)
    gone = {cid for cid, f in state.conversations.items() if f.event_time < before and cid not in held}
    if not gone:
        return 0
    for cid in gone:
        del state.conversations[cid]
    state.log = {k: d for k, d in state.log.items() if k[0] not in gone}
    return len(gone)


PRUNE_EVERY = timedelta(hours=1)  # of event time: each prune walks the whole (bounded) state
