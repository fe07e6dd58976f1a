"""All five services as separate processes on the real broker and database, for end-to-end and fault tests.

Not a conftest. `Pipeline` starts `python -m qastream_<name>` for each service, each in its own schema
(`<base>_<name>`) on the test's own topics, creates a tenant through ingest, installs a random sampling
plan, a reviewer pool and a below-pass-mark coaching rule over HTTP, posts conversations through ingest's
HTTP API, and reads the settled state back through each service's API (`snapshot`).

What the plan and rule imply is recomputed independently (`expected_manual`, `Snapshot.check`): the sampler's
pure `uniform()` draw for the plan, and the reviews' own `passed` for the rule.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text

from qastream_ingest import service as ingest_service
from qastream_ingest.app import SPEC as INGEST
from qastream_ingest.cli import _shifted
from qastream_sampler.decisions import uniform
from qastream_shared.conversation import Conversation
from qastream_shared.db import create_engine
from qastream_shared.events import Role
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.testing import eventually, star_records
from tests.integration.conftest import Proc
from tests.integration.live_service import LiveService

NAMES = ("ingest", "sampler", "scoring", "coaching", "reporting")
TENANT = "e2e"
PLAN_ID, RATE, SEED = "random-20", 0.2, 7
PLAN = {"plan_id": PLAN_ID, "kind": "random", "rate": RATE, "seed": SEED}
RULE = {"rule_id": "below-pass", "trigger": "below_pass_mark", "title": "Review below the pass mark"}
REVIEWERS = {"reviewers": [{"reviewer_id": "rev-1"}, {"reviewer_id": "rev-2"}]}
AGENTS = 6

Spawner = Callable[..., Proc]


def conversations(n: int) -> list[dict[str, Any]]:
    """`n` real STAR conversations, moved to the last day (reporting's default window) and given agents."""
    convs = [Conversation.model_validate(r) for r in star_records(n)]
    newest = max(t.ts for c in convs for t in c.turns if t.ts is not None)
    shift = datetime.now(UTC) - newest
    out = []
    for i, c in enumerate(convs):
        moved = _shifted(c, shift).model_copy(update={"agent_ids": [f"agent-{i % AGENTS}"], "team": "team-a"})
        out.append(moved.model_dump(mode="json", exclude_none=True))
    return out


def expected_manual(conversation_ids: Iterable[str]) -> set[str]:
    """The conversations the random plan picks: the sampler's own pure draw against the plan's rate."""
    return {cid for cid in conversation_ids if uniform(TENANT, PLAN_ID, 1, cid, SEED) < RATE}


def schema_of(settings: Settings, name: str) -> str:
    return f"{settings.db_schema}_{name}"


@dataclass(frozen=True)
class Snapshot:
    """The settled state as the services' APIs show it, keyed by conversation so two runs compare."""

    reviews: tuple[
        tuple[str, int, float | None, bool | None], ...
    ]  # conversation, scorecard version, score, passed
    samples: tuple[tuple[str, str, str, float], ...]  # conversation, purpose, plan, inclusion probability
    assignments: tuple[str, ...]  # conversation of each assignment
    tasks: tuple[tuple[str, str, tuple[str, ...]], ...]  # task id, agent, evidence conversations
    quality: tuple[int, int, float | None, float | None]  # reviews, scored, IQS, pass rate

    def check(self, conversation_ids: list[str]) -> None:
        """The snapshot is what the inputs, the plan and the rule imply: nothing lost, nothing doubled."""
        per_conv = Counter((r[0], r[1]) for r in self.reviews)
        versions = {r[1] for r in self.reviews}
        assert set(per_conv) == {(c, v) for c in conversation_ids for v in versions}, (
            "an auto review is missing"
        )
        assert max(per_conv.values()) == 1, "a conversation has two auto reviews of one scorecard version"
        manual = expected_manual(conversation_ids)
        assert sorted(s[0] for s in self.samples if s[1] == "manual") == sorted(manual)
        assert sorted(s[0] for s in self.samples if s[1] == "auto") == sorted(conversation_ids)
        assert all(s[3] == RATE for s in self.samples if s[1] == "manual")
        assert sorted(self.assignments) == sorted(manual), "assignments differ from the manual samples"
        failed = sorted(r[0] for r in self.reviews if r[3] is False)
        evidence = sorted(c for t in self.tasks for c in t[2])
        assert evidence == failed, "coaching evidence differs from the reviews below the pass mark"
        assert len({t[0] for t in self.tasks}) == len(self.tasks)
        scores = [r[2] for r in self.reviews if r[2] is not None]
        passed = [r[3] for r in self.reviews if r[3] is not None]
        reviews, scored, iqs, pass_rate = self.quality
        assert (reviews, scored) == (len(self.reviews), len(scores))
        assert iqs is not None and abs(iqs - sum(scores) / len(scores)) < 1e-9, (iqs, scores)
        assert pass_rate is not None and abs(pass_rate - sum(passed) / len(passed)) < 1e-9


@dataclass
class Pipeline:
    settings: Settings
    spawn: Spawner
    services: dict[str, list[LiveService]] = field(default_factory=dict)
    admin: dict[str, str] = field(default_factory=dict)
    posted: list[str] = field(default_factory=list)

    def settings_of(self, name: str, suffix: str = "") -> Settings:
        return self.settings.model_copy(update={"db_schema": schema_of(self.settings, name) + suffix})

    def live(self, name: str, suffix: str = "") -> LiveService:
        """A process of `name`; with `suffix`, in a schema of its own, so a new reader of the log (offset 0)."""
        s = self.settings_of(name, suffix)
        return LiveService(f"qastream_{name}", lambda args, env: self.spawn(args, env, s=s))

    async def start(self, name: str) -> LiveService:
        """One more process of `name` (a replica when one runs already)."""
        svc = self.live(name)
        await svc.start(within=180)
        self.services.setdefault(name, []).append(svc)
        return svc

    async def restart(self, name: str, index: int = 0) -> None:
        old = self.services[name][index]
        svc = LiveService(old.module, old.launch, old.port)
        await svc.start(within=180)
        self.services[name][index] = svc

    def url(self, name: str) -> str:
        return self.services[name][0].url

    async def up(self) -> None:
        await asyncio.gather(*(self.start(name) for name in NAMES))  # imports dominate: overlap them
        runtime = ServiceRuntime(INGEST, self.settings_of("ingest"))
        try:
            async with runtime.unit_of_work() as uow:
                await ingest_service.create_tenant(uow, TENANT, "End to end")
                _, key = await ingest_service.create_key(uow, TENANT, Role.admin)
        finally:
            await runtime.engine.dispose()
        self.admin = {"Authorization": f"Bearer {key}"}
        await asyncio.gather(
            *(
                svc.wait_key(_authed(name), self.admin, within=120)
                for name in NAMES
                for svc in self.services[name]
            )
        )
        async with httpx.AsyncClient(timeout=30, headers=self.admin) as http:
            await _ok(await http.post(f"{self.url('sampler')}/v1/plans", json=PLAN))
            await _ok(await http.put(f"{self.url('scoring')}/v1/reviewers", json=REVIEWERS))
            await _ok(await http.post(f"{self.url('coaching')}/v1/rules", json=RULE))

    async def post(self, convs: list[dict[str, Any]], batch: int = 20) -> None:
        async with httpx.AsyncClient(base_url=self.url("ingest"), timeout=60, headers=self.admin) as http:
            for i in range(0, len(convs), batch):
                chunk = convs[i : i + batch]
                r = await http.post("/v1/conversations", json={"conversations": chunk})
                assert r.status_code in (200, 202), r.text
                assert r.json()["rejected"] == 0, r.text
                self.posted.extend(c["conversation_id"] for c in chunk)

    async def pending_outbox(self) -> int:
        """Events committed by some service and not yet on Kafka."""
        total = 0
        engine = create_engine(self.settings, "public")
        try:
            async with engine.connect() as conn:
                for name in NAMES:
                    q = f'SELECT count(*) FROM "{schema_of(self.settings, name)}".outbox WHERE published_at IS NULL'
                    total += int((await conn.execute(text(q))).scalar_one())
        finally:
            await engine.dispose()
        return total

    async def snapshot(self) -> Snapshot:
        async with httpx.AsyncClient(timeout=60, headers=self.admin) as http:
            reviews = await _all(http, f"{self.url('scoring')}/v1/reviews")
            samples = _body(await http.get(f"{self.url('sampler')}/v1/samples", params={"limit": 1000}))
            assignments = await _all(http, f"{self.url('scoring')}/v1/assignments")
            tasks = []
            by_review = {r["review_id"]: r["conversation_id"] for r in reviews}
            for t in await _all(http, f"{self.url('coaching')}/v1/tasks"):
                full = _body(await http.get(f"{self.url('coaching')}/v1/tasks/{t['task_id']}"))
                convs = tuple(sorted(by_review.get(e["review_id"], e["review_id"]) for e in full["evidence"]))
                tasks.append((t["task_id"], t["agent_id"], convs))
            q = _body(await http.get(f"{self.url('reporting')}/v1/metrics/quality"))["items"]
        quality = (
            (q[0]["reviews"], q[0]["scored"], q[0]["iqs"], q[0]["pass_rate"]) if q else (0, 0, None, None)
        )
        return Snapshot(
            reviews=tuple(
                sorted(
                    (r["conversation_id"], r["scorecard_version"], r["score"], r["passed"])
                    for r in reviews
                    if r["kind"] == "auto"
                )
            ),
            samples=tuple(
                sorted(
                    (s["conversation_id"], s["purpose"], s["plan_id"], s["inclusion_probability"])
                    for s in samples
                )
            ),
            assignments=tuple(sorted(a["conversation_id"] for a in assignments)),
            tasks=tuple(sorted(tasks)),
            quality=quality,
        )

    async def settled(self, within: float = 300) -> Snapshot:
        """Awaits the state every posted conversation implies, with every outbox drained; returns it."""
        n = len(self.posted)
        manual = len(expected_manual(self.posted))

        async def done() -> Snapshot | None:
            try:
                snap = await self.snapshot()
            except (httpx.TransportError, NotReady):
                return None  # a service is restarting, or has not yet heard of the key
            complete = (
                len(snap.reviews) >= n
                and len(snap.samples) >= n + manual
                and len(snap.assignments) >= manual
                and snap.quality[0] >= n
                and sum(len(t[2]) for t in snap.tasks) >= sum(1 for r in snap.reviews if r[3] is False)
            )
            return snap if complete and await self.pending_outbox() == 0 else None

        return await eventually(done, within=within, every=0.5)

    def stop(self) -> None:
        for procs in self.services.values():
            for svc in procs:
                svc.stop()


def _authed(name: str) -> str:
    return {
        "ingest": "/v1/tenant",
        "sampler": "/v1/samples",
        "scoring": "/v1/scorecards",
        "coaching": "/v1/tasks",
        "reporting": "/v1/metrics/quality",
    }[name]


async def _ok(r: httpx.Response) -> None:
    assert r.status_code in (200, 201), f"{r.request.method} {r.request.url}: {r.status_code} {r.text}"


class NotReady(Exception):
    """A service answered 401 (the key has not reached it yet) or 503 (still starting)."""


def _body(r: httpx.Response) -> Any:
    if r.status_code in (401, 503):
        raise NotReady(f"{r.request.url}: {r.status_code}")
    assert r.status_code == 200, f"{r.request.url}: {r.status_code} {r.text}"
    return r.json()


async def _all(http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        body = _body(await http.get(url, params={"limit": 100, **({"cursor": cursor} if cursor else {})}))
        items.extend(body["items"])
        cursor = body.get("next_cursor")
        if not cursor:
            return items


class Clock:
    """Time from a fault until the pipeline is settled again, printed in the test output.

    `back()` marks when the faulty part is back (the restarted process ready, the server up), so the report
    tells the process start-up (slow on a busy machine) from the catching up that follows.
    """

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.started = time.monotonic()
        self.back_at: float | None = None

    def back(self) -> None:
        self.back_at = time.monotonic()

    def done(self) -> float:
        took = time.monotonic() - self.started
        split = f" (back after {self.back_at - self.started:.1f} s)" if self.back_at is not None else ""
        print(f"\nrecovery[{self.fault}]: {took:.1f} s from the fault to a settled pipeline{split}")
        return took
