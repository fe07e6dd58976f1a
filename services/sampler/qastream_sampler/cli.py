"""`qa samples explain`: why each plan did or did not pick a conversation, from the sampler's own tables."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from qastream_sampler.explain import PlanExplanation

console = Console()
samples_app = typer.Typer(help="The sampler's decisions.", no_args_is_help=True)


async def _explain(tenant: str, conversation_id: str) -> list[PlanExplanation]:
    # Imported when the command runs: `qa --help` must not load the service's app (see register).
    from qastream_sampler.app import SPEC
    from qastream_sampler.explain import explain
    from qastream_sampler.explain_store import explain_state
    from qastream_shared.cli import settings_from_stack
    from qastream_shared.runtime import ServiceRuntime

    rt = ServiceRuntime(SPEC, settings_from_stack())
    try:
        async with rt.sessions() as session:
            # What a replica would conclude, replayed in private from the latest snapshot and the inputs after it.
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
    from qastream_sampler.engine import UnknownConversation
    from qastream_sampler.explain_store import PastRetention

    try:
        verdicts = asyncio.run(_explain(tenant, conversation_id))
    except PastRetention as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(1) from None
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
    """Adds `qa samples`. Called on every `qa` start, so this module imports no service code at its top."""
    app.add_typer(samples_app, name="samples")
