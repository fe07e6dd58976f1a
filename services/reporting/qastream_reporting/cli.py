"""`qa reporting rebuild`: replay the topics into fresh tables and swap them in, with a progress bar."""

from __future__ import annotations

import asyncio

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

console = Console()
app = typer.Typer(help="The reporting read models.", no_args_is_help=True)


@app.command("rebuild")
def rebuild_command() -> None:
    """Replay every consumed topic from offset 0 into a fresh schema and swap it in atomically.

    The live service keeps serving reads (and projecting) until the swap, which pauses it between two batches.
    """
    # Imported when the command runs: `qa --help` must not load the service's app (see register).
    from qastream_reporting.app import SPEC
    from qastream_reporting.rebuild import rebuild
    from qastream_shared.cli import settings_from_stack

    settings = settings_from_stack()
    with Progress(
        TextColumn("[bold]replaying[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("events"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("rebuild", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = asyncio.run(rebuild(SPEC, settings, progress=progress))
    console.print(f"[green]rebuilt[/] schema {result.schema} from {result.events} events and swapped it in")


def register(root: typer.Typer) -> None:
    """Adds `qa reporting`. Called on every `qa` start, so this module imports no service code at its top."""
    root.add_typer(app, name="reporting")
