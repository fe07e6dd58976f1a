"""The `qa` command line. Stack commands live here; other domains add theirs as sub-apps:

# in qastream_<x>/cli.py:  app = typer.Typer(help="...")
# here:                    from qastream_<x>.cli import app as x_app; app.add_typer(x_app, name="x")
"""

from __future__ import annotations

import collections
import shlex
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from qastream_shared.services import SERVICES
from qastream_shared.settings import Settings
from qastream_shared.stack import Stack, StackError

app = typer.Typer(help="qastream: QA for customer-service conversations.", no_args_is_help=True)
console = Console()

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", envvar="QA_STACK_DIR", help="Where the stack keeps its state (default: <repo>/.qa)."
    ),
]


def _stack(state_dir: Path | None) -> Stack:
    return Stack(state_dir, report=lambda msg: console.print(f"[dim]•[/] {msg}"))


@app.command()
def up(
    state_dir: StateDir = None,
    services: Annotated[
        bool, typer.Option("--services/--no-services", help="Also start the services, or only the servers.")
    ] = True,
) -> None:
    """Start PostgreSQL, Kafka and the services (reusing whatever already runs)."""
    stack = _stack(state_dir)
    try:
        with console.status("starting the stack…"):
            state = stack.up(services=SERVICES if services else ())
    except StackError as e:
        console.print(f"[red]qa up failed:[/] {e}")
        raise typer.Exit(1) from e
    if stack.restarted:
        console.print(f"[yellow]restarted[/] {', '.join(stack.restarted)} (found dead, same port as before)")
    console.print(f"[green]stack is up[/] (state in {stack.state_dir})")
    console.print(f"  DATABASE_URL={state['postgres']['url']}")
    console.print(f"  KAFKA_BOOTSTRAP_SERVERS={state['kafka']['bootstrap']}")
    for name, svc in state.get("services", {}).items():
        console.print(f"  {name}: {svc['url']}  (docs: {svc['url']}/docs)")


@app.command()
def down(state_dir: StateDir = None) -> None:
    """Stop everything `qa up` started in this state dir; external servers are left alone."""
    _stack(state_dir).down()
    console.print("[green]stack is down[/]")


@app.command()
def status(state_dir: StateDir = None) -> None:
    """Show each component: pid, port, whether it is alive."""
    stack = Stack(state_dir)
    rows = stack.status()
    if not rows:
        console.print(f"no stack in {stack.state_dir}; run `qa up`")
        raise typer.Exit(1)
    table = Table("component", "pid", "port", "alive")
    table.add_column("address", overflow="fold")  # shown whole: it is there to be copied
    table.add_column("problems", overflow="fold")
    for r in rows:
        alive = "external" if r.external else ("[green]yes[/]" if r.alive else "[red]no[/]")
        table.add_row(r.name, str(r.pid or "-"), str(r.port or "-"), alive, r.url, f"[red]{r.problem}[/]")
    console.print(table)


@app.command()
def env(state_dir: StateDir = None) -> None:
    """Print the servers' addresses as shell exports: `eval "$(qa env)"`."""
    state = Stack(state_dir).state()
    if "postgres" not in state or "kafka" not in state:
        typer.echo("no stack here; run `qa up` first", err=True)
        raise typer.Exit(1)
    typer.echo(f"export DATABASE_URL={shlex.quote(state['postgres']['url'])}")
    typer.echo(f"export KAFKA_BOOTSTRAP_SERVERS={shlex.quote(state['kafka']['bootstrap'])}")


@app.command()
def logs(
    service: Annotated[str, typer.Argument(help="postgres, kafka or a service name")],
    state_dir: StateDir = None,
    lines: Annotated[int, typer.Option("--lines", "-n")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
) -> None:
    """Print the end of a component's log (and keep printing with --follow)."""
    path = Stack(state_dir).log_path(service)
    if not path.exists():
        console.print(f"[red]no log at {path}[/]")
        raise typer.Exit(1)
    with path.open(errors="replace") as fh:
        for line in collections.deque(fh, maxlen=lines):
            typer.echo(line, nl=False)
        while follow:
            line = fh.readline()
            if line:
                typer.echo(line, nl=False)
            else:
                time.sleep(0.2)  # tailing a file: there is no event to await


@app.command()
def demo(
    state_dir: StateDir = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Use only the first N conversations")] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Keep the stack running until Ctrl-C, then stop it")
    ] = True,
) -> None:
    """All five services on the real STAR conversations: ingest, sample, AutoQA, simulated reviewers,
    a dispute, a calibration, coaching and reporting; then the console, until Ctrl-C."""
    from qastream_shared.demo import run_demo

    run_demo(state_dir, limit, wait=wait)


@app.command()
def bench(
    state_dir: StateDir = None,
    tiny: Annotated[bool, typer.Option("--tiny", help="CI smoke: phases of a few seconds")] = False,
    window: Annotated[float, typer.Option(min=1, help="Seconds per phase")] = 60.0,
) -> None:
    """The pipeline benchmark (bench/pipeline.py): all five services, throughput and latency, as JSON."""
    import os
    import subprocess
    import sys

    # bench/ lives beside the packages in the repository, not in an installed package.
    repo = Path(__file__).resolve().parents[2]
    settings = settings_from_stack(state_dir)
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
    }
    args = [sys.executable, "-m", "bench.pipeline", "--window", str(window), *(["--tiny"] if tiny else [])]
    raise typer.Exit(subprocess.run(args, cwd=repo, env=env, check=False).returncode)


@app.command()
def asyncapi(
    write: Annotated[bool, typer.Option("--write", help="Update shared/asyncapi.json")] = False,
) -> None:
    """Print (or write) the AsyncAPI document generated from the event contract."""
    from qastream_shared import asyncapi as doc

    if write:
        doc.DOCUMENT.write_bytes(doc.render())
        console.print(f"wrote {doc.DOCUMENT}")
        # The platform-kit example's own document embeds the same models; keep it in step (a dev install).
        try:
            from review_alerts import asyncapi as example
        except ImportError:
            return
        example.DOCUMENT.write_text(example.render())
        console.print(f"wrote {example.DOCUMENT}")
    else:
        typer.echo(doc.render().decode(), nl=False)


ServiceName = Annotated[str, typer.Argument(help=f"One of: {', '.join(SERVICES)}")]


@app.command()
def serve(name: ServiceName) -> None:
    """Run one service, its HTTP API and consumer, in the foreground (the container's command).

    Settings come from the environment (docs/operations.md); SIGTERM stops it gracefully."""
    from qastream_shared.runtime import serve as run
    from qastream_shared.services import app_module

    try:
        module = app_module(name)
    except KeyError as e:
        console.print(f"[red]{e.args[0]}[/]")
        raise typer.Exit(2) from e
    run(module.build)


@app.command()
def migrate(
    names: Annotated[
        list[str] | None, typer.Argument(help="Services to migrate (default: all)", show_default=False)
    ] = None,
    state_dir: StateDir = None,
) -> None:
    """Run the services' migrations and create the missing topics: the one-shot job before a deploy.

    Idempotent, and safe to run while services run (each schema migrates under an advisory lock)."""
    import asyncio

    from qastream_shared.runtime import prepare
    from qastream_shared.services import app_module

    settings = settings_from_stack(state_dir)
    unknown = [n for n in names or () if n not in SERVICES]
    if unknown:
        console.print(
            f"[red]unknown service(s): {', '.join(unknown)}[/]; the services are {', '.join(SERVICES)}"
        )
        raise typer.Exit(2)
    for name in names or SERVICES:
        asyncio.run(prepare(app_module(name).SPEC, settings))
        console.print(f"migrated {name} and its topics")


docs_app = typer.Typer(help="The generated sections of docs/operations.md.", no_args_is_help=True)
app.add_typer(docs_app, name="docs")


def _docs_section(name: str, write: bool) -> None:
    from qastream_shared import opsdoc

    text = opsdoc.DOCUMENT.read_text()
    if write:
        opsdoc.DOCUMENT.write_text(opsdoc.render(text, name))
        console.print(f"wrote the {name} section of {opsdoc.DOCUMENT}")
    else:
        typer.echo(opsdoc.section(opsdoc.render(text, name), name), nl=False)


Write = Annotated[bool, typer.Option("--write", help="Update docs/operations.md")]


@docs_app.command("settings")
def docs_settings(write: Write = False) -> None:
    """Every setting with its environment variable, default and meaning."""
    _docs_section("settings", write)


@docs_app.command("topics")
def docs_topics(write: Write = False) -> None:
    """Every topic with its partitions, retention and compaction."""
    _docs_section("topics", write)


def settings_from_stack(state_dir: Path | None = None) -> Settings:
    """Settings for CLI commands: the environment first, else the servers of the local `qa up` stack."""
    import os

    state = Stack(state_dir).state()
    overrides: dict[str, Any] = {}
    if "DATABASE_URL" not in os.environ and "postgres" in state:
        overrides["database_url"] = state["postgres"]["url"]
    if "KAFKA_BOOTSTRAP_SERVERS" not in os.environ and "kafka" in state:
        overrides["kafka_bootstrap_servers"] = state["kafka"]["bootstrap"]
    return Settings.model_validate(overrides)


def service_url(name: str, state_dir: Path | None = None) -> str | None:
    svc = Stack(state_dir).state().get("services", {}).get(name)
    return svc["url"] if svc else None


# Services contribute their commands through the `qastream.cli` entry point group, so this package never
# imports a service.
for _ep in entry_points(group="qastream.cli"):
    _ep.load()(app)


if __name__ == "__main__":
    app()
