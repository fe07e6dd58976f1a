"""`qa samples explain`: why each plan did or did not pick a conversation, from the sampler's own tables."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from qastream_sampler.app import SPEC
from qastream_sampler.engine import UnknownConversation
from qastream_sampler.explain import PlanExplanation, explain
from qastream_sampler.explain_store import explain_state
from qastream_shared.runtime import ServiceRuntime

console = Console()
samples_app = typer.Typer(help="The sampler's decisions.", no_args_is_help=True)


async def _explain(tenant: str, conversation_id: str) -> list[PlanExplanation]:
    from qastream_shared.cli import settings_from_stack

    rt = ServiceRuntime(SPEC, settings_from_stack())
    try:
        async with rt.sessions() as session:
            # What a replica would conclude, replayed in private from the stored inputs of this tenant only.
            state = await explain_state(session, rt.settings, tenant, conversation_id)
    finally:
        await rt.engine.dispose()
    return explain(state, conversation_id)


@samples_app.command("explain")
def explain_command(
    conversation_id: Annotated[str, typer.Argument(help="Conversation id")],
    tenant: Annotated[str, typer.Option(help="Tenant id")],
) -> None:
    """Every plan (and the auto policy) with its verdict on one conversation, and the reason."""
    try:
        verdicts = asyncio.run(_explain(tenant, conversation_id))
    except UnknownConversation:
        console.print(f"[red]no conversation {conversation_id!r} seen by the sampler in tenant {tenant!r}[/]")
        raise typer.Exit(1) from None
    table = Table(title=f"{tenant} / {conversation_id}")
    for column in ("plan", "version", "kind", "purpose", "picked", "reason"):
        table.add_column(column, overflow="fold")
    for v in verdicts:
        table.add_row(
            v.plan_id,
            str(v.plan_version),
            v.kind,
            v.purpose.value,
            "[green]yes[/]" if v.picked else "no",
            v.reason,
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.add_typer(samples_app, name="samples")
