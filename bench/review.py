"""Human review latency: p99 of GET /v1/assignments/next, of a draft save and of a submit, through one
scoring process, with --reviews reviews and --assignments open assignments stored for one tenant.

    uv run python -m bench.review [--reviews 1000000] [--assignments 100000] [--ops 1000]
    uv run python -m bench.review --size smoke        # 2,000 reviews, 200 assignments, 30 ops

Uses KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when both are set, else starts (or reuses) the launcher's
local stack. Everything runs in a fresh topic prefix and schema, dropped at the end.
Untimed set-up: a tenant and --reviewers reviewer keys on qa.tenants; the service's own migrations; then
bulk SQL (INSERT … SELECT generate_series) of the reviews (one in five manual), the open assignments (one in
ten in the unassigned pool, the rest spread over the reviewers, except every tenth reviewer, who has none
and so claims from the pool) and their conversations; ANALYZE.
Timed, one request at a time, cycling through the reviewers: `next` (the reviewer's oldest open
assignment, or a claim from the pool under FOR UPDATE SKIP LOCKED), a draft save of three ratings, and a
submit of the whole scorecard (which stores the review and its first version, completes the assignment,
logs it and writes ReviewSubmitted and AssignmentChanged to the outbox). Untimed warm-up first.
Baselines in the same run: `asyncpg_indexed_query`, the reviewer-queue SELECT `next` starts with, as a
prepared asyncpg statement on its own connection; `http_healthz`, an HTTP round trip to the same process;
`http_authenticated_read`, GET /v1/reviewers: the API key checked (its row cached for QA_AUTH_CACHE_TTL_S)
and one indexed SELECT without a transaction, the floor every authenticated endpoint of the service pays.
Target: p99 ≤ 50 ms for each of next, draft and submit.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import orjson

from bench import common
from bench.common import Stopwatch, emit
from bench.platform import cleanup, servers
from qastream_scoring.app import SPEC
from qastream_shared.events import ApiKeyIssued, Envelope, Role, TenantUpserted
from qastream_shared.keys import generate_key
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import free_port
from qastream_shared.testing import eventually, isolated_settings, produce_envelopes
from qastream_shared.topics import TENANTS, ensure_topics, physical
from tests.integration.conftest import Proc

TENANT = "bench"
TARGET_P99_MS = 50.0
SIZES = {"smoke": (2_000, 200, 30), "full": (1_000_000, 100_000, 1_000)}

_SEED_CONVERSATIONS = """
INSERT INTO conversations (tenant_id, conversation_id, body, ended_at)
SELECT $1, 'open-' || g,
       convert_to('{"conversation_id":"open-' || g || '","turns":[{"role":"customer","text":"my order is late"},'
                  || '{"role":"agent","text":"let me check that for you"}]}', 'UTF8'),
       now()
FROM generate_series(0, $2 - 1) g
"""
_SEED_ASSIGNMENTS = """
INSERT INTO assignments (assignment_id, tenant_id, conversation_id, reviewer_id, status, agent_id, agent_ids,
                         team, channel, scorecard_id, scorecard_version, plan_id, inclusion_probability,
                         period_day, created_at)
SELECT md5('assignment' || g), $1, 'open-' || g,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'rev-' || (g % $3) END,
       'open', 'agent-' || (g % 1000), ARRAY['agent-' || (g % 1000)], 'team-' || (g % 20), 'chat',
       $4, $5, 'bench', 0.1, date_trunc('day', now()), now() - make_interval(secs => $2 - g)
FROM generate_series(0, $2 - 1) g
"""
_SEED_REVIEWS = """
INSERT INTO reviews (review_id, tenant_id, conversation_id, kind, scorecard_id, scorecard_version,
                     scorer_versions, ratings, score, auto_failed, passed, agent_id, team, channel, reviewer_id,
                     submitted_at, revision)
SELECT md5('review' || g), $1, 'done-' || (g / 2), CASE WHEN g % 5 = 0 THEN 'manual' ELSE 'auto' END,
       $4, $5, '{}'::jsonb, $6::jsonb, (g % 100) / 100.0, false, (g % 100) >= 80,
       'agent-' || (g % 1000), 'team-' || (g % 20), 'chat',
       CASE WHEN g % 5 = 0 THEN 'rev-' || (g % $3) END,
       now() - make_interval(secs => g), 1
FROM generate_series(0, $2 - 1) g
"""
_QUEUE_HEAD = """
SELECT * FROM assignments
WHERE tenant_id = $1 AND reviewer_id = $2 AND status = 'open'
ORDER BY created_at, assignment_id LIMIT 1
"""


def percentiles(samples_ms: list[float]) -> dict[str, Any]:
    return common.percentiles(samples_ms, (50, 95, 99), digits=2)


async def timed(samples: list[float], call: Callable[[], Awaitable[Any]]) -> Any:
    t0 = time.perf_counter()
    result = await call()
    samples.append((time.perf_counter() - t0) * 1000)
    return result


async def issue_keys(settings: Settings, reviewers: int) -> tuple[str, list[str]]:
    admin = generate_key(settings.key_pepper)
    issued = [(admin, Role.admin, None)] + [
        (generate_key(settings.key_pepper), Role.reviewer, f"rev-{i}") for i in range(reviewers)
    ]
    envs = [
        Envelope(
            data=TenantUpserted(tenant_id=TENANT, name=TENANT), source="ingest", tenant=TENANT, key=TENANT
        )
    ]
    for key, role, agent in issued:
        fields = {"agent_id": agent} if agent else {}
        envs.append(
            Envelope(
                data=ApiKeyIssued(key_id=key.key_id, key_hash=key.key_hash, role=role, **fields),
                source="ingest",
                tenant=TENANT,
                key=f"{TENANT}:key:{key.key_id}",
            )
        )
    await produce_envelopes(settings, physical(TENANTS, settings), envs)
    return admin.key, [k.key for k, _, _ in issued[1:]]


async def main(n_reviews: int, n_assignments: int, ops: int, reviewers: int) -> dict[str, Any]:
    db, kafka = servers()
    settings = isolated_settings(db, kafka)
    runtime = ServiceRuntime(SPEC, settings)
    port = free_port()
    proc: Proc | None = None
    try:
        await ensure_topics(settings)
        admin_key, reviewer_keys = await issue_keys(settings, reviewers)
        proc = Proc(["-m", "qastream_scoring"], settings, {"QA_HTTP_PORT": str(port)})
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            admin = {"Authorization": f"Bearer {admin_key}"}

            async def up() -> list[dict[str, Any]] | None:
                try:
                    r = await http.get("/v1/scorecards", headers=admin)
                except httpx.TransportError:
                    return None
                return r.json() if r.status_code == 200 else None

            cards = await eventually(up, within=120)
            assert cards is not None
            card = cards[0]
            categories = [c for g in card["groups"] for c in g["categories"]]
            ratings = [{"category_id": c["category_id"], "value": 1} for c in categories]
            stored_ratings = orjson.dumps([{**r, "score": 0.0} for r in ratings]).decode()

            seed = Stopwatch()
            conn = await asyncpg.connect(
                settings.asyncpg_dsn, server_settings={"search_path": runtime.schema}
            )
            try:
                args = (TENANT, n_assignments, reviewers, card["scorecard_id"], card["version"])
                await conn.execute(_SEED_CONVERSATIONS, TENANT, n_assignments)
                await conn.execute(_SEED_ASSIGNMENTS, *args)
                await conn.execute(
                    _SEED_REVIEWS,
                    TENANT,
                    n_reviews,
                    reviewers,
                    card["scorecard_id"],
                    card["version"],
                    stored_ratings,
                )
                await conn.execute("ANALYZE")
                seed.stop()

                async def cycle(i: int, samples: dict[str, list[float]] | None) -> None:
                    key = {"Authorization": f"Bearer {reviewer_keys[i % reviewers]}"}

                    async def step(
                        name: str, call: Callable[[], Awaitable[httpx.Response]]
                    ) -> httpx.Response:
                        r = await (timed(samples[name], call) if samples is not None else call())
                        assert r.status_code in (200, 201), f"{name}: {r.status_code} {r.text}"
                        return r

                    nxt = await step("next", lambda: http.get("/v1/assignments/next", headers=key))
                    aid = nxt.json()["assignment_id"]
                    draft = {"ratings": ratings[:3]}
                    await step(
                        "draft", lambda: http.put(f"/v1/assignments/{aid}/draft", json=draft, headers=key)
                    )
                    body = {"ratings": ratings, "time_spent_s": 60}
                    await step(
                        "submit", lambda: http.post(f"/v1/assignments/{aid}/review", json=body, headers=key)
                    )

                for i in range(min(20, ops)):  # warm-up: connections, prepared statements, caches
                    await cycle(i, None)
                samples: dict[str, list[float]] = {"next": [], "draft": [], "submit": []}
                for i in range(ops):
                    await cycle(i, samples)

                queue = await conn.prepare(_QUEUE_HEAD)
                baseline: list[float] = []
                for i in range(ops):
                    reviewer = f"rev-{1 + i % (reviewers - 1)}"
                    await timed(baseline, lambda: queue.fetch(TENANT, reviewer))  # noqa: B023 (awaited at once)
                healthz: list[float] = []
                for _ in range(ops):
                    await timed(healthz, lambda: http.get("/healthz"))
                floor: list[float] = []
                for _ in range(ops):
                    await timed(floor, lambda: http.get("/v1/reviewers", headers=admin))
            finally:
                await conn.close()
        raw = percentiles(baseline)
        results = {name: percentiles(s) for name, s in samples.items()}
        for r in results.values():
            r["p99_over_asyncpg_p99"] = round(r["p99_ms"] / raw["p99_ms"], 1)
            r["target_p99_ms"] = TARGET_P99_MS
            r["met"] = r["p99_ms"] <= TARGET_P99_MS
        return {
            "reviews": n_reviews,
            "open_assignments": n_assignments,
            "reviewers": reviewers,
            "seed_s": round(seed.seconds, 1),
            **results,
            "asyncpg_indexed_query": raw,
            "http_healthz": percentiles(healthz),
            "http_authenticated_read": percentiles(floor),
        }
    finally:
        if proc is not None:
            proc.stop()
        await cleanup(runtime, settings)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--reviews", type=int)
    parser.add_argument("--assignments", type=int)
    parser.add_argument("--ops", type=int)
    parser.add_argument("--reviewers", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="the same as --size smoke (the CI smoke run)")
    a = parser.parse_args()
    reviews, assignments, ops = SIZES["smoke" if a.tiny else a.size]
    emit(
        asyncio.run(
            main(a.reviews or reviews, a.assignments or assignments, a.ops or ops, max(2, a.reviewers))
        )
    )


if __name__ == "__main__":
    cli()
