"""`qa rescore`: back-fill AutoQA on stored conversations under another scorecard, scorer or pCSAT model version."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
CHUNK = 500


def rescore(
    tenant: Annotated[str, typer.Option(help="Tenant id")],
    scorecard_version: Annotated[int, typer.Option(min=1, help="Scorecard version to score with")],
    scorecard: Annotated[
        str | None, typer.Option(help="Scorecard id (default: the tenant's active one)")
    ] = None,
    since: Annotated[
        datetime | None, typer.Option(help="Only conversations that ended at or after this time")
    ] = None,
) -> None:
    """Emit new AutoQA reviews (with pCSAT) tagged with the given versions; existing reviews are never overwritten."""
    created, seen = asyncio.run(_rescore(tenant, scorecard, scorecard_version, since))
    console.print(
        f"[green]{created} new reviews[/] from {seen} stored conversations ({seen - created} already scored)"
    )


async def _rescore(tenant: str, scorecard_id: str | None, v: int, since: datetime | None) -> tuple[int, int]:
    # Imported when the command runs: `qa --help` must not load the service's app (see register).
    from sqlalchemy import func, select

    from qastream_scoring import service
    from qastream_scoring.app import SPEC
    from qastream_scoring.autoqa_runner import AutoQARunner
    from qastream_scoring.tables import conversations
    from qastream_shared.cli import settings_from_stack
    from qastream_shared.conversation import Conversation
    from qastream_shared.migrations import migrate
    from qastream_shared.runtime import ServiceRuntime

    rt = ServiceRuntime(SPEC, settings_from_stack())
    await migrate(rt.settings, rt.schema, SPEC.migrations)
    runner = AutoQARunner.from_env()
    try:
        async with rt.unit_of_work() as uow:
            settings, active = await service.config(uow, tenant)
            card = await service.version(uow, tenant, scorecard_id or active.scorecard_id, v)
        if card is None:
            console.print(
                f"[red]no version {v} of scorecard {scorecard_id or active.scorecard_id!r} in {tenant}[/]"
            )
            raise typer.Exit(1)
        where = [conversations.c.tenant_id == tenant]
        if since is not None:
            where.append(conversations.c.ended_at >= (since if since.tzinfo else since.replace(tzinfo=UTC)))
        async with rt.sessions() as s:
            total = int((await s.execute(select(func.count()).where(*where))).scalar_one())
        created = 0
        last = ""
        with Progress(
            TextColumn("[bold]re-scoring[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("rescore", total=total)
            while True:
                # Keyset pagination: each chunk is its own transaction, so a crash resumes cheaply.
                async with rt.unit_of_work() as uow:
                    rows = (
                        await uow.session.execute(
                            select(conversations.c.conversation_id, conversations.c.body)
                            .where(*where, conversations.c.conversation_id > last)
                            .order_by(conversations.c.conversation_id)
                            .limit(CHUNK)
                        )
                    ).all()
                    if not rows:
                        break
                    items = [(Conversation.model_validate_json(r.body), None, None) for r in rows]
                    created += await service.auto_reviews(
                        uow, tenant, items, settings=settings, card=card, runner=runner
                    )
                last = rows[-1].conversation_id
                progress.advance(task, len(rows))
        # The relay in this process is not running: the stack's scoring service publishes the outbox.
        return created, total
    finally:
        runner.close()
        await rt.engine.dispose()


def register(app: typer.Typer) -> None:
    """Adds `qa rescore`. Called on every `qa` start, so this module imports no service code at its top."""
    app.command("rescore")(rescore)
