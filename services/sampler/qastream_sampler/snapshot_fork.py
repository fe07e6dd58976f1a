"""Writing a state snapshot beside the consumer instead of inside its batch: a forked child writes it.

A snapshot must describe exactly the inputs committed before it, and the next batches change the state in
place. Encoding the state is CPU work in proportion to its size (seconds at 100,000 conversations), and in
the batch's transaction it held that batch, and every hop behind it, for as long. `os.fork()` at the end of
a committed batch takes the state as it is then (copy-on-write pages) in a few milliseconds: the child
encodes and writes it with its own connection (`snapshot_store.save`, in a transaction of its own) and exits
with a status; the parent's consumer goes on with the next batch at once, and its loop reaps the child.

The child touches nothing of the parent's but the state: it runs a fresh event loop and engine, leaves the
parent's sockets and connections alone, never collects garbage (a collection would copy the parent's pages),
runs at the lowest CPU priority, and exits with `os._exit`, so no finaliser or exit handler of the parent's
runs in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import sys
import traceback
from typing import TYPE_CHECKING

from qastream_sampler import snapshot_store
from qastream_shared.db import create_engine, session_factory
from qastream_shared.settings import Settings

if TYPE_CHECKING:
    from qastream_sampler.store import SamplerStore

WRITTEN, SUPERSEDED, FAILED = 0, 3, 1  # the child's exit statuses
LOWEST_PRIORITY = 19  # the child's niceness


def start(store: SamplerStore, settings: Settings, schema: str) -> int:
    """Forks a child that writes `store`'s state as it is now; returns its pid (in the parent)."""
    pid = os.fork()
    if pid:
        return pid
    status = FAILED
    try:
        _detach()
        status = WRITTEN if asyncio.run(_write(store, settings, schema)) else SUPERSEDED
    except BaseException:  # the parent logs the status; the reason goes to the shared stderr
        with contextlib.suppress(Exception):
            traceback.print_exc()
            sys.stderr.flush()
    finally:
        os._exit(status)


def _detach() -> None:
    gc.disable()
    # No record waits on the snapshot, while every record waits on the consumers: the child's seconds of
    # encoding take the cores only when the services leave them idle, not a share beside them.
    os.setpriority(os.PRIO_PROCESS, 0, LOWEST_PRIORITY)
    # The parent's event loop wakes on signals through this fd: a signal to the child must not reach it.
    signal.set_wakeup_fd(-1)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)


async def _write(store: SamplerStore, settings: Settings, schema: str) -> bool:
    engine = create_engine(settings, schema, pool_size=1)
    try:
        async with session_factory(engine)() as session, session.begin():
            return await snapshot_store.save(session, store)
    finally:
        await engine.dispose()


def finished(pid: int) -> int | None:
    """The child's exit status once it has exited (reaping it), else None."""
    try:
        done, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:  # reaped elsewhere: its result is unknown, so it counts as failed
        return FAILED
    return os.waitstatus_to_exitcode(status) if done else None
