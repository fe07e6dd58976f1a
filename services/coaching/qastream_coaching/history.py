"""Per-process copies of agents' stored reviews, so a batch does not read and parse again the window of
history of every agent it touches (that was most of what a batch cost).

An agent's reviews come from every partition of qa.reviews (they are keyed by conversation), so other
replicas write them too: the copy is checked, not trusted. Every insert or update of a stored review takes a
fresh `write_seq` from one sequence, a review's event time never changes and reviews are never deleted, so
the rows of an agent in a window are the ones held exactly when their count and sum of write_seq are. One
grouped query per batch compares them for the batch's agents; only the agents that differ, or are not held
far enough back, are read again. A batch that rolls back drops every agent it touched.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from qastream_coaching import fact_store
from qastream_coaching.fact_store import StoredReview
from qastream_coaching.published import utc
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import UnitOfWork

# Agents held per process (least recently used let go first): ~50 reviews each in a 30-day window.
MAX_AGENTS = 50_000
# How much further back than its batch needs an agent's copy is kept: the partitions of a batch are not
# equally far in event time, so the next batch may start a little earlier than this one, and an agent held
# from exactly this batch's start would be read again.
SLACK_S = 7 * 86_400.0


@dataclass
class _Held:
    since: float  # every stored review of the agent after this event time is in `reviews`
    reviews: dict[str, StoredReview]


class HistoryCache:
    def __init__(self, max_agents: int = MAX_AGENTS) -> None:
        self.max_agents = max_agents
        self._held: OrderedDict[tuple[str, str], _Held] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    async def window(
        self, uow: UnitOfWork, tenant_id: str, written: Iterable[StoredReview], since: float
    ) -> dict[str, dict[str, StoredReview]]:
        """agent → review id → every stored review of it after `since` (event time), for the agents of
        `written`: the reviews this batch has just stored, in the batch's transaction. Read-only for callers."""
        own: dict[str, list[StoredReview]] = {}
        for r in written:
            own.setdefault(r.fact.agent_id, []).append(r)
        touched = {(tenant_id, a) for a in own}
        uow.on_rollback.append(lambda: self._drop(touched))
        held: dict[str, _Held] = {}
        for agent, reviews in own.items():
            h = self._held.get((tenant_id, agent))
            if h is not None and h.since <= since:
                h.reviews.update((r.fact.review_id, r) for r in reviews)
                held[agent] = h
        stale = set(own) - set(held)
        if held:
            stored = await fact_store.writes(uow.session, tenant_id, held, utc(since))
            for agent, h in held.items():
                if since - h.since > SLACK_S:  # reviews older than any batch is likely to need are let go
                    h.since = since - SLACK_S
                    h.reviews = {i: r for i, r in h.reviews.items() if r.fact.at > h.since}
                n = total = 0
                for r in h.reviews.values():
                    if r.fact.at > since:
                        n += 1
                        total += r.write_seq
                if stored.get(agent, (0, 0)) != (n, total):
                    stale.add(agent)
        if stale:
            loaded = await fact_store.histories(uow.session, tenant_id, stale, utc(since))
            for agent in stale:
                self._held[(tenant_id, agent)] = _Held(
                    since, {r.fact.review_id: r for r in loaded.get(agent, [])}
                )
        out: dict[str, dict[str, StoredReview]] = {}
        for agent in own:
            key = (tenant_id, agent)
            self._held.move_to_end(key)
            out[agent] = self._held[key].reviews
        while len(self._held) > self.max_agents:
            self._held.popitem(last=False)
        return out

    def _drop(self, keys: set[tuple[str, str]]) -> None:
        for key in keys:
            self._held.pop(key, None)


def history_of(runtime: ServiceRuntime) -> HistoryCache:
    found = runtime.components.get("history_cache")
    if not isinstance(found, HistoryCache):
        found = runtime.components["history_cache"] = HistoryCache()
    return found
