"""The event contract: one Pydantic model per CloudEvents type, by topic.

Every payload model lives here, once. `EVENT_TYPES` maps the `ce_type` header to its model;
`qastream_events.envelope` turns events into Kafka records and back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from qastream_events.conversation import FOLDS_UNKNOWN_FIELDS, Conversation, Feedback
from qastream_events.scorecard import Scorecard

if TYPE_CHECKING:  # see __getattr__ at the end
    from qastream_events.envelope import Envelope as Envelope
    from qastream_events.envelope import InvalidEvent as InvalidEvent
    from qastream_events.envelope import conversation_key as conversation_key
    from qastream_events.envelope import decode as decode
    from qastream_events.envelope import deterministic_id as deterministic_id
    from qastream_events.envelope import encode as encode


class Event(BaseModel):
    """Base for every payload. `TYPE` is the CloudEvents type, versioned with a `.vN` suffix."""

    model_config = ConfigDict(extra="forbid")
    TYPE: ClassVar[str]


# --- qa.tenants (compacted; keyed by tenant) -------------------------------------------------


class Role(StrEnum):
    admin = "admin"
    qa_lead = "qa_lead"
    reviewer = "reviewer"
    team_lead = "team_lead"
    agent = "agent"
    platform = "platform"


class TenantUpserted(Event):
    TYPE = "qa.tenant.upserted.v1"
    tenant_id: str
    name: str
    retention_days: int | None = None


class ApiKeyIssued(Event):
    TYPE = "qa.apikey.issued.v1"
    key_id: str
    key_hash: str
    role: Role
    agent_id: str | None = None
    team: str | None = None


class ApiKeyRevoked(Event):
    TYPE = "qa.apikey.revoked.v1"
    key_id: str


# --- qa.inbound.conversations ----------------------------------------------------------------


class InboundConversation(Conversation, Event):
    """A conversation streamed in by a source system: the HTTP body's schema, tenant in ce_tenant."""

    model_config = FOLDS_UNKNOWN_FIELDS  # not Event's `extra="forbid"`, which the later base would give it
    TYPE = "qa.inbound.conversation.v1"


# --- qa.conversations ------------------------------------------------------------------------


class ConversationIngested(Event):
    TYPE = "qa.conversation.ingested.v1"
    conversation: Conversation
    ingested_at: datetime


def conversation_time(conversation: Conversation, ingested_at: datetime) -> datetime:
    """A conversation's event time (UTC): when it ended, else when it started, else when it was ingested."""
    t = conversation.end_time() or conversation.started_at or ingested_at
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


class ConversationUpdated(Event):
    TYPE = "qa.conversation.updated.v1"
    conversation_id: str
    escalated: bool | None = None
    reopened: bool | None = None
    occurred_at: datetime


class PartitionHeartbeat(Event):
    """Ingest's event-time progress, sent to one partition of qa.conversations.

    The sampler's watermark is the minimum over the partitions of the highest conversation event time seen
    on each; a partition that receives no conversation would hold it back for ever. Ingest sends, to every
    partition, the highest conversation event time it has stored, whenever that has moved on. It is a
    record on the log, so a replay sees it in the same place. Not about any tenant: its envelope carries
    `PLATFORM_TENANT`, which admission lets through without a tenant check.
    """

    TYPE = "qa.partition.heartbeat.v1"
    partition: int = Field(ge=0)
    event_time_high: datetime


PLATFORM_TENANT = "-"  # the envelope tenant of events that concern no tenant (PartitionHeartbeat)


class CsatRecorded(Event, Feedback):
    """Feedback that arrives after the conversation: CSAT, NPS and/or FCR."""

    TYPE = "qa.csat.recorded.v1"
    conversation_id: str
    recorded_at: datetime


# --- qa.samples ------------------------------------------------------------------------------


class Purpose(StrEnum):
    auto = "auto"
    manual = "manual"


class ConversationSampled(Event):
    """One sampling decision that picked a conversation; the redacted conversation is the work item."""

    TYPE = "qa.conversation.sampled.v1"
    conversation_id: str
    purpose: Purpose
    plan_id: str
    plan_version: int
    stratum: str | None = None
    rule: str | None = None
    inclusion_probability: float = Field(gt=0, le=1)
    reason: str
    conversation: Conversation
    sampled_at: datetime


# --- qa.scorecards (compacted) ---------------------------------------------------------------


class ScorecardPublished(Event):
    TYPE = "qa.scorecard.published.v1"
    scorecard: Scorecard


# --- qa.reviews ------------------------------------------------------------------------------


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid")
    turn: int = Field(ge=0)
    quote: str = Field(max_length=300)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scorer: str
    version: str
    confidence: float = Field(ge=0, le=1)
    evidence: list[Evidence] = Field(default_factory=list)
    error: str | None = None


class Rating(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category_id: str
    value: int | None = None  # None means N/A
    score: float | None = Field(default=None, ge=0, le=1)
    root_causes: list[str] = Field(default_factory=list)
    comment: str | None = None
    provenance: Provenance | None = None  # set for AutoQA ratings


class ReviewComment(BaseModel):
    """A reviewer's comment on the whole conversation (turn None) or on one turn."""

    model_config = ConfigDict(extra="forbid")
    turn: int | None = Field(default=None, ge=0)
    text: str = Field(min_length=1, max_length=5000)


class ReviewKind(StrEnum):
    auto = "auto"
    manual = "manual"
    calibration = "calibration"


class CsatCue(BaseModel):
    """One signal behind a pCSAT prediction: its value, how far it moved the prediction, the turns showing it."""

    model_config = ConfigDict(extra="forbid")
    name: str
    value: float | None = None  # None: not measurable here (e.g. timing without timestamps)
    # Log-odds of "dissatisfied" this signal adds against an average conversation; > 0 points to dissatisfied.
    effect: float
    turns: list[int] = Field(default_factory=list)
    note: str | None = None


class PredictedCsat(BaseModel):
    """How the customer probably felt, apart from the QA score: set by the pCSAT model on auto reviews.

    `predicted` and `p_dissatisfied` are None, with `reason`, when the conversation gives nothing to judge
    (no customer turn): never a made-up number.
    """

    model_config = ConfigDict(extra="forbid")
    model_version: str
    predicted: float | None = Field(default=None, ge=1, le=5)
    p_dissatisfied: float | None = Field(default=None, ge=0, le=1)
    evidence: list[Evidence] = Field(default_factory=list)
    reason: str | None = None
    cues: list[CsatCue] = Field(default_factory=list)  # every signal, the strongest effect first


class ReviewSubmitted(Event):
    TYPE = "qa.review.submitted.v1"
    review_id: str
    conversation_id: str
    kind: ReviewKind
    scorecard_id: str
    scorecard_version: int
    # Every AutoQA scorer the scorecard uses → its version, so a replay can tell which code scored it.
    scorer_versions: dict[str, str] = Field(default_factory=dict)
    reviewer_id: str | None = None
    agent_id: str | None = None
    team: str | None = None
    channel: str | None = None
    ratings: list[Rating]
    score: float | None = Field(default=None, ge=0, le=1)
    auto_failed: bool = False
    passed: bool | None = None
    inclusion_probability: float | None = Field(default=None, gt=0, le=1)
    # Manual reviews: seconds the reviewer spent on it, and the assignment or calibration session it answers.
    time_spent_s: float | None = Field(default=None, ge=0)
    assignment_id: str | None = None
    calibration_session_id: str | None = None
    pcsat: PredictedCsat | None = None
    comments: list[ReviewComment] = Field(default_factory=list)
    submitted_at: datetime


class ReviewRevised(Event):
    """A new version of a review (after an accepted dispute). It replaces the revision before it everywhere;
    the earlier versions stay in scoring's history. It carries the whole review, so no consumer has to join.
    """

    TYPE = "qa.review.revised.v1"
    review_id: str
    revision: int = Field(ge=1)
    conversation_id: str
    kind: ReviewKind = ReviewKind.manual
    scorecard_id: str | None = None
    scorecard_version: int | None = None
    reviewer_id: str | None = None
    agent_id: str | None = None
    team: str | None = None
    channel: str | None = None
    ratings: list[Rating]
    score: float | None = Field(default=None, ge=0, le=1)
    auto_failed: bool = False
    passed: bool | None = None
    comments: list[ReviewComment] = Field(default_factory=list)
    time_spent_s: float | None = Field(default=None, ge=0)
    assignment_id: str | None = None
    reason: str
    dispute_id: str | None = None
    revised_at: datetime


# --- qa.assignments (keyed tenant:conversation) ------------------------------------------------


class AssignmentAction(StrEnum):
    created = "created"
    reassigned = "reassigned"
    skipped = "skipped"
    removed = "removed"
    completed = "completed"


class AssignmentChanged(Event):
    """A reviewer assignment made from a manual sample, or a change to it; every change is logged."""

    TYPE = "qa.assignment.changed.v1"
    assignment_id: str
    conversation_id: str
    action: AssignmentAction
    reviewer_id: str | None = None
    previous_reviewer_id: str | None = None
    plan_id: str | None = None
    inclusion_probability: float | None = Field(default=None, gt=0, le=1)
    reason: str | None = None
    by: str | None = None
    occurred_at: datetime
    # The conversation's agent and team as the assignment knew them, so a reader need not join the
    # conversation. Absent from events published before they were added.
    agent_id: str | None = None
    team: str | None = None


# --- qa.disputes (keyed tenant:conversation) ----------------------------------------------------


class DisputeOutcome(StrEnum):
    accepted = "accepted"
    partially_accepted = "partially_accepted"
    rejected = "rejected"


class DisputeOpened(Event):
    TYPE = "qa.dispute.opened.v1"
    dispute_id: str
    review_id: str
    conversation_id: str
    category_id: str | None = None  # None: the whole review
    agent_id: str | None = None
    team: str | None = None
    opened_by: str
    reason: str
    opened_at: datetime


class DisputeResolved(Event):
    TYPE = "qa.dispute.resolved.v1"
    dispute_id: str
    review_id: str
    conversation_id: str
    category_id: str | None = None
    agent_id: str | None = None
    team: str | None = None
    outcome: DisputeOutcome
    resolved_by: str
    comment: str | None = None
    revision: int | None = None  # the ReviewRevised it caused, when accepted or partly accepted
    resolved_at: datetime


# --- qa.calibrations (keyed tenant:session) -----------------------------------------------------


class CalibrationOpened(Event):
    TYPE = "qa.calibration.opened.v1"
    session_id: str
    scorecard_id: str
    scorecard_version: int
    conversation_ids: list[str]
    participants: list[str]
    benchmark_reviewer_id: str | None = None
    deadline: datetime
    opened_by: str
    opened_at: datetime


class CalibrationClosed(Event):
    """Krippendorff's α per category and overall, and each participant's alignment to the benchmark."""

    TYPE = "qa.calibration.closed.v1"
    session_id: str
    scorecard_id: str
    scorecard_version: int
    conversation_ids: list[str]
    participants: list[str]
    benchmark_reviewer_id: str | None = None
    alpha: float | None = None
    alpha_by_category: dict[str, float | None] = Field(default_factory=dict)
    alignment: dict[str, float] = Field(default_factory=dict)
    closed_at: datetime


# --- qa.coaching (keyed tenant:agent) ----------------------------------------------------------


class CoachingTaskStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    completed = "completed"
    dismissed = "dismissed"


class CoachingTaskEvent(Event):
    """Every coaching event carries the task as it is after the change (event-carried state)."""

    task_id: str
    rule_id: str
    rule_version: int
    agent_id: str
    team: str | None = None
    assignee_id: str | None = None
    category_id: str | None = None
    review_ids: list[str] = Field(default_factory=list)
    status: CoachingTaskStatus
    due_at: datetime | None = None
    occurred_at: datetime


class CoachingTaskCreated(CoachingTaskEvent):
    TYPE = "qa.coaching.task.created.v1"
    title: str
    needs_confirmation: bool = False


class CoachingTaskEvidenceAdded(CoachingTaskEvent):
    """New evidence joined the task. When `added_review_ids` is set (coaching sets it since it exists), the event
    carries only what it adds and `review_ids` is empty: a long-open task would otherwise republish its whole
    list on every addition. `evidence_after` rebuilds the task's list from its events, old or new."""

    TYPE = "qa.coaching.task.evidence_added.v1"
    added_review_ids: list[str] | None = None


def evidence_after(previous: Sequence[str], event: CoachingTaskEvent) -> list[str]:
    """A task's evidence (review ids) after `event`, given its list before it. Every coaching task event carries
    the whole list in `review_ids`, except an evidence addition carrying `added_review_ids`, which adds to it."""
    if isinstance(event, CoachingTaskEvidenceAdded) and event.added_review_ids is not None:
        return [*previous, *(r for r in event.added_review_ids if r not in previous)]
    return list(event.review_ids)


class CoachingTaskEvidenceWithdrawn(CoachingTaskEvent):
    """A revised review no longer triggers the task: its evidence leaves the task (still open)."""

    TYPE = "qa.coaching.task.evidence_withdrawn.v1"
    withdrawn_review_ids: list[str] = Field(default_factory=list)


class CoachingTaskConfirmed(CoachingTaskEvent):
    """A lead confirmed a task opened from AutoQA-only evidence; the agent now sees it."""

    TYPE = "qa.coaching.task.confirmed.v1"


class CoachingTaskAcknowledged(CoachingTaskEvent):
    TYPE = "qa.coaching.task.acknowledged.v1"


class CoachingTaskCompleted(CoachingTaskEvent):
    TYPE = "qa.coaching.task.completed.v1"
    notes: str | None = None
    quiz_score: float | None = Field(default=None, ge=0, le=1)


class CoachingTaskDismissed(CoachingTaskEvent):
    TYPE = "qa.coaching.task.dismissed.v1"
    reason: str


class CoachingImpactMeasured(Event):
    """The agent's category score over the N reviews after a completed task minus the N before."""

    TYPE = "qa.coaching.impact.measured.v1"
    task_id: str
    rule_id: str
    agent_id: str
    team: str | None = None
    assignee_id: str | None = None
    category_id: str | None = None
    n_before: int = Field(ge=0)
    n_after: int = Field(ge=0)
    mean_before: float | None = None
    mean_after: float | None = None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    measured_at: datetime


class RiskAlertRaised(Event):
    TYPE = "qa.coaching.alert.raised.v1"
    alert_id: str
    review_id: str
    conversation_id: str
    agent_id: str | None = None
    team: str | None = None
    rule_id: str | None = None
    category_ids: list[str] = Field(default_factory=list)
    reason: str
    raised_at: datetime


EVENT_TYPES: dict[str, type[Event]] = {
    m.TYPE: m
    for m in (
        TenantUpserted,
        ApiKeyIssued,
        ApiKeyRevoked,
        InboundConversation,
        ConversationIngested,
        ConversationUpdated,
        CsatRecorded,
        PartitionHeartbeat,
        ConversationSampled,
        ScorecardPublished,
        ReviewSubmitted,
        ReviewRevised,
        AssignmentChanged,
        DisputeOpened,
        DisputeResolved,
        CalibrationOpened,
        CalibrationClosed,
        CoachingTaskCreated,
        CoachingTaskEvidenceAdded,
        CoachingTaskEvidenceWithdrawn,
        CoachingTaskConfirmed,
        CoachingTaskAcknowledged,
        CoachingTaskCompleted,
        CoachingTaskDismissed,
        CoachingImpactMeasured,
        RiskAlertRaised,
    )
}


__all__ = [
    "EVENT_TYPES",
    "PLATFORM_TENANT",
    "ApiKeyIssued",
    "ApiKeyRevoked",
    "AssignmentAction",
    "AssignmentChanged",
    "CalibrationClosed",
    "CalibrationOpened",
    "CoachingImpactMeasured",
    "CoachingTaskAcknowledged",
    "CoachingTaskCompleted",
    "CoachingTaskConfirmed",
    "CoachingTaskCreated",
    "CoachingTaskDismissed",
    "CoachingTaskEvent",
    "CoachingTaskEvidenceAdded",
    "CoachingTaskEvidenceWithdrawn",
    "CoachingTaskStatus",
    "ConversationIngested",
    "ConversationSampled",
    "ConversationUpdated",
    "CsatCue",
    "CsatRecorded",
    "DisputeOpened",
    "DisputeOutcome",
    "DisputeResolved",
    "Event",
    "Evidence",
    "InboundConversation",
    "PartitionHeartbeat",
    "PredictedCsat",
    "Provenance",
    "Purpose",
    "Rating",
    "ReviewComment",
    "ReviewKind",
    "ReviewRevised",
    "ReviewSubmitted",
    "RiskAlertRaised",
    "Role",
    "ScorecardPublished",
    "TenantUpserted",
    "conversation_time",
    "evidence_after",
]

# Version 1.0 of this package exported the envelope from this module, so platform teams' imports of it from
# here keep working; imported lazily (PEP 562) because the envelope module reads EVENT_TYPES from this one.
_ENVELOPE_NAMES = frozenset(
    {"Envelope", "InvalidEvent", "conversation_key", "decode", "deterministic_id", "encode"}
)


def __getattr__(name: str) -> object:
    if name in _ENVELOPE_NAMES:
        from qastream_events import envelope

        return getattr(envelope, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
