import pytest
from pydantic import ValidationError

from qastream_sampler.plans import AutoPolicy, CsatAtMost, edit_plan, parse_plan, plan_set_problems


def _error_locs(exc: ValidationError) -> list[str]:
    return [".".join(map(str, e["loc"])) for e in exc.errors()]


def test_rate_outside_unit_interval_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        parse_plan({"plan_id": "r", "kind": "random", "rate": 1.5})
    assert _error_locs(info.value) == ["random.rate"]


def test_negative_quota_names_the_field() -> None:
    with pytest.raises(ValidationError) as info:
        parse_plan({"plan_id": "q", "kind": "stratified", "quota": -1})
    assert _error_locs(info.value) == ["stratified.quota"]


def test_unknown_field_in_a_rule_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        parse_plan(
            {"plan_id": "t", "kind": "targeted", "rules": [{"kind": "csat_at_most", "max": 2, "min": 1}]}
        )
    assert _error_locs(info.value) == ["targeted.rules.0.csat_at_most.min"]
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_unknown_rule_kind_and_out_of_range_threshold() -> None:
    with pytest.raises(ValidationError):
        parse_plan({"plan_id": "t", "kind": "targeted", "rules": [{"kind": "vibes"}]})
    with pytest.raises(ValidationError) as info:
        parse_plan(
            {"plan_id": "t", "kind": "targeted", "rules": [{"kind": "auto_score_below", "threshold": 2}]}
        )
    assert _error_locs(info.value) == ["targeted.rules.0.auto_score_below.threshold"]


def test_slots_cannot_exceed_quota() -> None:
    with pytest.raises(ValidationError, match=r"slots \(6\) must not exceed quota \(5\)"):
        parse_plan({"plan_id": "q", "kind": "stratified", "quota": 5, "slots": 6})


def test_auto_policy_rate_per_channel_is_validated() -> None:
    assert AutoPolicy(channel_rates={"voice": 0.1}).rate("voice") == 0.1
    assert AutoPolicy(channel_rates={"voice": 0.1}).rate("chat") == 1.0
    with pytest.raises(ValidationError):
        AutoPolicy(channel_rates={"voice": -0.1})


def test_edit_makes_the_next_version_and_keeps_the_id() -> None:
    v1 = parse_plan({"plan_id": "t", "kind": "targeted", "rules": [{"kind": "csat_at_most", "max": 2}]})
    v2 = edit_plan(v1, {"rules": [{"kind": "csat_at_most", "max": 1}], "paused": True})
    assert (v2.plan_id, v2.version, v2.paused) == ("t", 2, True)
    assert v2.rules == [CsatAtMost(max=1)]  # type: ignore[union-attr]
    assert v1.version == 1  # plans are values: the old version is untouched
    with pytest.raises(ValueError, match="plan_id cannot be changed"):
        edit_plan(v1, {"plan_id": "other"})
    with pytest.raises(ValidationError):
        edit_plan(v1, {"rate": 7})


def test_overlapping_plans_with_the_same_priority_are_a_problem() -> None:
    a = parse_plan({"plan_id": "a", "kind": "random", "rate": 0.1, "priority": 1})
    b = parse_plan({"plan_id": "b", "kind": "stratified", "quota": 5, "priority": 1})
    problems = plan_set_problems([a, b])
    assert problems == ["plans 'a' and 'b' overlap (same scope channels) and have the same priority 1"]


def test_disjoint_channels_paused_plans_or_distinct_priorities_do_not_overlap() -> None:
    email = parse_plan(
        {"plan_id": "a", "kind": "random", "rate": 0.1, "priority": 1, "scope": {"channels": ["email"]}}
    )
    voice = parse_plan(
        {"plan_id": "b", "kind": "random", "rate": 0.1, "priority": 1, "scope": {"channels": ["voice"]}}
    )
    paused = parse_plan({"plan_id": "c", "kind": "random", "rate": 0.1, "priority": 1, "paused": True})
    other = parse_plan({"plan_id": "d", "kind": "random", "rate": 0.1, "priority": 2})
    assert plan_set_problems([email, voice, paused, other]) == []
    assert plan_set_problems([email, email])[0] == "plan_id 'a' appears more than once"


def test_targeted_plan_may_not_mix_review_rules_with_conversation_rules() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="cannot be mixed"):
        parse_plan(
            {
                "plan_id": "mix",
                "kind": "targeted",
                "rules": [{"kind": "csat_at_most", "max": 2}, {"kind": "auto_fail"}],
            }
        )
    parse_plan(
        {
            "plan_id": "ok",
            "kind": "targeted",
            "rules": [{"kind": "auto_fail"}, {"kind": "auto_score_below", "threshold": 0.5}],
        }
    )
