"""Each trigger on a fixed review stream fires exactly on the reviews it should, judged in event time."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from qastream_coaching.lifecycle import Action, IllegalTransition, next_status
from qastream_coaching.rules import InvalidRule, Rule, Trigger, check_rule, edit_rule
from qastream_coaching.triggers import (
    DAY_S,
    AgentHistory,
    RejectionFact,
    ReviewFact,
    evaluate_rejection,
    evaluate_review,
)
from qastream_shared.events import CoachingTaskStatus as S

T0 = 1_767_225_600.0  # 2026-01-01


def review(
    rid: str,
    day: float,
    score: float | None = 0.9,
    cats: dict[str, float] | None = None,
    *,
    kind: str = "auto",
    passed: bool | None = None,
    auto_failed: bool = False,
) -> ReviewFact:
    return ReviewFact(
        review_id=rid,
        conversation_id=f"c-{rid}",
        agent_id="ann",
        team="red",
        kind=kind,
        at=T0 + day * DAY_S,
        score=score,
        passed=passed if passed is not None else (None if score is None else score >= 0.8),
        auto_failed=auto_failed,
        categories=cats or {"greeting": 1.0, "empathy": 1.0},
    )


def fired(stream: list[ReviewFact], rule: Rule) -> list[str]:
    """The reviews of `stream` the rule fires on, each judged against the whole stream's history."""
    history = AgentHistory.of(stream)
    return [r.review_id for r in stream if evaluate_review(r, history, [rule])]


def rule(trigger: Trigger, **kw: object) -> Rule:
    return Rule.model_validate({"rule_id": f"r-{trigger.value}", "trigger": trigger, "title": "t", **kw})


def test_below_pass_mark_uses_the_review_verdict_or_the_rules_mark():
    stream = [review("a", 0, 0.85), review("b", 1, 0.79), review("c", 2, 0.6), review("d", 3, None)]
    assert fired(stream, rule(Trigger.below_pass_mark)) == ["b", "c"]
    assert fired(stream, rule(Trigger.below_pass_mark, pass_mark=0.7)) == ["c"]


def test_below_pass_mark_task_takes_the_weakest_category():
    r = review("a", 0, 0.5, {"greeting": 0.4, "empathy": 0.2, "closing": 0.2})
    (f,) = evaluate_review(r, AgentHistory.of([r]), [rule(Trigger.below_pass_mark)])
    assert f.category_id == "closing"  # tie at 0.2 broken by id


def test_auto_fail_fires_only_on_auto_failed_reviews():
    stream = [review("a", 0, 0.0, auto_failed=True), review("b", 1, 0.5), review("c", 2, 0.9)]
    assert fired(stream, rule(Trigger.auto_fail)) == ["a"]


def test_kudos_for_excellent_reviews_overall_or_in_a_category():
    stream = [
        review("a", 0, 0.96, {"empathy": 0.5}),
        review("b", 1, 0.94, {"empathy": 1.0}),
        review("c", 2, 0.95, {"empathy": 0.9}),
    ]
    assert fired(stream, rule(Trigger.kudos)) == ["a", "c"]
    assert fired(stream, rule(Trigger.kudos, category_id="empathy", excellent_at=1.0)) == ["b"]


def test_same_category_failed_k_times_in_n_days():
    fail, ok = {"empathy": 0.0, "greeting": 1.0}, {"empathy": 1.0, "greeting": 1.0}
    stream = [
        review("a", 0, cats=fail),
        review("b", 2, cats=ok),
        review("c", 3, cats=fail),
        review("d", 6, cats=fail),  # third failure within 7 days of a: fires
        review("e", 8, cats=ok),  # not a failure: never fires
        review("f", 11, cats=fail),  # window (4, 11]: d and f only
        review("g", 12, cats=fail),  # window (5, 12]: d, f, g: fires again
    ]
    r = rule(Trigger.category_failures, category_id="empathy", k=3, window_days=7)
    assert fired(stream, r) == ["d", "g"]
    # Without a category the rule watches each category on its own.
    assert fired(stream, rule(Trigger.category_failures, k=3, window_days=7)) == ["d", "g"]
    (f,) = evaluate_review(stream[3], AgentHistory.of(stream), [r])
    assert f.review_ids == ("a", "c", "d") and f.category_id == "empathy"


def test_judged_in_event_time_not_arrival():
    fail = {"empathy": 0.0}
    r = rule(Trigger.category_failures, category_id="empathy", k=2, window_days=7)
    early, late = review("early", 1, cats=fail), review("late", 2, cats=fail)
    # The later review is in the history already (it arrived first): it must not count for the earlier one.
    history = AgentHistory.of([early, late])
    assert evaluate_review(early, history, [r]) == []
    assert [f.cause_id for f in evaluate_review(late, history, [r])] == ["late"]


def test_rolling_iqs_drop_week_over_week():
    week1 = [review(f"w1-{i}", 1 + i, 0.9) for i in range(3)]
    week2 = [review(f"w2-{i}", 8 + i, 0.7) for i in range(3)]
    stream = week1 + week2
    # The drop is 20 points once the second week has three reviews (min_reviews).
    assert fired(stream, rule(Trigger.iqs_drop, drop_points=10, min_reviews=3)) == ["w2-2"]
    assert fired(stream, rule(Trigger.iqs_drop, drop_points=25, min_reviews=3)) == []
    assert fired(stream, rule(Trigger.iqs_drop, drop_points=10, min_reviews=4)) == []


def test_paused_rules_do_not_fire():
    r = review("a", 0, 0.1)
    assert evaluate_review(r, AgentHistory.of([r]), [rule(Trigger.below_pass_mark, paused=True)]) == []


def test_auto_only_marks_evidence_that_needs_confirmation():
    r = rule(Trigger.below_pass_mark, requires_confirmation=True)
    auto, manual = review("a", 0, 0.1), review("m", 0, 0.1, kind="manual")
    assert evaluate_review(auto, AgentHistory.of([auto]), [r])[0].auto_only
    assert not evaluate_review(manual, AgentHistory.of([manual]), [r])[0].auto_only


def rejection(did: str, day: float, category: str) -> RejectionFact:
    return RejectionFact(did, f"rev-{did}", "ann", "red", category, T0 + day * DAY_S)


def test_dispute_on_the_same_category_rejected_twice():
    r = rule(Trigger.dispute_rejections)
    assert r.k == 2  # "rejected twice" is the default
    stream = [rejection("d1", 0, "empathy"), rejection("d2", 1, "greeting"), rejection("d3", 2, "empathy")]
    got = [f.cause_id for x in stream for f in evaluate_rejection(x, stream, [r], {})]
    assert got == ["d3"]
    far = [rejection("d1", 0, "empathy"), rejection("d3", 40, "empathy")]
    assert [f for x in far for f in evaluate_rejection(x, far, [r], {})] == []


@pytest.mark.parametrize(
    "body, field",
    [
        ({"k": 0}, "k"),
        ({"window_days": 0}, "window_days"),
        ({"window_days": "a fortnight"}, "window_days"),
        ({"fail_below": 1.5}, "fail_below"),
        ({"trigger": "sometimes"}, "trigger"),
        ({"title": ""}, "title"),
    ],
)
def test_invalid_rules_name_the_field(body, field):
    with pytest.raises(ValidationError) as err:
        Rule.model_validate({"rule_id": "x", "trigger": "category_failures", "title": "t", **body})
    assert [e["loc"][0] for e in err.value.errors()] == [field]


def test_rule_categories_are_checked_against_the_tenant():
    r = rule(Trigger.category_failures, category_id="empathy")
    check_rule(r, {"empathy"})
    with pytest.raises(InvalidRule) as err:
        check_rule(r, {"greeting"})
    assert err.value.field == "category_id"
    with pytest.raises(InvalidRule):
        check_rule(rule(Trigger.below_pass_mark, category_id="empathy"), {"empathy"})


def test_an_edit_is_the_next_version_and_keeps_the_id():
    r = rule(Trigger.category_failures, k=3)
    assert edit_rule(r, {"k": 4}).model_dump(include={"version", "k"}) == {"version": 2, "k": 4}
    with pytest.raises(InvalidRule):
        edit_rule(r, {"trigger": "kudos"})


def test_lifecycle():
    assert next_status(S.open, Action.acknowledge, needs_confirmation=False) is S.acknowledged
    assert next_status(S.acknowledged, Action.complete, needs_confirmation=False) is S.completed
    assert next_status(S.open, Action.dismiss, needs_confirmation=False) is S.dismissed
    for status, action in [
        (S.dismissed, Action.complete),
        (S.open, Action.complete),
        (S.completed, Action.dismiss),
        (S.completed, Action.acknowledge),
    ]:
        with pytest.raises(IllegalTransition):
            next_status(status, action, needs_confirmation=False)
    with pytest.raises(IllegalTransition):
        next_status(S.open, Action.acknowledge, needs_confirmation=True)
    assert next_status(S.open, Action.confirm, needs_confirmation=True) is S.open
