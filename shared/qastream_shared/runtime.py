"""One process of a service: migrations, topics, outbox relay, tenant directory, consumer and HTTP API.

`ServiceRuntime` is usable without HTTP (tests, benchmarks); `create_app` wraps it in FastAPI's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from pydantic import BaseModel
from sqlalchemy import MetaData, Table, text

from qastream_shared import api_contract, http, telemetry
from qastream_shared.admission import Admission, TenantLookup
from qastream_shared.auth import KeyCache
from qastream_shared.collector import time_collections
from qastream_shared.consumer import BatchConsumer
from qastream_shared.db import create_engine, reader_factory, session_factory
from qastream_shared.directory import OwnTenants, TenantDirectory
from qastream_shared.events import Event
from qastream_shared.migrations import migrate
from qastream_shared.outbox import OutboxRelay
from qastream_shared.session_api import router as session_router
from qastream_shared.settings import Settings, get_settings
from qastream_shared.topics import dlq_topic, ensure_topics
from qastream_shared.unit_of_work import Handler, UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class ServiceSpec:
    name: str
    metadata: MetaData
    tables: dict[str, Table]
    migrations: str
    consumes: Sequence[str] = ()
    # Which event types each consumed topic may carry; anything else is dead-lettered before the handler.
    accepts: Mapping[str, Sequence[type[Event]]] = field(default_factory=dict)
    # Which event types the service publishes on each topic (its dead letters aside); publishing anything
    # else raises. The AsyncAPI document's send operations are made from it.
    produces: Mapping[str, Sequence[type[Event]]] = field(default_factory=dict)
    handler: Callable[[ServiceRuntime], Handler] | None = None
    uses_directory: bool = True
    # The service whose own tenants table is the source of qa.tenants (ingest): admission reads that table.
    owns_tenants: bool = False
    routers: Sequence[APIRouter] = field(default_factory=list)
    # Extra loops the service runs beside its consumer, each until the stop event is set.
    tasks: Sequence[Callable[[ServiceRuntime, asyncio.Event], Awaitable[None]]] = ()
    title: str = ""
    # The service's own default batch size, for consumers whose per-batch cost is high; an explicit
    # QA_CONSUMER_BATCH_SIZE still wins.
    consumer_batch_size: int | None = None
    # Its own latency cap on batches (Settings.consumer_batch_target_ms), for consumers whose per-record cost
    # dwarfs a batch's fixed costs; an explicit QA_CONSUMER_BATCH_TARGET_MS still wins.
    consumer_batch_target_ms: int | None = None
    # A BatchConsumer subclass for services that wrap each batch (reporting guards it against a rebuild's swap).
    consumer_class: type[BatchConsumer] = BatchConsumer
    # Models the OpenAPI document publishes beyond those its routes name (e.g. a body parsed by hand).
    openapi_models: Sequence[type[BaseModel]] = ()


def schema_of(spec: ServiceSpec, settings: Settings) -> str:
    return settings.db_schema or spec.name


async def prepare(spec: ServiceSpec, settings: Settings) -> None:
    """The service's migrations and topics (its dead-letter topic among them); idempotent, safe to race."""
    await migrate(settings, schema_of(spec, settings), spec.migrations)
    await ensure_topics(settings, extra=[dlq_topic(spec.name)])


class ServiceRuntime:
    def __init__(self, spec: ServiceSpec, settings: Settings) -> None:
        self.spec = spec
        own = {
            name: value
            for name, value in (
                ("consumer_batch_size", spec.consumer_batch_size),
                ("consumer_batch_target_ms", spec.consumer_batch_target_ms),
            )
            if value and name not in settings.model_fields_set
        }
        if own:
            settings = settings.model_copy(update=own)
        self.settings = settings
        self.schema = schema_of(spec, settings)
        self.engine = create_engine(settings, self.schema)
        self.sessions = session_factory(self.engine)
        self.readers = reader_factory(self.engine)
        self.key_cache = KeyCache(settings.auth_cache_ttl_s)
        self.tables = spec.tables
        self.directory = (
            TenantDirectory(settings, self.sessions, self.tables, self.key_cache)
            if spec.uses_directory
            else None
        )
        self.relay = OutboxRelay(settings, self.schema, spec.name)
        self.consumer: BatchConsumer | None = None
        # Objects a service shares between its handler and its HTTP API (e.g. an in-memory cache).
        self.components: dict[str, Any] = {}
        self._stop = asyncio.Event()
        # The relay stops last, so it publishes what the consumer's final batch wrote to the outbox.
        self._relay_stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._relay_task: asyncio.Task[None] | None = None

    async def start(self, *, consume: bool = True) -> None:
        time_collections()
        if self.settings.migrate_on_start:
            await prepare(self.spec, self.settings)
        self._relay_task = self._spawn(self.relay.run(self._relay_stop), "relay")
        if self.directory is not None:
            self._spawn(self.directory.run(self._stop), "directory")
        if consume and self.spec.consumes and self.spec.handler is not None:
            self.consumer = self.batch_consumer(self.spec.consumer_class)
            self._spawn(self.consumer.run(self._stop), "consumer")
            for task in self.spec.tasks:
                self._spawn(task(self, self._stop), getattr(task, "__name__", "task"))

    def batch_consumer(self, cls: type[BatchConsumer] = BatchConsumer) -> BatchConsumer:
        """The service's consumer, wired to this runtime's database and handler (not started)."""
        assert self.spec.handler is not None
        return cls(
            settings=self.settings,
            service=self.spec.name,
            topics=self.spec.consumes,
            sessions=self.sessions,
            tables=self.tables,
            schema=self.schema,
            handler=self.spec.handler(self),
            admission=Admission(self.spec.accepts, self.settings, self.tenant_lookup()),
            produces=self.spec.produces,
        )

    def tenant_lookup(self) -> TenantLookup | None:
        if self.spec.owns_tenants:
            return OwnTenants(self.tables["tenants"])
        return self.directory

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"{self.spec.name}-{name}")

        def done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None and not self._stop.is_set():
                log.error("%s task crashed: %r", name, t.exception(), exc_info=t.exception())
                # A dead loop must not leave a zombie process that looks healthy.
                self.failed = t.exception()

        task.add_done_callback(done)
        self._tasks.append(task)
        return task

    failed: BaseException | None = None

    @contextlib.asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """One transaction: effects plus the outbox rows they publish, committed together or not at all;
        then the unit's on_commit hooks, or its on_rollback hooks if it did not commit."""
        uow: UnitOfWork | None = None
        try:
            async with self.sessions() as session, session.begin():
                uow = UnitOfWork(
                    session, self.settings, self.tables["outbox"], self.schema, produces=self.spec.produces
                )
                yield uow
                await uow.flush()
        except BaseException:
            for hook in uow.on_rollback if uow is not None else ():
                hook()
            raise
        assert uow is not None
        for hook in uow.on_commit:
            hook()

    @contextlib.asynccontextmanager
    async def autocommit(self) -> AsyncIterator[UnitOfWork]:
        """No transaction: each statement commits on its own, so no BEGIN and COMMIT round trips. For reads
        that need no common snapshot, and for a write that is one statement guarding its own preconditions
        (e.g. `UPDATE … WHERE status = 'open'`). Publishing from it is refused: nothing would commit the
        outbox rows with the effect."""
        async with self.readers() as session:
            uow = UnitOfWork(session, self.settings, self.tables["outbox"], self.schema, produces={})
            yield uow

    async def stop(self) -> None:
        """Graceful, within QA_SHUTDOWN_GRACE_S: the consumer stops fetching, finishes and commits its batch
        and leaves the group; the other loops end; then the relay publishes what is left in the outbox.
        Whatever still runs at the deadline is cancelled: its batch is redelivered, its rows stay unsent,
        and the next replica finishes both (nothing is lost, the inbox dedupes)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_grace_s
        self._stop.set()
        workers = [t for t in self._tasks if t is not self._relay_task and not t.done()]
        if workers:
            await asyncio.wait(workers, timeout=max(0.0, deadline - loop.time()))
        self._relay_stop.set()
        self.relay.wake()
        if self._relay_task is not None and not self._relay_task.done():
            await asyncio.wait([self._relay_task], timeout=max(0.0, deadline - loop.time()))
        late = [t for t in self._tasks if not t.done()]
        for t in late:
            log.warning("%s did not stop within the grace period; cancelled", t.get_name())
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.engine.dispose()

    async def ready(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            async with self.readers() as session:  # autocommit: no BEGIN and ROLLBACK around the probe
                await session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {exc.__class__.__name__}"
        if self.consumer is not None:
            checks["consumer"] = "ok" if self.consumer.ready.is_set() else "joining"
        if self.failed is not None:
            checks["tasks"] = f"failed: {self.failed!r}"
        checks[BROKER_CHECK] = await broker_reachable(self.settings.kafka_bootstrap_servers)
        return checks


# Reported by /readyz but not part of its verdict: with the broker away, writes still commit to the outbox
# and wait there, so taking the service out of rotation would only turn a delay into errors.
BROKER_CHECK = "broker"


async def broker_reachable(bootstrap: str, timeout_s: float = 1.0) -> str:
    """ "ok" when a TCP connection to any bootstrap server opens, else why not (for /readyz and `qa status`)."""
    last = "no bootstrap server"
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
        except (OSError, TimeoutError, ValueError) as exc:
            last = f"unavailable: {exc.__class__.__name__}"
            continue
        writer.close()
        return "ok"
    return last


def create_app(spec: ServiceSpec, settings: Settings | None = None, *, consume: bool = True) -> FastAPI:
    settings = settings or get_settings()
    telemetry.configure(settings, spec.name)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = ServiceRuntime(spec, settings)
        app.state.runtime = runtime
        app.state.sessions = runtime.sessions
        app.state.readers = runtime.readers
        app.state.key_cache = runtime.key_cache
        app.state.tables = runtime.tables
        app.state.settings = settings
        await runtime.start(consume=consume)
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(
        title=spec.title or f"qastream {spec.name}",
        version="1.0.0",
        lifespan=lifespan,
        dependencies=[Depends(api_contract.safe_parameters)],
    )
    http.install(app)
    api_contract.install(app, spec.openapi_models)
    http.allow_console(app, settings)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Any:
        checks = await app.state.runtime.ready()
        ok = all(v == "ok" for k, v in checks.items() if k != BROKER_CHECK)
        return (
            http.problem(503, "Service Unavailable", **{"checks": checks}) if not ok else {"checks": checks}
        )

    # Every service signs browsers in and out and says who a session is, so a console session can be
    # checked against any of them.
    for router in [*spec.routers, session_router]:
        app.include_router(router)
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,readyz,metrics")
    return app


def serve(app_factory: Callable[[], FastAPI]) -> None:
    """Entry point of `python -m qastream_<service>`."""
    settings = get_settings()
    # uvicorn re-raises the SIGTERM it handled once its graceful shutdown is over, which would end the
    # process as "killed by a signal"; a stop that finished cleanly exits 0 instead.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    uvicorn.run(
        app_factory(),
        host=settings.http_host,
        port=settings.http_port or 8000,
        root_path=settings.http_root_path,
        log_config=None,
        access_log=False,
        # Open HTTP requests get a few seconds; the runtime's own grace period follows (lifespan shutdown).
        timeout_graceful_shutdown=5,
    )
