"""`qa demo`: the whole pipeline on the real STAR conversations in ../shared/data.

It starts the local stack, creates a tenant and a key, installs sampling plans, imports every conversation
over HTTP, sends the customers' own post-chat verdicts as late CSAT, and waits until every conversation has
been sampled and AutoQA-scored; then it prints quality per team and what the sampler picked for people.
Everything goes through the services' public CLIs and HTTP APIs, as a customer's integration would.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, NoReturn

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from qastream_shared.services import SERVICES
from qastream_shared.stack import Stack
from qastream_shared.testing import STAR

console = Console()
TENANT = "demo-contact-center"
PLANS: list[dict[str, Any]] = [
    {
        "plan_id": "unhappy-customers",
        "kind": "targeted",
        "priority": 10,
        "rules": [{"kind": "csat_at_most", "max": 2}, {"kind": "escalated"}],
    },
    {
        "plan_id": "low-autoqa",
        "kind": "targeted",
        "priority": 20,
        "rules": [{"kind": "auto_score_below", "threshold": 0.5}, {"kind": "auto_fail"}],
    },
    {
        "plan_id": "per-agent-weekly",
        "kind": "stratified",
        "priority": 30,
        "by": "agent",
        "quota": 3,
        "period": "week",
    },
    {"plan_id": "random-2pct", "kind": "random", "priority": 40, "rate": 0.02},
]


def fail(message: str) -> NoReturn:
    console.print(f"[red]demo failed:[/] {message}")
    raise typer.Exit(1)


def _qa(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "qastream_shared.cli", *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        fail(f"qa {' '.join(args)} failed: {out.stderr or out.stdout}")
    return out.stdout.strip()


def run_demo(state_dir: Path | None, limit: int | None) -> None:
    stack = Stack(state_dir, report=lambda m: console.print(f"[dim]•[/] {m}"))
    with console.status("starting PostgreSQL, Kafka and the services…"):
        state = stack.up(SERVICES)
    urls = {name: svc["url"] for name, svc in state.get("services", {}).items()}
    missing = [s for s in SERVICES if s not in urls]
    if missing:
        fail(f"services not running: {missing}")
    env = {
        **os.environ,
        "DATABASE_URL": state["postgres"]["url"],
        "KAFKA_BOOTSTRAP_SERVERS": state["kafka"]["bootstrap"],
    }
    if stack.state_dir:
        env["QA_STACK_DIR"] = str(stack.state_dir)
    console.print(_qa("tenant", "create", TENANT, "--name", "Demo Contact Center", env=env))
    key = _qa("key", "create", "--tenant", TENANT, "--role", "admin", "-q", env=env).splitlines()[-1]
    asyncio.run(_pipeline(urls, key, env, limit))


async def _pipeline(urls: dict[str, str], key: str, env: dict[str, str], limit: int | None) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(headers=headers, timeout=60) as http:
        await _ready(http, urls)
        for plan in PLANS:
            r = await http.post(f"{urls['sampler']}/v1/plans", json=plan)
            if r.status_code not in (201, 409):
                fail(f"installing plan {plan['plan_id']} failed: {r.text}")
        console.print(f"sampling plans: {', '.join(p['plan_id'] for p in PLANS)}")

        # STAR is from 2020: rebase it to the recent past so late CSAT and reviews fall in the late window.
        args = ["import", str(STAR), "--url", urls["ingest"], "--key", key, "--rebase-time"]
        if limit:
            args += ["--limit", str(limit)]
        await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "qastream_shared.cli", *args], env=env, check=True
        )

        sent = await _late_csat(http, urls["ingest"], limit)
        console.print(
            f"late feedback: {sent} CSAT answers derived from the customers' own post-chat verdicts"
        )
        total = limit or sum(1 for _ in STAR.open("rb"))
        await _await_reviews(http, urls["scoring"], total)
        await _report(http, urls)


async def _ready(http: httpx.AsyncClient, urls: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    for name, url in urls.items():
        while True:
            try:
                if (await http.get(f"{url}/readyz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                fail(f"{name} did not become ready; see `qa logs {name}`")
            await asyncio.sleep(0.5)


async def _late_csat(http: httpx.AsyncClient, ingest: str, limit: int | None) -> int:
    """The customer's "was the agent calm and helpful?" answer, sent later as CSAT 5 (yes) or 2 (no)."""
    sent = 0
    sem = asyncio.Semaphore(16)

    async def post(cid: str, csat: int) -> None:
        nonlocal sent
        async with sem:
            r = await http.post(f"{ingest}/v1/conversations/{cid}/feedback", json={"csat": csat})
            sent += r.status_code == 202

    jobs = []
    with STAR.open("rb") as fh:
        for i, line in enumerate(fh):
            if limit is not None and i >= limit:
                break
            rec = orjson.loads(line)
            verdict = rec["labels"].get("user_says_agent_calm_helpful")
            if verdict is not None:
                jobs.append(post(rec["conversation_id"], 5 if verdict else 2))
    with Progress(
        TextColumn("[bold]late CSAT[/]"), BarColumn(), MofNCompleteColumn(), console=console
    ) as progress:
        task = progress.add_task("csat", total=len(jobs))
        for chunk in range(0, len(jobs), 64):
            await asyncio.gather(*jobs[chunk : chunk + 64])
            progress.advance(task, len(jobs[chunk : chunk + 64]))
    return sent


async def _await_reviews(http: httpx.AsyncClient, scoring: str, total: int) -> None:
    with Progress(
        TextColumn("[bold]AutoQA[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("scoring", total=total)
        deadline = time.monotonic() + 600
        last = -1
        while time.monotonic() < deadline:
            summary = await http.get(f"{scoring}/v1/reviews/summary", params={"by": "tenant", "limit": 500})
            rows = summary.json()["items"]
            done = sum(r["reviews"] for r in rows)
            # Conversations with no agent turn get no score, so stop once the count stops moving near the end.
            progress.update(task, completed=done)
            if done >= total or (done == last and done > 0.95 * total):
                return
            last = done
            await asyncio.sleep(1.0)


async def _report(http: httpx.AsyncClient, urls: dict[str, str]) -> None:
    summary = await http.get(f"{urls['scoring']}/v1/reviews/summary", params={"by": "team", "limit": 500})
    teams = summary.json()["items"]
    table = Table("team", "reviews", "IQS", "pass rate", "auto-fail rate", title="AutoQA quality per team")
    for r in teams:
        table.add_row(
            str(r["group"]),
            str(r["reviews"]),
            f"{r['iqs']:.1%}",
            f"{r['pass_rate']:.1%}",
            f"{r['auto_fail_rate']:.1%}",
        )
    console.print(table)
    samples = (
        await http.get(f"{urls['sampler']}/v1/samples", params={"purpose": "manual", "limit": 1000})
    ).json()
    by_plan = Counter((s["plan_id"], s["rule"] or "-") for s in samples)
    t2 = Table("plan", "rule", "picked for people", title="Manual review sample (latest 1,000 decisions)")
    for (plan, rule), n in sorted(by_plan.items()):
        t2.add_row(plan, rule, str(n))
    console.print(t2)
    console.print("APIs (OpenAPI docs at /docs):")
    for name, url in urls.items():
        console.print(f"  {name:8} {url}/docs")
