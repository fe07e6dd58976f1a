"""The topic names of the QA event stream. Partitions, retention and compaction are the platform's
business (`qastream_shared.topics.REGISTRY`); a consumer needs only the names."""

from __future__ import annotations

INBOUND_CONVERSATIONS = "qa.inbound.conversations"
TENANTS = "qa.tenants"
CONVERSATIONS = "qa.conversations"
SAMPLES = "qa.samples"
SCORECARDS = "qa.scorecards"
REVIEWS = "qa.reviews"
ASSIGNMENTS = "qa.assignments"
DISPUTES = "qa.disputes"
CALIBRATIONS = "qa.calibrations"
COACHING = "qa.coaching"


def dlq(service: str) -> str:
    """A service's dead-letter topic: the original record, its headers, and `dlq_reason`."""
    return f"qa.dlq.{service}"
