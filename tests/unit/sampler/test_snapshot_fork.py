"""The forked snapshot writer: what the child is before it writes."""

from __future__ import annotations

import os
from typing import Any

import pytest

from qastream_sampler import snapshot_fork
from qastream_shared.settings import Settings


def test_the_snapshot_child_writes_at_the_lowest_cpu_priority_and_the_parent_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def write(store: Any, settings: Settings, schema: str) -> bool:
        # The child's exit status says what it saw: WRITTEN at the lowest priority, SUPERSEDED otherwise.
        return os.getpriority(os.PRIO_PROCESS, 0) == snapshot_fork.LOWEST_PRIORITY

    monkeypatch.setattr(snapshot_fork, "_write", write)
    parent = os.getpriority(os.PRIO_PROCESS, 0)
    pid = snapshot_fork.start(None, Settings(), "s")  # type: ignore[arg-type]
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == snapshot_fork.WRITTEN
    assert os.getpriority(os.PRIO_PROCESS, 0) == parent
