"""Session fixtures for a real broker and database (DESIGN.md "Tests").

Order: KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL when set; else testcontainers when a Docker engine answers;
else the local launcher with state in .qa/test-stack ($QA_STACK_DIR overrides), left running for the next run.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from qastream_shared.stack import Stack, sqlalchemy_url
from qastream_shared.testing import ISSUED, drop_isolated

REPO = Path(__file__).resolve().parents[1]


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # no SDK, no socket, no engine: all mean "no docker"
        return False


@pytest.fixture(scope="session", autouse=True)
async def _drop_isolated_at_session_end() -> AsyncIterator[None]:
    """Each test's schema and topic prefix (testing.isolated_settings) are dropped once the session ends,
    so they do not pile up on a shared stack across runs."""
    yield
    issued = list(ISSUED)
    ISSUED.clear()
    for failure in await drop_isolated(issued):  # e.g. a fault test's private stack, already gone
        warnings.warn(f"not dropped: {failure}", stacklevel=1)


@pytest.fixture(scope="session")
def stack() -> Stack:
    """The launcher's handle; fault tests use it to stop/start Postgres and restart Kafka when it owns them."""
    return Stack(Path(os.environ.get("QA_STACK_DIR") or REPO / ".qa" / "test-stack"))


@pytest.fixture(scope="session")
def _containers() -> Iterator[contextlib.ExitStack | None]:
    needed = not (os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("DATABASE_URL"))
    if not needed or not _docker_answers():
        yield None
        return
    with contextlib.ExitStack() as started:
        yield started


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: Stack, _containers: contextlib.ExitStack | None) -> str:
    if env := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return env
    if _containers is not None:
        from testcontainers.kafka import KafkaContainer

        return str(_containers.enter_context(KafkaContainer().with_kraft()).get_bootstrap_server())
    return stack.ensure_kafka()


@pytest.fixture(scope="session")
def database_url(stack: Stack, _containers: contextlib.ExitStack | None) -> str:
    if env := os.environ.get("DATABASE_URL"):
        return sqlalchemy_url(env)
    if _containers is not None:
        from testcontainers.postgres import PostgresContainer

        pg = _containers.enter_context(
            PostgresContainer("postgres:15", username="qastream", password="qastream", dbname="qastream")
        )
        return str(pg.get_connection_url(driver="asyncpg"))
    return stack.ensure_postgres()


@pytest.fixture
def owned_kafka(stack: Stack, kafka_bootstrap: str) -> Iterator[Stack]:
    """The stack handle, for tests that restart the broker; skips when the broker is not the launcher's."""
    if not stack.owns_kafka(kafka_bootstrap):
        pytest.skip(f"Kafka at {kafka_bootstrap} is external to the launcher in {stack.state_dir}")
    yield stack
    stack.start_kafka()


@pytest.fixture
def owned_postgres(stack: Stack, database_url: str) -> Iterator[Stack]:
    """The stack handle, for tests that stop PostgreSQL; skips when the server is not the launcher's."""
    if not stack.owns_postgres(database_url):
        pytest.skip(f"PostgreSQL at {database_url} is external to the launcher in {stack.state_dir}")
    yield stack
    stack.start_postgres()  # a failed fault test must not leave the database down for the rest
