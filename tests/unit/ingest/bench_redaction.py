"""Throughput of import + redaction on the real STAR data (not a test: run it by hand).

uv run python tests/unit/ingest/bench_redaction.py [path/to/star.jsonl]
"""

import sys
import time
from collections import Counter
from pathlib import Path

from qastream_ingest.importers import read_conversations
from qastream_ingest.redaction import RedactionPolicy, Redactor, tenant_pepper
from qastream_shared.conversation import Conversation

STAR = Path(__file__).parents[3].parent / "shared" / "data" / "conversations" / "star.jsonl"
ROUNDS = 5


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else STAR
    started = time.perf_counter()
    with path.open("rb") as f:
        conversations = [c for c in read_conversations(f) if isinstance(c, Conversation)]
    imported = len(conversations) / (time.perf_counter() - started)
    redactor = Redactor(RedactionPolicy(), tenant_pepper("bench-pepper", "bench"))
    counts: Counter[str] = Counter()
    best = 0.0
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for conversation in conversations:
            counts.update(redactor.redact(conversation).counts)
        best = max(best, len(conversations) / (time.perf_counter() - started))
    turns = sum(len(c.turns) for c in conversations) / len(conversations)
    print(f"{len(conversations)} conversations, {turns:.1f} turns each")
    print(
        f"import: {imported:,.0f} conversations/s; redaction: {best:,.0f} conversations/s (best of {ROUNDS})"
    )
    print(f"replacements per round: {dict((k, n // ROUNDS) for k, n in counts.items())}")


if __name__ == "__main__":
    main()
