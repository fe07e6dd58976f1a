"""The unit of work an HTTP request runs in: one rule for every service's API, so no endpoint picks its own.

A safe method (GET, HEAD: RFC 9110 §9.2.1) only reads, so it runs on autocommit: no BEGIN and COMMIT round
trips, each statement its own snapshot (no endpoint needs a common one: none publishes, and a page's reads
are keyed by ids the first read returned). Any other method runs in one transaction with the outbox rows it
publishes. tests/integration/test_request_transactions.py holds every endpoint of every service to it.

The few deliberate departures say so where they are: a write hidden in a safe method that needs a
transaction (`GET /v1/assignments/next` claiming from the pool) opens `runtime.unit_of_work()` itself, and
a write that is one statement guarding its own preconditions (a draft save) may use `runtime.autocommit()`.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from fastapi import Request

from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import UnitOfWork

SAFE_METHODS = frozenset({"GET", "HEAD"})


def work(request: Request) -> AbstractAsyncContextManager[UnitOfWork]:
    """`async with work(request) as uow:`: autocommit for a safe method, else one transaction."""
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime.autocommit() if request.method in SAFE_METHODS else runtime.unit_of_work()
