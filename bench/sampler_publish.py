"""What publishing one sampling decision costs the sampler's CPU: ConversationSampled's JSON around the
conversation's ingested bytes (`sampled_json`, what the sampler does) against dumping the whole event from
its model (the raw baseline, what it did), on real STAR conversations.

    uv run python -m bench.sampler_publish [--conversations 2000] [--rounds 5]

No broker or database: both are pure CPU. Each conversation is ingested as ingest publishes it (the
envelope's JSON) and decoded as the sampler's consumer decodes it; the decode's own cost is printed beside
them for scale (bench.platform measures it on the broker). Best of `--rounds`, in microseconds per
conversation. Prints JSON.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from itertools import cycle, islice
from typing import Any

from bench.common import TINY_HELP, emit
from qastream_sampler.decisions import Decision, sampled_json, to_event
from qastream_shared.events import ConversationIngested, Envelope, Purpose
from qastream_shared.testing import star_records

AT = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def best_us(f: Callable[[], object], n: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        started = time.process_time()
        f()
        best = min(best, time.process_time() - started)
    return round(best / n * 1e6, 2)


def main(n: int, rounds: int) -> dict[str, Any]:
    bodies = [
        Envelope(
            data=ConversationIngested.model_validate({"conversation": r, "ingested_at": AT}),
            source="ingest",
            tenant="bench",
            key=r["conversation_id"],
        ).value()
        for r in islice(cycle(star_records()), n)
    ]
    validator = ConversationIngested.__pydantic_validator__
    ingested = [validator.validate_json(b) for b in bodies]
    events = [
        to_event(
            Decision(e.conversation.conversation_id, Purpose.auto, "auto", 1, 0, None, None, 1.0, "auto", AT),
            e.conversation,
        )
        for e in ingested
    ]
    pairs = list(zip(events, bodies, strict=True))
    spliced = best_us(lambda: [sampled_json(e, b) for e, b in pairs], n, rounds)
    dumped = best_us(lambda: [e.model_dump_json().encode() for e in events], n, rounds)
    decoded = best_us(lambda: [validator.validate_json(b) for b in bodies], n, rounds)
    return {
        "conversations": n,
        "mean_body_bytes": round(sum(map(len, bodies)) / n),
        "us_per_decision": {"sampled_json": spliced, "baseline_model_dump": dumped},
        "sampled_json_over_model_dump": round(spliced / dumped, 3),
        "for_scale_decode_us_per_conversation": decoded,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    a = parser.parse_args()
    emit(main(50 if a.tiny else a.conversations, 2 if a.tiny else a.rounds))
