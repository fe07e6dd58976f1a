"""Which failures are the infrastructure's (retry them, never skip a record) and which are a bug or a bad
record (isolate and dead-letter)."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError


def is_transient(exc: BaseException) -> bool:
    """Infrastructure trouble that retrying will cure, as opposed to a bug or a bad record."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        if isinstance(
            seen,
            OSError
            | ConnectionError
            | TimeoutError
            | OperationalError
            | InterfaceError
            | asyncpg.PostgresConnectionError
            | asyncpg.InterfaceError
            | asyncpg.CannotConnectNowError
            | asyncpg.AdminShutdownError
            # The server's or the role's connection limit: a burst meets it before the pool is full.
            | asyncpg.TooManyConnectionsError
            | asyncpg.SerializationError
            | asyncpg.DeadlockDetectedError
            | KafkaError,
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
