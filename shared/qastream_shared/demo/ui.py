"""The demo's console output and its one way to fail."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

console = Console()


def fail(message: str) -> NoReturn:
    console.print(f"[red]demo failed:[/] {message}")
    raise typer.Exit(1)
