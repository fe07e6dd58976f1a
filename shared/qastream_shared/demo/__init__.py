"""`qa demo`: the whole pipeline, all five services, on the real STAR conversations in ../shared/data.

It starts the local stack, creates a tenant with a key per role, installs sampling plans, a reviewer pool
and coaching rules, imports every conversation over HTTP, sends the customers' own post-chat verdicts as
late CSAT, and waits until every conversation is sampled and AutoQA-scored. Then simulated reviewer
personas (marked as such everywhere) review the manual sample, an agent disputes a review, a QA lead
resolves it and runs a calibration session; the demo prints what each service made of it, the console's
address with a key per role, and keeps the stack running until Ctrl-C. Everything goes through the
services' public CLIs and HTTP APIs, as a customer's integration would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qastream_shared.demo import people, report
from qastream_shared.demo.personas import PERSONAS, SIMULATED
from qastream_shared.demo.ui import console, fail
from qastream_shared.services import SERVICES
from qastream_shared.stack import Stack
from qastream_shared.testing import STAR

TENANT = "demo-contact-center"
COACHING_RULES: list[dict[str, Any]] = [
    {"rule_id": "below-pass-mark", "trigger": "below_pass_mark", "title": "Review the conversation together"},
    {
        "rule_id": "compliance-miss",
        "trigger": "auto_fail",
        "title": "Walk through the missed compliance step",
        "alert": True,
    },
    {"rule_id": "kudos", "trigger": "kudos", "title": "Share what went well with the team"},
]
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


def _qa(*args: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "qastream_shared.cli", *args], env=env, capture_output=True, text=True
    )
    if out.returncode != 0:
        fail(f"qa {' '.join(args)} failed: {out.stderr or out.stdout}")
    return out.stdout.strip()


def run_demo(state_dir: Path | None, limit: int | None, *, wait: bool = True) -> None:
    stack = Stack(state_dir, report=lambda m: console.print(f"[dim]•[/] {m}"))
    with console.status("starting PostgreSQL, Kafka and the five services…"):
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
    keys = Keys(env, urls)
    asyncio.run(_pipeline(urls, keys, env, limit))
    report.console_and_keys(urls, keys.issued)
    if wait:
        _serve_until_interrupted(stack)


class Keys:
    """One API key per role (and per persona). The admin key comes from `qa key create`, as an operator's
    first key would; the others from ingest's key API, and each is awaited until every service knows it."""

    def __init__(self, env: dict[str, str], urls: dict[str, str]) -> None:
        self.urls = urls
        admin = _qa("key", "create", "--tenant", TENANT, "--role", "admin", "-q", env=env).splitlines()[-1]
        self.issued: dict[str, str] = {"admin": admin}

    def get(self, label: str, role: str, *, agent_id: str | None = None, team: str | None = None) -> str:
        if label not in self.issued:
            body = {"role": role, "agent_id": agent_id, "team": team}
            with httpx.Client(
                headers={"Authorization": f"Bearer {self.issued['admin']}"}, timeout=30
            ) as http:
                r = http.post(f"{self.urls['ingest']}/v1/keys", json=body)
                if r.status_code != 201:
                    fail(f"creating a {role} key failed: {r.text}")
                key = r.json()["key"]
                self._known_everywhere(key)
            self.issued[label] = key
        return self.issued[label]

    def _known_everywhere(self, key: str) -> None:
        """Keys reach the other services through qa.tenants: wait until each one accepts this key."""
        deadline = time.monotonic() + 60
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http:
            for name, url in self.urls.items():
                while http.get(f"{url}/v1/session").status_code == 401:
                    if time.monotonic() > deadline:
                        fail(f"{name} did not learn a new key within 60 s; see `qa logs {name}`")
                    time.sleep(0.2)


def _serve_until_interrupted(stack: Stack) -> None:
    console.print("\n[bold]The stack keeps running.[/] Press Ctrl-C to stop it and exit.")
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        while not stopped.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    with console.status("stopping the services, Kafka and PostgreSQL…"):
        stack.down()
    console.print("stopped.")


async def _pipeline(urls: dict[str, str], keys: Keys, env: dict[str, str], limit: int | None) -> None:
    admin = keys.issued["admin"]
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:
        await _ready(http, urls)
        await _configure(http, urls)

        # STAR is from 2020: rebase it to the recent past so late CSAT and reviews fall in the late window.
        args = ["import", str(STAR), "--url", urls["ingest"], "--key", admin, "--rebase-time"]
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
        await report.autoqa(http, urls)
        await report.sampling(http, urls, limit)
    await people.simulate(urls, keys)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {admin}"}, timeout=60) as http:
        await report.reporting(http, urls)


async def _configure(http: httpx.AsyncClient, urls: dict[str, str]) -> None:
    """Sampling plans, the simulated reviewer pool and coaching rules, through each service's API."""
    for plan in PLANS:
        r = await http.post(f"{urls['sampler']}/v1/plans", json=plan)
        if r.status_code not in (201, 409):
            fail(f"installing plan {plan['plan_id']} failed: {r.text}")
    console.print(f"sampling plans: {', '.join(p['plan_id'] for p in PLANS)}")
    pool = {"reviewers": [{"reviewer_id": p.reviewer_id, "weight": 1, "daily_quota": 200} for p in PERSONAS]}
    r = await http.put(f"{urls['scoring']}/v1/reviewers", json=pool)
    if r.status_code != 200:
        fail(f"setting the reviewer pool failed: {r.text}")
    console.print(f"reviewer pool: {', '.join(p.reviewer_id for p in PERSONAS)} {SIMULATED}")
    for rule in COACHING_RULES:
        r = await http.post(f"{urls['coaching']}/v1/rules", json=rule)
        if r.status_code not in (201, 409):
            fail(f"installing coaching rule {rule['rule_id']} failed: {r.text}")
    console.print(f"coaching rules: {', '.join(r['rule_id'] for r in COACHING_RULES)}")


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
        last, still = -1, 0
        while time.monotonic() < deadline:
            summary = await http.get(f"{scoring}/v1/reviews/summary", params={"by": "tenant", "limit": 500})
            rows = summary.json()["items"]
            done = sum(r["reviews"] for r in rows)
            progress.update(task, completed=done)
            # The summary counts scored reviews only, and a conversation with no agent turn gets no score
            # (STAR has some with a single customer turn), so the count may settle below the total: go on
            # once it has not moved for 5 s.
            still = still + 1 if done == last and done > 0 else 0
            if done >= total or still >= 5:
                return
            last = done
            await asyncio.sleep(1.0)
