"""The whole stack: PostgreSQL, Kafka, the topics and the services, brought up and down together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from qastream_shared.services import SERVICES
from qastream_shared.settings import Settings
from qastream_shared.stack.kafka import KafkaBroker
from qastream_shared.stack.postgres import PostgresServer
from qastream_shared.stack.services import ServiceProcesses
from qastream_shared.stack.state import port_open
from qastream_shared.topics import ensure_topics

READYZ_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    pid: int | None
    port: int | None
    alive: bool
    external: bool
    url: str
    problem: str = ""  # what a live service's /readyz reports as not ok, e.g. "broker unavailable: ..."


class Stack(PostgresServer, KafkaBroker, ServiceProcesses):
    """One local stack rooted at ``state_dir``. Cheap to construct; all state lives on disk."""

    def up(self, services: Sequence[str] = SERVICES) -> dict[str, Any]:
        """Start (or reuse) Postgres, Kafka, the topics and the given services; returns stack.json."""
        self.ensure_postgres()
        bootstrap = self.ensure_kafka()
        self.report("creating topics")
        asyncio.run(ensure_topics(Settings.model_validate({"KAFKA_BOOTSTRAP_SERVERS": bootstrap})))
        if services:
            self.start_services(services)
        return self.state()

    def down(self) -> None:
        """Stop everything this state dir started; external servers are left alone."""
        self.stop_services()
        self.stop_kafka()
        self.stop_postgres()

    def status(self) -> list[ComponentStatus]:
        state = self.state()
        rows: list[ComponentStatus] = []
        pg = state.get("postgres")
        if pg:
            pid = None if pg["external"] else self._pg_pid()
            alive = pid is not None and port_open(pg["port"])
            rows.append(ComponentStatus("postgres", pid, pg.get("port"), alive, pg["external"], pg["url"]))
        kafka = state.get("kafka")
        if kafka:
            proc = None if kafka["external"] else self._owned("kafka")
            alive = proc is not None and port_open(kafka["port"])
            pid = proc.pid if proc else None
            rows.append(
                ComponentStatus("kafka", pid, kafka.get("port"), alive, kafka["external"], kafka["bootstrap"])
            )
        for name, svc in state.get("services", {}).items():
            proc = self._owned(name)
            alive = proc is not None and port_open(svc["port"])
            rows.append(
                ComponentStatus(
                    name,
                    proc.pid if proc else None,
                    svc["port"],
                    alive,
                    False,
                    svc["url"],
                    readiness_problems(svc["url"]) if alive else "",
                )
            )
        return rows


def readiness_problems(url: str) -> str:
    """The checks a service's /readyz does not report as ok, as "name: value; ..."; "" when all are."""
    try:
        checks = httpx.get(f"{url}/readyz", timeout=READYZ_TIMEOUT_S).json().get("checks", {})
    except (httpx.HTTPError, ValueError) as exc:
        return f"readyz: {exc.__class__.__name__}"
    return "; ".join(f"{name} {value}" for name, value in checks.items() if value != "ok")
