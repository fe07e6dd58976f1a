"""A fixture stream for the reporting service, and an oracle that recomputes every figure from the raw events.

The oracle is written from the rules in DESIGN.md, over plain Python lists: it imports nothing from
qastream_reporting, so a test that compares the two can fail when the service gets a rule wrong.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import krippendorff
from scipy import stats

from qastream_shared import events as ev
from qastream_shared.conversation import Conversation
from qastream_shared.events import Envelope, conversation_key
from qastream_shared.scorecard import Category, Group, Scale, ScaleKind, Scorecard
from qastream_shared.settings import Settings
from qastream_shared.testing import produce_envelopes
from qastream_shared.topics import (
    ASSIGNMENTS,
    CALIBRATIONS,
    COACHING,
    CONVERSATIONS,
    DISPUTES,
    REVIEWS,
    SAMPLES,
    SCORECARDS,
    physical,
)

DAY0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
CATEGORIES = ("greeting", "empathy", "resolution", "compliance")
TEAMS = {"agent-1": "team-a", "agent-2": "team-a", "agent-3": "team-b", "agent-4": "team-b"}


@dataclass
class Stream:
    tenant: str
    by_topic: dict[str, list[Envelope]] = field(default_factory=lambda: defaultdict(list))

    def add(self, topic: str, data: ev.Event, conversation: str) -> Envelope:
        env = Envelope(
            data=data,
            source="fixture",
            tenant=self.tenant,
            key=conversation_key(self.tenant, conversation),
            subject=conversation,
        )
        self.by_topic[topic].append(env)
        return env

    def all(self) -> list[Envelope]:
        return [e for envs in self.by_topic.values() for e in envs]


def _ratings(rng: random.Random, manual: bool) -> list[ev.Rating]:
    out = []
    for cid in CATEGORIES:
        if rng.random() < 0.1:
            out.append(ev.Rating(category_id=cid, value=None, score=None))  # N/A
            continue
        value = rng.randint(1, 5)
        causes = [rng.choice(["knowledge", "process", "tooling"])] if value <= 2 else []
        out.append(
            ev.Rating(
                category_id=cid,
                value=value,
                score=(value - 1) / 4,
                root_causes=causes,
                provenance=None if manual else ev.Provenance(scorer="phrases", version="1", confidence=0.8),
            )
        )
    return out


def _score(ratings: list[ev.Rating]) -> tuple[float | None, bool, bool | None]:
    """A fixture's own score: the mean of rated categories; compliance below 0.5 auto-fails."""
    rated = [r.score for r in ratings if r.score is not None]
    failed = any(r.category_id == "compliance" and r.score is not None and r.score < 0.5 for r in ratings)
    score = 0.0 if failed else (sum(rated) / len(rated) if rated else None)
    return score, failed, None if score is None else (score >= 0.8 and not failed)


def build(tenant: str, seed: int = 7, conversations: int = 80) -> Stream:
    rng = random.Random(seed)
    s = Stream(tenant)
    for i in range(conversations):
        cid = f"{tenant}-c{i:03d}"
        agent = rng.choice(list(TEAMS))
        ended = DAY0 + timedelta(days=rng.randint(0, 9), minutes=i)
        feedback: dict[str, Any] = {}
        if rng.random() < 0.5:
            feedback["csat"] = rng.randint(1, 5)
        if rng.random() < 0.3:
            feedback["nps"] = rng.randint(0, 10)
        if rng.random() < 0.4:
            feedback["fcr"] = rng.random() < 0.6
        conv = Conversation(
            conversation_id=cid,
            channel=rng.choice(["chat", "email"]),
            agent_ids=[agent],
            team=TEAMS[agent],
            started_at=ended - timedelta(minutes=5),
            ended_at=ended,
            turns=[{"role": "customer", "text": "hi"}, {"role": "agent", "text": "hello"}],
            **feedback,
        )
        s.add(CONVERSATIONS, ev.ConversationIngested(conversation=conv, ingested_at=ended), cid)
        if i % 9 == 0:  # a risk alert on every ninth conversation
            s.add(
                COACHING,
                ev.RiskAlertRaised(
                    alert_id=f"{cid}-alert",
                    review_id=f"{cid}-auto",
                    conversation_id=cid,
                    agent_id=agent,
                    team=TEAMS[agent],
                    rule_id="threat" if i % 2 else "profanity",
                    category_ids=["compliance"],
                    reason="matched a risk phrase",
                    raised_at=ended + timedelta(minutes=1),
                ),
                agent,
            )
        if i % 13 == 0:  # an assignment of a conversation reporting never sees: its team is the event's
            s.add(
                ASSIGNMENTS,
                ev.AssignmentChanged(
                    assignment_id=f"{cid}-unseen-a",
                    conversation_id=f"{cid}-unseen",
                    action=ev.AssignmentAction.created,
                    reviewer_id="rev-1",
                    agent_id=agent,
                    team=TEAMS[agent],
                    occurred_at=ended,
                ),
                f"{cid}-unseen",
            )
        if rng.random() < 0.25:
            s.add(
                CONVERSATIONS,
                ev.CsatRecorded(
                    conversation_id=cid, csat=rng.randint(1, 5), recorded_at=ended + timedelta(hours=2)
                ),
                cid,
            )
        common = {
            "conversation_id": cid,
            "agent_id": agent,
            "team": TEAMS[agent],
            "channel": conv.channel.value,
        }
        review_time = ended + timedelta(hours=1)
        if rng.random() < 0.9:  # AutoQA under version 1, sometimes re-scored under version 2
            for version in (1, 2) if rng.random() < 0.3 else (1,):
                ratings = _ratings(rng, manual=False)
                score, failed, passed = _score(ratings)
                pcsat = (
                    ev.PredictedCsat(model_version="p1", predicted=round(rng.uniform(1, 5), 1))
                    if rng.random() < 0.8
                    else None
                )
                s.add(
                    REVIEWS,
                    ev.ReviewSubmitted(
                        review_id=f"{cid}-auto-v{version}",
                        kind=ev.ReviewKind.auto,
                        scorecard_id="cs",
                        scorecard_version=version,
                        ratings=ratings,
                        score=score,
                        auto_failed=failed,
                        passed=passed,
                        pcsat=pcsat,
                        submitted_at=review_time + timedelta(minutes=version),
                        **common,
                    ),
                    cid,
                )
        if rng.random() < 0.45:  # sampled for people
            p = rng.choice([0.2, 0.5, 1.0])
            s.add(
                SAMPLES,
                ev.ConversationSampled(
                    conversation_id=cid,
                    purpose=ev.Purpose.manual,
                    plan_id="random",
                    plan_version=1,
                    inclusion_probability=p,
                    reason="random",
                    conversation=conv,
                    sampled_at=ended,
                ),
                cid,
            )
            reviewer = rng.choice(["rev-1", "rev-2"])
            # Events from before AssignmentChanged carried the agent and team lack them: every other one.
            scope = {"agent_id": agent, "team": TEAMS[agent]} if i % 2 else {}
            s.add(
                ASSIGNMENTS,
                ev.AssignmentChanged(
                    assignment_id=f"{cid}-a",
                    conversation_id=cid,
                    action=ev.AssignmentAction.created,
                    reviewer_id=reviewer,
                    occurred_at=ended,
                    **scope,
                ),
                cid,
            )
            if rng.random() < 0.85:
                ratings = _ratings(rng, manual=True)
                score, failed, passed = _score(ratings)
                rid = f"{cid}-manual"
                s.add(
                    REVIEWS,
                    ev.ReviewSubmitted(
                        review_id=rid,
                        kind=ev.ReviewKind.manual,
                        scorecard_id="cs",
                        scorecard_version=1,
                        reviewer_id=reviewer,
                        ratings=ratings,
                        score=score,
                        auto_failed=failed,
                        passed=passed,
                        # Half the reviews carry their probability; the rest rely on the sample's.
                        inclusion_probability=p if rng.random() < 0.5 else None,
                        time_spent_s=round(rng.uniform(60, 600), 1),
                        assignment_id=f"{cid}-a",
                        submitted_at=review_time + timedelta(hours=3),
                        **common,
                    ),
                    cid,
                )
                s.add(
                    ASSIGNMENTS,
                    ev.AssignmentChanged(
                        assignment_id=f"{cid}-a",
                        conversation_id=cid,
                        action=ev.AssignmentAction.completed,
                        reviewer_id=reviewer,
                        occurred_at=review_time + timedelta(hours=3),
                        **scope,
                    ),
                    cid,
                )
                if rng.random() < 0.3:  # disputed
                    opened = review_time + timedelta(hours=5)
                    did = f"{cid}-d"
                    s.add(
                        DISPUTES,
                        ev.DisputeOpened(
                            dispute_id=did,
                            review_id=rid,
                            conversation_id=cid,
                            agent_id=agent,
                            team=TEAMS[agent],
                            opened_by=agent,
                            reason="unfair",
                            opened_at=opened,
                        ),
                        cid,
                    )
                    outcome = rng.choice(list(ev.DisputeOutcome))
                    if rng.random() < 0.8:
                        revisions = 0
                        if outcome is not ev.DisputeOutcome.rejected:
                            for revision in (1, 2) if rng.random() < 0.3 else (1,):
                                new = _ratings(rng, manual=True)
                                score, failed, passed = _score(new)
                                s.add(
                                    REVIEWS,
                                    ev.ReviewRevised(
                                        review_id=rid,
                                        revision=revision,
                                        conversation_id=cid,
                                        scorecard_id="cs",
                                        scorecard_version=1,
                                        reviewer_id=reviewer,
                                        agent_id=agent,
                                        team=TEAMS[agent],
                                        channel=conv.channel.value,
                                        ratings=new,
                                        score=score,
                                        auto_failed=failed,
                                        passed=passed,
                                        reason="dispute accepted",
                                        dispute_id=did,
                                        revised_at=opened + timedelta(hours=revision),
                                    ),
                                    cid,
                                )
                                revisions = revision
                        s.add(
                            DISPUTES,
                            ev.DisputeResolved(
                                dispute_id=did,
                                review_id=rid,
                                conversation_id=cid,
                                agent_id=agent,
                                team=TEAMS[agent],
                                outcome=outcome,
                                resolved_by="lead-1",
                                revision=revisions or None,
                                resolved_at=opened + timedelta(hours=3),
                            ),
                            cid,
                        )
        if rng.random() < 0.05:  # a calibration review never counts in quality figures
            s.add(
                REVIEWS,
                ev.ReviewSubmitted(
                    review_id=f"{cid}-cal",
                    kind=ev.ReviewKind.calibration,
                    scorecard_id="cs",
                    scorecard_version=1,
                    reviewer_id="rev-1",
                    ratings=_ratings(rng, manual=True),
                    score=0.1,
                    calibration_session_id="cal-1",
                    time_spent_s=100.0,
                    submitted_at=review_time,
                    **common,
                ),
                cid,
            )
    for k, alpha in enumerate((0.41, 0.63, None)):
        opened = DAY0 + timedelta(days=2 * k)
        sid = f"cal-{k}"
        base = {
            "session_id": sid,
            "scorecard_id": "cs",
            "scorecard_version": 1,
            "conversation_ids": ["x", "y"],
            "participants": ["rev-1", "rev-2"],
        }
        s.add(
            CALIBRATIONS,
            ev.CalibrationOpened(
                **base, deadline=opened + timedelta(days=1), opened_by="lead-1", opened_at=opened
            ),
            sid,
        )
        if alpha is not None:
            s.add(
                CALIBRATIONS,
                ev.CalibrationClosed(**base, alpha=alpha, closed_at=opened + timedelta(hours=20)),
                sid,
            )
    for k, agent in enumerate(["agent-1", "agent-3", "agent-1", "agent-2"]):
        tid = f"task-{k}"
        at = DAY0 + timedelta(days=k)
        task = {
            "task_id": tid,
            "rule_id": "below-pass",
            "rule_version": 1,
            "agent_id": agent,
            "team": TEAMS[agent],
            "category_id": "empathy",
        }
        s.add(
            COACHING,
            ev.CoachingTaskCreated(**task, status=ev.CoachingTaskStatus.open, occurred_at=at, title="t"),
            agent,
        )
        if k % 2 == 0:
            s.add(
                COACHING,
                ev.CoachingTaskCompleted(
                    **task, status=ev.CoachingTaskStatus.completed, occurred_at=at + timedelta(days=1)
                ),
                agent,
            )
            s.add(
                COACHING,
                ev.CoachingImpactMeasured(
                    task_id=tid,
                    rule_id="below-pass",
                    agent_id=agent,
                    team=TEAMS[agent],
                    category_id="empathy",
                    n_before=5,
                    n_after=5,
                    mean_before=0.5,
                    mean_after=0.5 + 0.1 * (k - 1),
                    difference=0.1 * (k - 1),
                    ci_low=0.1 * (k - 1) - 0.05,
                    ci_high=0.1 * (k - 1) + 0.05,
                    measured_at=at + timedelta(days=5),
                ),
                agent,
            )
    for version, weights in SHADOW_CARDS.items():
        s.add(SCORECARDS, ev.ScorecardPublished(scorecard=card(version, weights)), "cs")
    return s


# Version 1 is the fixture's own rule (equal weights, compliance critical); version 3 drops greeting and
# makes compliance ordinary and heavy.
SHADOW_CARDS = {
    1: {"greeting": (1, False), "empathy": (1, False), "resolution": (1, False), "compliance": (1, True)},
    3: {"greeting": (0, False), "empathy": (1, False), "resolution": (2, False), "compliance": (3, False)},
}


def card(version: int, weights: dict[str, tuple[int, bool]]) -> Scorecard:
    return Scorecard(
        scorecard_id="cs",
        version=version,
        name="customer service",
        groups=[
            Group(
                group_id="all",
                name="all",
                categories=[
                    Category(
                        category_id=c,
                        name=c,
                        weight=w,
                        critical=critical,
                        scale=Scale(kind=ScaleKind.five_point),
                    )
                    for c, (w, critical) in weights.items()
                ],
            )
        ],
    )


async def publish(settings: Settings, stream: Stream) -> None:
    for topic, envs in stream.by_topic.items():
        await produce_envelopes(settings, physical(topic, settings), envs)


# --- the oracle ---------------------------------------------------------------------------------


@dataclass
class Review:
    data: dict[str, Any]
    revision: int = 0


class Oracle:
    """Every figure, recomputed from the raw events of one tenant."""

    def __init__(self, envs: Iterable[Envelope]) -> None:
        self.conversations: dict[str, dict[str, Any]] = {}
        self.manual_p: dict[str, float] = {}
        self.reviews: dict[str, Review] = {}
        self.disputes: dict[str, dict[str, Any]] = {}
        self.calibrations: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, dict[str, Any]] = {}
        self.impacts: dict[str, dict[str, Any]] = {}
        self.assignments: dict[str, dict[str, Any]] = {}
        self.alerts: dict[str, dict[str, Any]] = {}
        for env in envs:
            d = env.data
            if isinstance(d, ev.ConversationIngested):
                c = d.conversation
                self.conversations[c.conversation_id] = {
                    "day": c.ended_at.date() if c.ended_at else None,
                    "team": c.team,
                    "agent_id": c.agent_id,
                    "channel": c.channel.value,
                    "csat": c.csat,
                    "nps": c.nps,
                    "fcr": c.fcr,
                }
            elif isinstance(d, ev.CsatRecorded):
                self.conversations[d.conversation_id]["csat"] = d.csat
            elif isinstance(d, ev.ConversationSampled) and d.purpose is ev.Purpose.manual:
                self.manual_p[d.conversation_id] = d.inclusion_probability
            elif isinstance(d, ev.ReviewSubmitted):
                self.reviews[d.review_id] = Review(d.model_dump(mode="python"))
            elif isinstance(d, ev.ReviewRevised):
                old = self.reviews[d.review_id]
                if d.revision > old.revision:
                    merged = {
                        **old.data,
                        **d.model_dump(
                            mode="python", exclude={"revision", "reason", "dispute_id", "revised_at"}
                        ),
                    }
                    merged["submitted_at"] = old.data["submitted_at"]
                    if merged["time_spent_s"] is None:  # a revision that does not say keeps the original's
                        merged["time_spent_s"] = old.data["time_spent_s"]
                    self.reviews[d.review_id] = Review(merged, d.revision)
            elif isinstance(d, ev.DisputeOpened):
                self.disputes[d.dispute_id] = {**d.model_dump(), "outcome": None}
            elif isinstance(d, ev.DisputeResolved):
                self.disputes[d.dispute_id]["outcome"] = d.outcome.value
                self.disputes[d.dispute_id]["resolved_at"] = d.resolved_at
            elif isinstance(d, ev.CalibrationOpened | ev.CalibrationClosed):
                self.calibrations[d.session_id] = d.model_dump()
            elif isinstance(d, ev.CoachingTaskEvent):
                self.tasks.setdefault(d.task_id, {"day": d.occurred_at.date()}).update(d.model_dump())
            elif isinstance(d, ev.CoachingImpactMeasured):
                self.impacts[d.task_id] = d.model_dump()
            elif isinstance(d, ev.AssignmentChanged):
                self.assignments[d.assignment_id] = d.model_dump()
            elif isinstance(d, ev.RiskAlertRaised):
                self.alerts[d.alert_id] = d.model_dump()

    # Which reviews one figure counts.
    def quality_reviews(self, kind: str, version: int | None = None) -> list[dict[str, Any]]:
        """kind auto/manual/combined; version None = every version, counting each conversation's newest."""
        by_conv: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
        for r in self.reviews.values():
            d = r.data
            if d["kind"].value in ("auto", "manual"):
                by_conv[d["conversation_id"]][d["kind"].value].append(d)
        out = []
        for kinds in by_conv.values():
            chosen: dict[str, list[dict[str, Any]]] = {}
            for k, rs in kinds.items():
                if version is not None:
                    chosen[k] = [x for x in rs if x["scorecard_version"] == version]
                else:
                    top = max(x["scorecard_version"] for x in rs)
                    chosen[k] = [x for x in rs if x["scorecard_version"] == top]
            if kind == "combined":
                pick = chosen.get("manual") or chosen.get("auto") or []
                out += sorted(pick, key=lambda x: x["submitted_at"])[-1:]
            else:
                out += chosen.get(kind, [])
        return out

    def quality(
        self, kind: str, where: Callable[[dict[str, Any]], bool] = lambda r: True, version: int | None = None
    ) -> dict[str, Any]:
        rs = [r for r in self.quality_reviews(kind, version) if where(r)]
        scores = [r["score"] for r in rs if r["score"] is not None]
        known = [r["passed"] for r in rs if r["passed"] is not None]
        return {
            "reviews": len(rs),
            "iqs": sum(scores) / len(scores) if scores else None,
            "pass_rate": sum(known) / len(known) if known else None,
            "auto_fail_rate": sum(r["auto_failed"] for r in rs) / len(rs) if rs else None,
        }

    def weight(self, r: dict[str, Any]) -> float | None:
        p = r["inclusion_probability"] or self.manual_p.get(r["conversation_id"])
        return 1 / p if p else None

    def design_weighted(self) -> dict[str, Any]:
        rs = [r for r in self.quality_reviews("manual") if r["score"] is not None]
        pairs = [(self.weight(r), r["score"]) for r in rs]
        ws = [(w, y) for w, y in pairs if w is not None]
        total_w = sum(w for w, _ in ws)
        hajek = sum(w * y for w, y in ws) / total_w
        var = sum((w * w - w) * (y - hajek) ** 2 for w, y in ws) / total_w**2
        n_conv = len(self.conversations)
        ht = sum(w * y for w, y in ws) / n_conv
        ht_var = sum((w * w - w) * y * y for w, y in ws) / n_conv**2
        z = stats.norm.ppf(0.975)
        return {
            "hajek": (hajek, hajek - z * math.sqrt(var), hajek + z * math.sqrt(var)),
            "ht": (ht, ht - z * math.sqrt(ht_var), ht + z * math.sqrt(ht_var)),
            "raw": sum(y for _, y in pairs) / len(pairs),
        }

    def categories(self, kind: str = "combined") -> dict[str, float | None]:
        sums: dict[str, list[float]] = defaultdict(list)
        for r in self.quality_reviews(kind):
            for x in r["ratings"]:
                if x["score"] is not None:
                    sums[x["category_id"]].append(x["score"])
        return {c: sum(v) / len(v) for c, v in sums.items()}

    def root_causes(self, kind: str = "combined") -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for r in self.quality_reviews(kind):
            for x in r["ratings"]:
                for cause in x["root_causes"]:
                    out[cause] += 1
        return dict(out)

    def agreement(self) -> dict[str, tuple[int, float]]:
        """category → (pairs, exact agreement) between each conversation's newest human and AutoQA review
        under the same scorecard version."""
        manual = {r["conversation_id"]: r for r in self.quality_reviews("manual")}
        auto = {r["conversation_id"]: r for r in self.quality_reviews("auto")}
        out: dict[str, list[bool]] = defaultdict(list)
        for cid, m in manual.items():
            a = auto.get(cid)
            if a is None or a["scorecard_version"] != m["scorecard_version"]:
                continue
            a_scores = {x["category_id"]: x["score"] for x in a["ratings"]}
            for x in m["ratings"]:
                if x["score"] is not None and a_scores.get(x["category_id"]) is not None:
                    out[x["category_id"]].append(abs(x["score"] - a_scores[x["category_id"]]) < 1e-9)
        return {c: (len(v), sum(v) / len(v)) for c, v in out.items()}

    def agreement_alpha(self) -> dict[str, float | None]:
        """category → Krippendorff's α (ordinal, on the 0..1 scores) of the same pairs as `agreement`, from
        the reliability data itself: one row per rater kind, one column per conversation."""
        manual = {r["conversation_id"]: r for r in self.quality_reviews("manual")}
        auto = {r["conversation_id"]: r for r in self.quality_reviews("auto")}
        rows: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
        for cid, m in manual.items():
            a = auto.get(cid)
            if a is None or a["scorecard_version"] != m["scorecard_version"]:
                continue
            a_scores = {x["category_id"]: x["score"] for x in a["ratings"]}
            for x in m["ratings"]:
                if x["score"] is not None and a_scores.get(x["category_id"]) is not None:
                    rows[x["category_id"]][0].append(a_scores[x["category_id"]])
                    rows[x["category_id"]][1].append(x["score"])
        out: dict[str, float | None] = {}
        for c, (a_row, m_row) in rows.items():
            if len(set(a_row) | set(m_row)) < 2:
                out[c] = None
            else:
                out[c] = float(
                    krippendorff.alpha(reliability_data=[a_row, m_row], level_of_measurement="ordinal")
                )
        return out

    def assignments_by_team(self) -> dict[str, dict[str, int]]:
        """the assignment's team (its events', else its conversation's) → assignments by their last action."""
        out: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for a in self.assignments.values():
            team = a["team"] or self.conversations[a["conversation_id"]]["team"]
            out[team]["assignments"] += 1
            out[team][a["action"].value] += 1
        return out

    def alerts_by_agent(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for a in self.alerts.values():
            out[a["agent_id"]] += 1
        return dict(out)

    def customer(self) -> dict[str, Any]:
        convs = self.conversations
        auto = {r["conversation_id"] for r in self.quality_reviews("auto")}
        manual = {r["conversation_id"] for r in self.quality_reviews("manual")}
        csat = [c["csat"] for c in convs.values() if c["csat"] is not None]
        nps = [c["nps"] for c in convs.values() if c["nps"] is not None]
        fcr = [c["fcr"] for c in convs.values() if c["fcr"] is not None]
        return {
            "conversations": len(convs),
            "coverage_auto": len(auto) / len(convs),
            "coverage_manual": len(manual) / len(convs),
            "csat": sum(csat) / len(csat),
            "survey_coverage": len(csat) / len(convs),
            "nps": 100 * (sum(x >= 9 for x in nps) - sum(x <= 6 for x in nps)) / len(nps),
            "fcr_rate": sum(fcr) / len(fcr),
        }

    def pcsat_by_conversation(self) -> dict[str, float]:
        newest_auto = {r["conversation_id"]: r for r in self.quality_reviews("auto")}
        return {
            cid: r["pcsat"]["predicted"]
            for cid, r in newest_auto.items()
            if r.get("pcsat") and r["pcsat"]["predicted"] is not None
        }

    def spearman(self, measure: str) -> tuple[float, int]:
        if measure == "qa":
            values = {
                r["conversation_id"]: r["score"]
                for r in self.quality_reviews("combined")
                if r["score"] is not None
            }
        else:
            values = self.pcsat_by_conversation()
        xs, ys = [], []
        for cid, c in self.conversations.items():
            if c["csat"] is not None and cid in values:
                xs.append(c["csat"])
                ys.append(values[cid])
        rho = stats.spearmanr(xs, ys).statistic
        return float(rho), len(xs)

    def reviewers(self) -> dict[str, tuple[int, float]]:
        out: dict[str, list[float]] = defaultdict(list)
        for r in self.reviews.values():
            d = r.data
            if d["kind"].value in ("manual", "calibration") and d["reviewer_id"]:
                out[d["reviewer_id"]].append(d["time_spent_s"])
        return {k: (len(v), sum(v) / len(v)) for k, v in out.items()}

    def disputes_summary(self) -> dict[str, Any]:
        ds = list(self.disputes.values())
        manual_reviews = len(self.quality_reviews("manual"))
        return {
            "opened": len(ds),
            "accepted": sum(d["outcome"] == "accepted" for d in ds),
            "rejected": sum(d["outcome"] == "rejected" for d in ds),
            "resolved": sum(d["outcome"] is not None for d in ds),
            "dispute_rate": len(ds) / manual_reviews,
        }

    def calibration_alpha_by_day(self) -> dict[date, float]:
        return {
            c["closed_at"].date(): c["alpha"]
            for c in self.calibrations.values()
            if c.get("closed_at") and c["alpha"] is not None
        }

    def shadow(self, kind: str, version: int) -> dict[str, Any]:
        """Every current review of `kind` re-scored by hand under SHADOW_CARDS[version]: the weighted mean
        of rated categories' (value − 1)/4; a critical category below 0.5 zeroes it; pass at 0.8."""
        weights = SHADOW_CARDS[version]
        scores, passed = [], []
        for r in self.reviews.values():
            d = r.data
            if d["kind"].value != kind:
                continue
            rated = [
                (weights[x["category_id"]], (x["value"] - 1) / 4)
                for x in d["ratings"]
                if x["value"] is not None
            ]
            total = sum(w for (w, _), _ in rated)
            failed = any(critical and y < 0.5 for (_, critical), y in rated)
            score = 0.0 if failed else (sum(w * y for (w, _), y in rated) / total if total else None)
            if score is not None:
                scores.append(score)
                passed.append(score >= 0.8 and not failed)
        return {
            "iqs": sum(scores) / len(scores),
            "pass_rate": sum(passed) / len(passed),
            "reviews": len(scores),
        }
