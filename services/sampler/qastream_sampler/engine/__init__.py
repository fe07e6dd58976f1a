"""The sampler's decision engine: pure functions over one tenant's `SamplerState`.

Replay determinism with several consumers. Events of one conversation share a partition, so everything
decided from one conversation's own facts (auto policy, random, targeted rules, late feedback) is a pure
function of that partition's order. Two things need facts from other partitions: per-agent/team quotas
(and the targeted fallback), and the `new_agent` rule (the agent's first conversation). Those are decided
only by `close`, in event time, once the watermark has passed, from sets that no interleaving can change:

* A conversation is *on time* when its event time + grace is not before the highest conversation event time
  seen earlier on its own partition (`partition_high`). That is a property of the partition's order alone.
  Only on-time conversations enter quota pools, fallback pools and the agents' first-seen dates.
* The watermark W is the minimum over all partitions of that per-partition high. Once W > t + grace, every
  on-time conversation with event time <= t has been observed (any later one would find its partition's
  high > t + grace and be late). So a slot ending at t closes on a complete, interleaving-free set, and
  picks the conversations with the smallest hash: bottom-k, a simple random sample without replacement.
* Feedback on a conversation still awaiting a close-time decision for a plan is *parked* and resolved at
  that close with a fixed precedence (new_agent, then fallback, then the first parked trigger); feedback
  after the close sees "already sampled" or triggers at once. Both orders give the same decision, and every
  decision carries event times only.

All functions mutate the given state in place and return the decisions they made, in a deterministic order.
The state's dicts are keyed like the tables that hold them (see `SamplerState`).
"""

from qastream_sampler.engine.close import close
from qastream_sampler.engine.observe import (
    SENTIMENT_SCORER,
    observe_conversation,
    observe_csat,
    observe_review,
    observe_update,
)
from qastream_sampler.engine.periods import period_bounds
from qastream_sampler.engine.rules import first_matching_rule, in_scope, rule_matches, stratum_value
from qastream_sampler.engine.state import (
    Candidate,
    ConversationFacts,
    Pending,
    Pool,
    PoolKey,
    SamplerConfig,
    SamplerState,
    UnknownConversation,
    as_utc,
    watermark,
)
from qastream_shared.events import conversation_time

__all__ = [
    "SENTIMENT_SCORER",
    "Candidate",
    "ConversationFacts",
    "Pending",
    "Pool",
    "PoolKey",
    "SamplerConfig",
    "SamplerState",
    "UnknownConversation",
    "as_utc",
    "close",
    "conversation_time",
    "first_matching_rule",
    "in_scope",
    "observe_conversation",
    "observe_csat",
    "observe_review",
    "observe_update",
    "period_bounds",
    "rule_matches",
    "stratum_value",
    "watermark",
]
