"""Blind review: with the tenant's `blind` option on, reviewer keys never see who the agent was."""

from __future__ import annotations

from typing import Any

from qastream_scoring.workflow.pool import ReviewerPool
from qastream_shared.events import Role

# Who the agent is, and who disputed (the agent or their team lead) says as much.
AGENT_FIELDS = ("agent_id", "agent_ids", "team", "opened_by")


def applies(pool: ReviewerPool, role: Role) -> bool:
    return pool.blind and role is Role.reviewer


def hide_agent(view: dict[str, Any]) -> dict[str, Any]:
    """A review or assignment view without the agent's identity (and its transcript's, when it has one)."""
    out = {k: v for k, v in view.items() if k not in AGENT_FIELDS}
    if isinstance(out.get("conversation"), dict):
        conv = {k: v for k, v in out["conversation"].items() if k not in AGENT_FIELDS}
        conv["turns"] = [
            {k: v for k, v in t.items() if not (k == "author" and t.get("role") == "agent")}
            for t in conv.get("turns", [])
        ]
        out["conversation"] = conv
    return out
