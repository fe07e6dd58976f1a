"""`qa tenant`, `qa key` and `qa import`: operator commands of the ingest service."""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from qastream_ingest.importers import ImportProblem, read_conversations
from qastream_shared.conversation import Conversation
from qastream_shared.events import Role

console = Console()
tenant_app = typer.Typer(help="Tenants (client companies) of this deployment.", no_args_is_help=True)
key_app = typer.Typer(help="API keys: stored hashed, shown once.", no_args_is_help=True)
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9\-]{1,62}$")


async def _in_uow(fn: Any) -> Any:
    # Imported when a command runs: `qa --help` must not load the service's app (see register).
    from qastream_ingest.app import SPEC
    from qastream_shared.cli import settings_from_stack
    from qastream_shared.migrations import migrate
    from qastream_shared.runtime import ServiceRuntime

    rt = ServiceRuntime(SPEC, settings_from_stack())
    try:
        await migrate(rt.settings, rt.schema, SPEC.migrations)
        async with rt.unit_of_work() as uow:
            return await fn(uow)
    finally:
        await rt.engine.dispose()


@tenant_app.command("create")
def tenant_create(
    tenant_id: Annotated[str, typer.Argument(help="Slug: lowercase letters, digits and -")],
    name: Annotated[str | None, typer.Option(help="Display name")] = None,
    retention_days: Annotated[int | None, typer.Option(min=1, help="Purge transcripts after N days")] = None,
) -> None:
    """Create a tenant (idempotent)."""
    if not TENANT_ID.match(tenant_id):
        console.print(f"[red]invalid tenant id {tenant_id!r}[/]: use 2–63 lowercase letters, digits and -")
        raise typer.Exit(2)
    from qastream_ingest import service

    created = asyncio.run(
        _in_uow(lambda uow: service.create_tenant(uow, tenant_id, name or tenant_id, retention_days))
    )
    console.print(f"tenant [bold]{tenant_id}[/] {'created' if created else 'already exists'}")


@key_app.command("create")
def key_create(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    role: Annotated[Role, typer.Option(help="admin, qa_lead, reviewer, team_lead, agent or platform")],
    agent_id: Annotated[str | None, typer.Option(help="For role agent: whose reviews it may see")] = None,
    team: Annotated[str | None, typer.Option(help="For role team_lead: which team it may see")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the key")] = False,
) -> None:
    """Issue an API key. The key is printed once; only its hash is stored."""
    from sqlalchemy import select

    from qastream_ingest import service
    from qastream_ingest.tables import tables

    async def issue(uow: Any) -> tuple[str, str] | None:
        t = tables["tenants"]
        if (await uow.session.execute(select(t.c.tenant_id).where(t.c.tenant_id == tenant))).first() is None:
            return None
        result: tuple[str, str] = await service.create_key(uow, tenant, role, agent_id, team)
        return result

    issued = asyncio.run(_in_uow(issue))
    if issued is None:
        console.print(f"[red]no tenant {tenant!r}[/]; create it with `qa tenant create {tenant}`")
        raise typer.Exit(1)
    key_id, key = issued
    if quiet:
        typer.echo(key)
    else:
        console.print(
            f"key id [bold]{key_id}[/] ({role.value}) for tenant {tenant}; store it now, it is not shown again:"
        )
        typer.echo(key)


@key_app.command("revoke")
def key_revoke(tenant: Annotated[str, typer.Option()], key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a key at once, in every service."""
    from qastream_ingest import service

    done = asyncio.run(_in_uow(lambda uow: service.revoke_key(uow, tenant, key_id)))
    console.print("revoked" if done else f"[red]no active key {key_id!r} in tenant {tenant!r}[/]")
    if not done:
        raise typer.Exit(1)


def import_file(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="JSONL, STAR JSONL or Zendesk export")
    ],
    url: Annotated[str | None, typer.Option(help="Ingest API base URL (default: the local stack's)")] = None,
    key: Annotated[
        str | None, typer.Option(envvar="QA_API_KEY", help="API key with role admin or platform")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=1000)] = 500,
    limit: Annotated[int | None, typer.Option(min=1, help="Import only the first N conversations")] = None,
    rebase_time: Annotated[
        bool, typer.Option("--rebase-time", help="Shift all timestamps so the newest one is now (demos)")
    ] = False,
) -> None:
    """Send a file's conversations through the HTTP API in batches, with a summary of what happened."""
    from qastream_shared.cli import service_url

    base = url or os.environ.get("QA_INGEST_URL") or service_url("ingest")
    if not base or not key:
        console.print("[red]need --url (or a running `qa up`) and --key (or QA_API_KEY)[/]")
        raise typer.Exit(2)
    shift = _shift_to_now(file, limit) if rebase_time else timedelta(0)
    summary = asyncio.run(_import(file, base, key, batch, limit, shift))
    console.print(
        f"[green]{summary['accepted']} accepted[/], {summary['duplicate']} duplicate, "
        f"[red]{summary['rejected']} rejected[/] ({summary['unreadable']} unreadable lines)"
    )
    for line in summary["problems"][:10]:
        console.print(f"  [dim]{line}[/]")
    if summary["failed_batches"]:
        console.print(f"[red]{summary['failed_batches']} batches failed[/]")
        raise typer.Exit(1)


def _shift_to_now(file: Path, limit: int | None) -> timedelta:
    """How far to move a file's timestamps so its newest one lands on the current time."""
    newest = None
    with file.open("rb") as fh:
        for n, item in enumerate(read_conversations(fh)):
            if limit is not None and n >= limit:
                break
            if isinstance(item, ImportProblem):
                continue
            for t in (item.ended_at, *(turn.ts for turn in item.turns)):
                if t is not None and (newest is None or t > newest):
                    newest = t
    return datetime.now(UTC) - newest if newest is not None else timedelta(0)


def _shifted(conv: Conversation, shift: timedelta) -> Conversation:
    if not shift:
        return conv
    return conv.model_copy(
        update={
            "started_at": conv.started_at and conv.started_at + shift,
            "ended_at": conv.ended_at and conv.ended_at + shift,
            "turns": [t.model_copy(update={"ts": t.ts and t.ts + shift}) for t in conv.turns],
        }
    )


async def _import(
    file: Path, base: str, key: str, batch_size: int, limit: int | None, shift: timedelta = timedelta(0)
) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    problems: list[str] = []
    total = limit or sum(1 for _ in file.open("rb"))
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as client:

        async def send(items: list[dict[str, Any]]) -> None:
            resp = await client.post(
                "/v1/conversations",
                content=orjson.dumps({"conversations": items}),
                headers={"content-type": "application/json"},
            )
            if resp.status_code not in (200, 202, 422):
                counts["failed_batches"] += 1
                problems.append(f"batch failed: HTTP {resp.status_code} {resp.text[:200]}")
                return
            for r in resp.json().get("results", []):
                counts[r["status"]] += 1
                if r["status"] == "rejected":
                    problems.append(f"{r.get('conversation_id')}: {r.get('reason')}")

        with Progress(
            TextColumn("[bold]importing[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("import", total=total)
            pending: list[dict[str, Any]] = []
            with file.open("rb") as fh:
                for n, item in enumerate(read_conversations(fh)):
                    if limit is not None and n >= limit:
                        break
                    if isinstance(item, ImportProblem):
                        counts["unreadable"] += 1
                        problems.append(f"line {item.line}: {item.reason}")
                        progress.advance(task)
                        continue
                    pending.append(_shifted(item, shift).model_dump(mode="json", exclude_none=True))
                    if len(pending) >= batch_size:
                        await send(pending)
                        progress.advance(task, len(pending))
                        pending = []
            if pending:
                await send(pending)
                progress.advance(task, len(pending))
    return {
        "accepted": counts["accepted"],
        "duplicate": counts["duplicate"],
        "rejected": counts["rejected"],
        "unreadable": counts["unreadable"],
        "failed_batches": counts["failed_batches"],
        "problems": problems,
    }


def register(app: typer.Typer) -> None:
    """Adds `qa tenant`, `qa key`, `qa import`. Called on every `qa` start, so this module imports no
    service code at its top."""
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(key_app, name="key")
    app.command("import")(import_file)
