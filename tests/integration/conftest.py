from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.stack import Stack
from qastream_shared.testing import ISSUED, isolated_settings, settings_env
from tests.integration.probe import SPEC

REPO = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def private_servers(state_dir: Path) -> Iterator[Stack]:
    """A PostgreSQL and a Kafka the launcher owns in `state_dir`, for tests that stop or restart them; down after."""
    with pytest.MonkeyPatch.context() as mp:
        # Fixed ports meant for the shared stack must not leak into the private one.
        mp.delenv("QA_PG_PORT", raising=False)
        mp.delenv("QA_KAFKA_PORT", raising=False)
        stack = Stack(state_dir)
        bootstrap = None
        try:
            # start_* (unlike ensure_*) ignore DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS: always our own servers.
            stack.start_postgres()
            bootstrap = stack.start_kafka()
            yield stack
        finally:
            stack.down()
            # What tests made on these servers goes down with them: the session's drop has nothing to do there,
            # and would only warn that it cannot reach them.
            ISSUED[:] = [s for s in ISSUED if s.kafka_bootstrap_servers != bootstrap]
            if not stack.pg_home.is_relative_to(stack.state_dir):  # root's PGDATA lives under /var/tmp
                shutil.rmtree(stack.pg_home, ignore_errors=True)


@pytest.fixture
def settings(database_url: str, kafka_bootstrap: str) -> Settings:
    return isolated_settings(database_url, kafka_bootstrap)


@pytest.fixture
async def probe(settings: Settings) -> AsyncIterator[ServiceRuntime]:
    """The probe service's schema and topics, migrated; its loops are started by each test as needed."""
    runtime = ServiceRuntime(SPEC, settings)
    from qastream_shared.migrations import migrate
    from qastream_shared.topics import dlq_topic, ensure_topics

    await migrate(settings, runtime.schema, SPEC.migrations)
    await ensure_topics(settings, extra=[dlq_topic(SPEC.name)])
    yield runtime
    await runtime.engine.dispose()


class Proc:
    """A child process running part of a service, killable with SIGKILL."""

    def __init__(self, args: list[str], settings: Settings, extra_env: dict[str, str] | None = None) -> None:
        env = {**os.environ, **settings_env(settings), **(extra_env or {})}
        self.popen = subprocess.Popen(
            [sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(10)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        out = self.popen.stdout.read() if self.popen.stdout and self.popen.poll() is not None else b""
        return out.decode(errors="replace")


@pytest.fixture
def spawn(settings: Settings) -> Iterator[type[Proc]]:
    procs: list[Proc] = []

    class Tracked(Proc):
        def __init__(
            self, args: list[str], extra_env: dict[str, str] | None = None, s: Settings | None = None
        ):
            super().__init__(args, s or settings, extra_env)
            procs.append(self)

    yield Tracked
    for p in procs:
        p.stop()
