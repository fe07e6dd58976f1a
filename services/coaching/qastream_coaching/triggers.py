"""Rule evaluation: pure functions of an agent's review history, in event time. No I/O.

A review is judged against the history whose event time (`submitted_at`) is at or before its own, never
against what happened to arrive first, so a replay of the same reviews fires the same rules. The latest
revision of each review is the one that counts (ReviewRevised replaces the version it revises).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from operator import attrgetter

from qastream_coaching.rules import Rule, Trigger

DAY_S = 86_400.0
WEEK_S = 7 * DAY_S


@dataclass(frozen=True, slots=True)
class ReviewFact:
    """What coaching keeps of one review (its latest revision)."""

    review_id: str
    conversation_id: str
    agent_id: str
    team: str | None
    kind: str  # auto | manual
    at: float  # event time, epoch seconds
    score: float | None
    passed: bool | None
    auto_failed: bool
    categories: Mapping[str, float]  # category → score in 0..1 (N/A left out)
    revision: int = 0
    # (score, category) from the lowest: a history indexes a review's failed categories without a pass over all
    # of them, each batch again (a review stays in its agent's history for weeks of batches).
    ascending: tuple[tuple[float, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ascending", tuple(sorted((v, c) for c, v in self.categories.items())))


@dataclass(frozen=True, slots=True)
class RejectionFact:
    """A dispute on one category that was rejected."""

    dispute_id: str
    review_id: str
    agent_id: str
    team: str | None
    category_id: str
    at: float


@dataclass(frozen=True, slots=True)
class Firing:
    """A rule that fired on one review (or dispute): the cause of a task's creation or new evidence."""

    rule: Rule
    cause_id: str  # the review (or dispute) the rule fired on
    agent_id: str
    team: str | None
    category_id: str | None
    at: float
    reason: str
    review_ids: tuple[str, ...]  # the reviews that make the case, the cause last
    auto_only: bool  # every one of them is an AutoQA review


def weakest(categories: Mapping[str, float]) -> str | None:
    """The lowest-scoring category (ties by id, so the choice is stable)."""
    if not categories:
        return None
    return min(categories.items(), key=lambda kv: (kv[1], kv[0]))[0]


_AT = attrgetter("at")
_REVIEW_ID = attrgetter("review_id")


@dataclass
class AgentHistory:
    """One agent's reviews in event-time order, with the indexes the triggers query. `fail_below` is the highest
    threshold any rule will ask `failures` about: only ratings under it are indexed (1.0 = every imperfect one)."""

    facts: list[ReviewFact]
    fail_below: float = 1.0
    times: list[float] = field(init=False)
    _fails: dict[str, tuple[list[float], list[float], list[ReviewFact]]] | None = field(
        init=False, default=None
    )
    _scored: tuple[list[float], list[float]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        # Two stable sorts on one attribute each: the same order as on (at, review_id), without a key tuple each.
        self.facts.sort(key=_REVIEW_ID)
        self.facts.sort(key=_AT)
        self.times = [f.at for f in self.facts]

    @classmethod
    def of(cls, facts: Iterable[ReviewFact], fail_below: float = 1.0) -> AgentHistory:
        return cls(list(facts), fail_below)

    def failures(self, category: str, below: float, start: float, end: float) -> list[ReviewFact]:
        """Reviews with `category` scored below `below` (at most `fail_below`), in the event-time window
        (start, end]."""
        if below > self.fail_below:
            raise ValueError(f"failures below {below} asked of a history indexed below {self.fail_below}")
        if self._fails is None:  # one pass over the history indexes every category
            index: dict[str, tuple[list[float], list[float], list[ReviewFact]]] = {}
            ceiling = self.fail_below
            for f in self.facts:
                for v, c in f.ascending:
                    if v >= ceiling:
                        break
                    times, values, facts = index.setdefault(c, ([], [], []))
                    times.append(f.at)
                    values.append(v)
                    facts.append(f)
            self._fails = index
        found = self._fails.get(category)
        if found is None:
            return []
        times, values, facts = found
        lo, hi = bisect_right(times, start), bisect_right(times, end)
        return [facts[i] for i in range(lo, hi) if values[i] < below]

    def mean_score(self, start: float, end: float) -> tuple[int, float]:
        """(number of scored reviews, their mean score) in the event-time window (start, end]."""
        if self._scored is None:
            scored = [f for f in self.facts if f.score is not None]
            sums = list(accumulate((f.score or 0.0 for f in scored), initial=0.0))
            self._scored = ([f.at for f in scored], sums)
        times, sums = self._scored
        lo, hi = bisect_right(times, start), bisect_right(times, end)
        n = hi - lo
        return n, ((sums[hi] - sums[lo]) / n if n else 0.0)

    def scored_window(self, start: float, end: float) -> list[ReviewFact]:
        lo, hi = bisect_right(self.times, start), bisect_right(self.times, end)
        return [f for f in self.facts[lo:hi] if f.score is not None]


def _firing(
    rule: Rule, review: ReviewFact, category: str | None, reason: str, case: Sequence[ReviewFact]
) -> Firing:
    ids = tuple(
        dict.fromkeys([*(f.review_id for f in case if f.review_id != review.review_id), review.review_id])
    )
    return Firing(
        rule=rule,
        cause_id=review.review_id,
        agent_id=review.agent_id,
        team=review.team,
        category_id=category,
        at=review.at,
        reason=reason,
        review_ids=ids,
        auto_only=all(f.kind == "auto" for f in case) and review.kind == "auto",
    )


@dataclass(frozen=True)
class RuleSet:
    """A tenant's active review rules grouped so that a review looks only at the rules it can fire: the
    category-failure rules of the categories it failed, not all of them."""

    whole: tuple[Rule, ...]  # below the pass mark, auto-fail, kudos, IQS drop: judged on every review
    by_category: Mapping[str, tuple[Rule, ...]]  # category failures, by the category watched
    each_category: tuple[Rule, ...]  # category failures watching every category on its own
    fail_below: float  # the highest `fail_below` of them: a category scored at or above it fails none

    @classmethod
    def of(cls, rules: Iterable[Rule]) -> RuleSet:
        active = [r for r in rules if not r.paused]
        failures = [r for r in active if r.trigger is Trigger.category_failures]
        by_category: dict[str, list[Rule]] = {}
        for r in failures:
            if r.category_id is not None:
                by_category.setdefault(r.category_id, []).append(r)
        return cls(
            whole=tuple(r for r in active if r.trigger in _WHOLE_REVIEW),
            by_category={c: tuple(rs) for c, rs in by_category.items()},
            each_category=tuple(r for r in failures if r.category_id is None),
            fail_below=max((r.fail_below for r in failures), default=0.0),
        )

    def rules(self) -> list[Rule]:
        by_category = [r for rs in self.by_category.values() for r in rs]
        return [*self.whole, *by_category, *self.each_category]

    def fails_any(self, review: ReviewFact) -> bool:
        """Whether some category-failure rule may count one of the review's categories as failed."""
        below = self.fail_below
        return any(v < below for v in review.categories.values())

    def failed_categories(self, review: ReviewFact) -> list[str]:
        """The review's categories some category-failure rule may count as failed, in order."""
        return sorted(c for c, v in review.categories.items() if v < self.fail_below)


_WHOLE_REVIEW = frozenset({Trigger.below_pass_mark, Trigger.auto_fail, Trigger.kudos, Trigger.iqs_drop})


def evaluate_review(
    review: ReviewFact, history: AgentHistory, rules: RuleSet | Sequence[Rule]
) -> list[Firing]:
    """Every rule that fires on `review`, judged against `history` up to the review's event time."""
    rule_set = rules if isinstance(rules, RuleSet) else RuleSet.of(rules)
    out: list[Firing] = []
    weeks: tuple[tuple[int, float], tuple[int, float]] | None = None  # shared by every IQS-drop rule
    for rule in rule_set.whole:
        trigger = rule.trigger
        if trigger is Trigger.below_pass_mark:
            below = (
                review.score is not None and review.score < rule.pass_mark
                if rule.pass_mark is not None
                else review.passed is False
            )
            if below:
                score = f"{review.score:.0%}" if review.score is not None else "no score"
                out.append(
                    _firing(rule, review, weakest(review.categories), f"review scored {score}", [review])
                )
        elif trigger is Trigger.auto_fail:
            if review.auto_failed:
                out.append(_firing(rule, review, weakest(review.categories), "review auto-failed", [review]))
        elif trigger is Trigger.kudos:
            value = review.categories.get(rule.category_id) if rule.category_id else review.score
            if value is not None and value >= rule.excellent_at:
                out.append(
                    _firing(rule, review, rule.category_id, f"excellent review ({value:.0%})", [review])
                )
        elif trigger is Trigger.iqs_drop:
            if review.score is None:
                continue
            if weeks is None:
                weeks = (
                    history.mean_score(review.at - WEEK_S, review.at),
                    history.mean_score(review.at - 2 * WEEK_S, review.at - WEEK_S),
                )
            (n_now, now), (n_before, before) = weeks
            if n_now >= rule.min_reviews and n_before >= rule.min_reviews:
                drop = (before - now) * 100
                if drop > rule.drop_points:
                    reason = f"7-day IQS fell {drop:.1f} points week over week ({before:.0%} → {now:.0%})"
                    case = history.scored_window(review.at - WEEK_S, review.at)
                    out.append(_firing(rule, review, None, reason, case))
    for cat in rule_set.failed_categories(review):
        for rule in (*rule_set.by_category.get(cat, ()), *rule_set.each_category):
            if review.categories[cat] >= rule.fail_below:
                continue
            failed = history.failures(cat, rule.fail_below, review.at - rule.window_days * DAY_S, review.at)
            if len(failed) >= rule.k:
                reason = f"{cat} failed {len(failed)} times in {rule.window_days} days"
                out.append(_firing(rule, review, cat, reason, failed))
    return out


def evaluate_rejection(
    rejection: RejectionFact,
    rejections: Sequence[RejectionFact],
    rules: Sequence[Rule],
    review_kinds: Mapping[str, str],
) -> list[Firing]:
    """dispute_rejections rules on one rejected dispute; `rejections` are the agent's (any order)."""
    out: list[Firing] = []
    for rule in rules:
        if rule.paused or rule.trigger is not Trigger.dispute_rejections:
            continue
        if rule.category_id is not None and rule.category_id != rejection.category_id:
            continue
        start = rejection.at - rule.window_days * DAY_S
        same = sorted(
            (
                r
                for r in rejections
                if r.category_id == rejection.category_id and start < r.at <= rejection.at
            ),
            key=lambda r: (r.at, r.dispute_id),
        )
        if len(same) >= rule.k:
            ids = tuple(dict.fromkeys(r.review_id for r in same))
            out.append(
                Firing(
                    rule=rule,
                    cause_id=rejection.dispute_id,
                    agent_id=rejection.agent_id,
                    team=rejection.team,
                    category_id=rejection.category_id,
                    at=rejection.at,
                    reason=f"{len(same)} disputes on {rejection.category_id} rejected in {rule.window_days} days",
                    review_ids=ids,
                    auto_only=all(review_kinds.get(i) == "auto" for i in ids),
                )
            )
    return out


def longest_window_s(rules: Iterable[Rule]) -> float:
    """How far back in event time any rule looks: the history a batch must load."""
    spans = [2 * WEEK_S if r.trigger is Trigger.iqs_drop else r.window_days * DAY_S for r in rules]
    return max([2 * WEEK_S, *spans])
