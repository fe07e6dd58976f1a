"""`qa up` after a crash of the stack's own broker and database, with `qa env`'s variables exported: it
recognises them as its own, restarts them on the same ports, says so, and `qa status` shows a service that
has lost its broker. Fault test: it kills the launcher's own servers, so it runs only where the test stack
owns them (never against a shared or external one)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
from typer.testing import CliRunner

from qastream_shared.cli import app
from qastream_shared.stack import Stack
from qastream_shared.testing import isolated_settings, settings_env

pytestmark = pytest.mark.integration


@pytest.fixture
def sampler_of_the_stack(
    owned_kafka: Stack, owned_postgres: Stack, kafka_bootstrap: str, database_url: str
) -> Iterator[Stack]:
    """A real sampler started by the launcher, in a schema and topic prefix of its own."""
    stack = owned_kafka
    settings = isolated_settings(database_url, kafka_bootstrap)
    saved = dict(os.environ)
    os.environ.update(settings_env(settings))
    try:
        stack.up(services=["sampler"])
        yield stack
    finally:
        stack._stop_owned("sampler")
        state = stack.state()
        state.get("services", {}).pop("sampler", None)
        stack._save(state)
        os.environ.clear()
        os.environ.update(saved)


def _status(stack: Stack) -> dict[str, str]:
    result = CliRunner().invoke(app, ["status", "--state-dir", str(stack.state_dir)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    return {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 5}


def _wait_for(check: Callable[[], object], within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.5)  # polling a subprocess's state: there is no event to await


def test_up_restarts_its_own_dead_broker_and_database_on_the_same_ports(
    sampler_of_the_stack: Stack, kafka_bootstrap: str, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = sampler_of_the_stack
    before = stack.state()
    # As after `eval "$(qa env)"`: the environment names the stack's own servers.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("DATABASE_URL", database_url)

    _wait_for(lambda: "broker" not in _status(stack)["sampler"])
    broker = stack._owned("kafka")
    assert broker is not None
    broker.send_signal(signal.SIGKILL)
    psutil.wait_procs([broker], timeout=30)
    _wait_for(lambda: "broker unavailable" in _status(stack)["sampler"])
    assert "no" in _status(stack)["kafka"]

    postmaster = psutil.Process(stack._pg_pid() or 0)
    postmaster.send_signal(signal.SIGKILL)
    psutil.wait_procs([postmaster], timeout=30)

    result = CliRunner().invoke(app, ["up", "--no-services", "--state-dir", str(stack.state_dir)])
    assert result.exit_code == 0, result.output
    restarted = re.search(r"restarted (.*?) \(found dead", " ".join(result.output.split()))
    assert restarted is not None and set(restarted.group(1).split(", ")) == {"kafka", "postgres"}, (
        result.output
    )
    after = stack.state()
    assert after["kafka"] == before["kafka"] and after["postgres"] == before["postgres"]  # same ports
    assert stack.owns_kafka(kafka_bootstrap) and stack.owns_postgres(database_url)
    # The still-running service reconnects to the broker on its old address.
    _wait_for(lambda: "broker" not in _status(stack)["sampler"])
