"""Per-process record of the evidence rows known stored, so a batch does not send again the (task, review) rows
earlier batches stored: a k-of-n firing cites every failure in its window, most of them cited already by the
firing before it (about half the rows bench.coaching sent).

Other replicas add evidence to the same tasks (an agent's reviews come from every partition), which only makes
the record incomplete: a row it lacks is sent and the insert's ON CONFLICT skips it. Removing evidence is what
would make it wrong, so every removal gives the task a fresh `evidence_seq` (task_store.remove_evidence; a task
taken up again after a withdrawal is a new row with a new one), and the record of a task is trusted only while
the task row read under its lock still has the `evidence_seq` it was made with. A batch that rolls back drops
what it recorded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from qastream_shared.runtime import ServiceRuntime
from qastream_shared.unit_of_work import UnitOfWork

# Tasks held per process (least recently used let go first): a few review ids each.
MAX_TASKS = 100_000
_EMPTY: frozenset[str] = frozenset()


class KnownEvidence:
    def __init__(self, max_tasks: int = MAX_TASKS) -> None:
        self.max_tasks = max_tasks
        self._held: OrderedDict[str, tuple[int, set[str]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._held)

    def of(self, task_id: str, evidence_seq: int) -> frozenset[str] | set[str]:
        """The task's review ids known stored, if the record was made at this `evidence_seq`; else none."""
        held = self._held.get(task_id)
        if held is None or held[0] != evidence_seq:
            return _EMPTY
        return held[1]

    def add(self, uow: UnitOfWork, stored: dict[str, tuple[int, Iterable[str]]]) -> None:
        """task id → (its evidence_seq, review ids stored by this batch or found there by its insert)."""
        for task_id, (seq, review_ids) in stored.items():
            held = self._held.get(task_id)
            if held is None or held[0] != seq:
                held = self._held[task_id] = (seq, set())
            held[1].update(review_ids)
            self._held.move_to_end(task_id)
        touched = set(stored)
        uow.on_rollback.append(lambda: self._drop(touched))
        while len(self._held) > self.max_tasks:
            self._held.popitem(last=False)

    def _drop(self, task_ids: set[str]) -> None:
        for task_id in task_ids:
            self._held.pop(task_id, None)


def known_evidence_of(runtime: ServiceRuntime) -> KnownEvidence:
    found = runtime.components.get("known_evidence")
    if not isinstance(found, KnownEvidence):
        found = runtime.components["known_evidence"] = KnownEvidence()
    return found
