"""Runs one part of the probe service in its own process, so fault tests can SIGKILL it.

usage: python -m tests.integration.probe relay|consume [--crash-after-db-commit]
Settings come from the environment (DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, QA_TOPIC_PREFIX, QA_DB_SCHEMA).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from qastream_shared.consumer import BatchConsumer
from qastream_shared.outbox import OutboxRelay
from qastream_shared.runtime import ServiceRuntime
from qastream_shared.settings import Settings
from qastream_shared.telemetry import configure
from tests.integration.probe import SPEC


class CrashAfterDbCommit(BatchConsumer):
    """Dies after the first batch's DB transaction commits and before its offsets are committed."""

    async def _commit(self, consumer, batch):
        print("crashing between DB commit and offset commit", flush=True)
        os._exit(137)


async def main(part: str, crash: bool) -> None:
    settings = Settings()
    configure(settings, "probe")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    runtime = ServiceRuntime(SPEC, settings)
    if part == "relay":
        await OutboxRelay(settings, runtime.schema, "probe").run(stop)
    else:
        consumer = runtime.batch_consumer(CrashAfterDbCommit if crash else BatchConsumer)
        await consumer.run(stop)
    await runtime.engine.dispose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], "--crash-after-db-commit" in sys.argv))
