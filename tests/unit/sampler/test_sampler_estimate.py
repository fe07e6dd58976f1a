import random
from datetime import timedelta

import pytest
from sampler_synth import T0, TENANT, population

from qastream_sampler.engine import SamplerConfig, SamplerState, close, observe_conversation
from qastream_sampler.estimate import SampledValue, design_weighted_iqs, hajek_mean, horvitz_thompson_mean
from qastream_sampler.plans import parse_plan

CONFIG = SamplerConfig()


def test_ht_on_a_census_is_exact_with_zero_variance() -> None:
    units = [SampledValue(v, 1.0) for v in (0.2, 0.4, 0.9)]
    est = horvitz_thompson_mean(units, population_size=3)
    assert est.mean == pytest.approx(0.5) and est.variance == 0 and est.ci_low == est.ci_high
    assert hajek_mean(units).mean == pytest.approx(0.5)


def test_estimators_reject_bad_probabilities() -> None:
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        hajek_mean([SampledValue(1.0, 0.0)])
    with pytest.raises(ValueError, match="no sampled values"):
        horvitz_thompson_mean([], population_size=10)


def test_design_weighted_iqs_reweights_strata() -> None:
    # stratum a: 2 of 10 sampled (score 1.0); stratum b: 2 of 2 sampled (score 0.0) -> 10·1 + 2·0 over 12
    reviews = [(1.0, 0.2, "a"), (1.0, 0.2, "a"), (0.0, 1.0, "b"), (0.0, 1.0, "b")]
    assert design_weighted_iqs(reviews).mean == pytest.approx(10 / 12)


def test_ht_estimate_lands_in_its_95_ci_in_at_least_90_of_100_trials() -> None:
    """A fixed population; the design's randomness is the plan seed. Agents differ in volume and quality, so
    per-agent quotas give very unequal inclusion probabilities and an unweighted mean would be biased."""
    pop = population(1500, agents=40, weeks=2, seed=11)
    rng = random.Random(5)
    quality = {f"a{i:03d}": rng.uniform(0.4, 0.95) for i in range(40)}
    score = {
        e.conversation.conversation_id: min(
            1.0, max(0.0, rng.gauss(quality[e.conversation.agent_id or ""], 0.15))
        )
        for e in pop
    }
    true_mean = sum(score.values()) / len(score)
    covered = {"stratified HT": 0, "random HT": 0, "random Hajek": 0}
    naive_bias = 0.0
    for trial in range(100):
        state = SamplerState(TENANT)
        state.put_plan(
            parse_plan({"plan_id": "q", "kind": "stratified", "quota": 5, "seed": trial, "priority": 1})
        )
        state.put_plan(
            parse_plan({"plan_id": "r", "kind": "random", "rate": 0.08, "seed": trial, "priority": 2})
        )
        decisions = [
            d for e in pop for d in observe_conversation(state, e, partition_high=None, config=CONFIG)
        ]
        decisions += close(state, T0 + timedelta(weeks=4), config=CONFIG)
        strat = [
            SampledValue(score[d.conversation_id], d.inclusion_probability, d.stratum)
            for d in decisions
            if d.plan_id == "q"
        ]
        rand = [
            SampledValue(score[d.conversation_id], d.inclusion_probability)
            for d in decisions
            if d.plan_id == "r"
        ]
        for name, est in (
            ("stratified HT", horvitz_thompson_mean(strat, len(pop))),
            ("random HT", horvitz_thompson_mean(rand, len(pop))),
            ("random Hajek", hajek_mean(rand)),
        ):
            covered[name] += est.ci_low <= true_mean <= est.ci_high
        naive_bias += (sum(u.value for u in strat) / len(strat) - true_mean) / 100
    print(
        f"coverage of the true mean {true_mean:.4f} in 100 trials: {covered}; naive stratified bias {naive_bias:+.4f}"
    )
    assert all(c >= 90 for c in covered.values()), covered
