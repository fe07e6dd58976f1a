"""Redaction throughput on the real STAR conversations, and RE2's linear time on a pattern that backtracks.

    uv run python -m bench.redaction [--conversations N (default: all)] [--rounds 5]

No broker or database. Baselines in the same run: parsing the same conversations (import), and a custom
pattern's scan of plain text of the same length as the pathological input. Prints JSON.
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import Counter
from typing import Any

from bench.common import TINY_HELP, emit
from qastream_ingest.importers import read_conversations
from qastream_ingest.redaction import RedactionPolicy, Redactor, tenant_pepper
from qastream_shared.conversation import Conversation
from qastream_shared.testing import STAR


def main(limit: int | None, rounds: int) -> dict[str, Any]:
    started = time.perf_counter()
    with STAR.open("rb") as f:
        conversations = [
            c for c in itertools.islice(read_conversations(f), limit) if isinstance(c, Conversation)
        ]
    imported = time.perf_counter() - started
    redactor = Redactor(RedactionPolicy(), tenant_pepper("bench-pepper", "bench"))
    counts: Counter[str] = Counter()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for conversation in conversations:
            counts.update(redactor.redact(conversation).counts)
        best = min(best, time.perf_counter() - started)
    n = len(conversations)

    nested = Redactor(
        RedactionPolicy(custom=[{"name": "nested", "pattern": "(a+)+b"}]), tenant_pepper("p", "b")
    )
    plain = Redactor(RedactionPolicy(custom=[{"name": "plain", "pattern": "b"}]), tenant_pepper("p", "b"))
    text = "a" * 50_000 + "!"
    pathological = _seconds(lambda: nested.redact_text(text, Counter()))
    linear = _seconds(lambda: plain.redact_text(text, Counter()))
    return {
        "conversations": n,
        "redaction": {"seconds": round(best, 4), "per_s": round(n / best, 1), "best_of": rounds},
        "baseline_import": {"seconds": round(imported, 4), "per_s": round(n / imported, 1)},
        "replacements_per_round": {k: v // rounds for k, v in counts.items()},
        "nested_quantifier_on_50k_chars_s": round(pathological, 5),
        "baseline_plain_pattern_on_50k_chars_s": round(linear, 5),
        "nested_over_plain": round(pathological / linear, 1),
    }


def _seconds(work: Any) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    emit(main(50, 1) if args.tiny else main(args.conversations, args.rounds))
