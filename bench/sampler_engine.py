"""The sampler's decision engine alone (observe + close, in memory): CPU time per conversation.

    uv run python -m bench.sampler_engine [--conversations 50000]

No broker or database: the engine is pure. Three plans (3% random, 5 per agent-week, 12 per team-week in
4 slots) over synthetic conversations of 2,000 agents across 4 weeks. The baseline, in the same run, is the
floor of any per-conversation decision: one `uniform` hash draw per conversation. Prints JSON.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta
from typing import Any

from bench.common import TINY_HELP, emit
from qastream_sampler.decisions import uniform
from qastream_sampler.engine import SamplerConfig, SamplerState, close, observe_conversation
from qastream_sampler.plans import parse_plan
from tests.unit.sampler.sampler_synth import T0, TENANT, population

CONFIG = SamplerConfig(grace=timedelta(hours=1), late_window=timedelta(days=14))
PLANS = (
    {"plan_id": "rand", "kind": "random", "rate": 0.03, "priority": 1},
    {"plan_id": "agent5", "kind": "stratified", "quota": 5, "priority": 2},
    {"plan_id": "team12", "kind": "stratified", "by": "team", "quota": 12, "slots": 4, "priority": 3},
)


def main(n: int) -> dict[str, Any]:
    pop = population(n, agents=min(2000, max(1, n // 25)), weeks=4, seed=7)
    state = SamplerState(TENANT)
    for plan in PLANS:
        state.put_plan(parse_plan(plan))

    started = time.process_time()
    for e in pop:
        uniform(TENANT, "rand", 1, e.conversation.conversation_id, 0)
    baseline = time.process_time() - started

    started = time.process_time()
    decisions = [d for e in pop for d in observe_conversation(state, e, partition_high=None, config=CONFIG)]
    decisions += close(state, T0 + timedelta(days=400), config=CONFIG)
    engine = time.process_time() - started
    return {
        "conversations": n,
        "decisions": len(decisions),
        "engine": {"cpu_s": round(engine, 3), "per_s": round(n / engine, 1)},
        "baseline_one_hash_per_conversation": {"cpu_s": round(baseline, 3), "per_s": round(n / baseline, 1)},
        "engine_cpu_over_baseline": round(engine / baseline, 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    emit(main(1_000 if args.tiny else args.conversations))
