"""pCSAT: no made-up numbers, evidence that points at turns, and validity measured on the half of STAR the
model was not fitted on (computed here from the data, not read from model.json)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from bench import pcsat_fit
from qastream_ingest.importers import parse_star
from qastream_scoring.autoqa import DEFAULT_REGISTRY, prepare, score_conversation
from qastream_scoring.autoqa_runner import AutoQARunner
from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.pcsat import current
from qastream_scoring.pcsat.model import NO_AGENT, NO_CUSTOMER
from qastream_scoring.pcsat.signals import scorer_versions
from qastream_shared.conversation import Conversation
from qastream_shared.events import PredictedCsat
from qastream_shared.scorecard import ScoringSettings
from qastream_shared.testing import STAR

T0 = datetime(2025, 3, 3, 9, tzinfo=UTC)


def chat(*turns: tuple[str, str]) -> Conversation:
    return Conversation.model_validate(
        {
            "conversation_id": "c1",
            "turns": [
                {"role": role, "text": text, "ts": T0 + timedelta(seconds=20 * i)}
                for i, (role, text) in enumerate(turns)
            ],
        }
    )


def test_no_customer_turn_gets_no_number_but_a_reason() -> None:
    p = current().predict(chat(("agent", "Hello, how can I help?"), ("agent", "Anyone there?")))
    assert (p.predicted, p.p_dissatisfied, p.reason) == (None, None, NO_CUSTOMER)
    assert p.model_version == current().version and p.cues == [] and p.evidence == []
    blank = current().predict(chat(("customer", "   "), ("agent", "Hello?")))
    assert (blank.predicted, blank.p_dissatisfied, blank.reason) == (None, None, NO_CUSTOMER)
    unanswered = current().predict(chat(("customer", "Hello? I need help with my booking")))
    assert (unanswered.predicted, unanswered.p_dissatisfied, unanswered.reason) == (None, None, NO_AGENT)


def test_a_refused_angry_customer_is_predicted_less_satisfied_than_a_thankful_one() -> None:
    happy = current().predict(
        chat(
            ("customer", "Hi, can you book me a table for two tonight?"),
            ("agent", "Of course. Your table for two at 8 pm is booked and confirmed."),
            ("customer", "Perfect, thank you so much! That was really helpful."),
            ("agent", "You're welcome, have a great evening!"),
        )
    )
    unhappy = current().predict(
        chat(
            ("customer", "Hi, can you book me a table for two tonight?"),
            ("agent", "Sorry, we cannot book that. No tables are available."),
            ("customer", "This is ridiculous, I already told you the time. Useless."),
            ("agent", "Sorry, we cannot book that. No tables are available."),
            ("customer", "Forget it."),
            ("agent", "Goodbye."),
        )
    )
    assert happy.p_dissatisfied is not None and unhappy.p_dissatisfied is not None
    assert unhappy.p_dissatisfied > happy.p_dissatisfied + 0.2
    assert happy.predicted is not None and unhappy.predicted is not None
    assert unhappy.predicted < happy.predicted
    # The evidence quotes the turns behind the strongest cues, and each cue names its turns.
    top = unhappy.cues[0]
    assert abs(top.effect) == max(abs(c.effect) for c in unhappy.cues)
    assert {e.turn for e in unhappy.evidence} <= {t for c in unhappy.cues[:3] for t in c.turns}
    assert unhappy.evidence and all(e.quote for e in unhappy.evidence)
    assert {c.name for c in unhappy.cues} == set(current().coefficients)


def test_the_model_was_fitted_with_the_scorers_it_runs_with() -> None:
    # A scorer whose cues change gets a new version: the model must be refitted (bench.pcsat_fit) with it.
    assert current().scorer_versions == scorer_versions()


@pytest.fixture(scope="module")
def corpus() -> pcsat_fit.Corpus:
    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    return pcsat_fit.load(STAR)


def test_refitting_gives_the_stored_coefficients(corpus: pcsat_fit.Corpus) -> None:
    refit = pcsat_fit.fit(corpus)
    stored = current().document
    for key in ("version", "scorer_versions", "center", "scale", "coefficients", "intercept", "calibration"):
        assert refit[key] == stored[key], key


@pytest.fixture(scope="module")
def held_out(corpus: pcsat_fit.Corpus) -> tuple[pcsat_fit.Corpus, np.ndarray, np.ndarray]:
    p = pcsat_fit.predictions(corpus, current())
    return corpus, p, corpus.half == pcsat_fit.CHECK


def test_calibrated_within_a_tenth_in_every_well_filled_bin_of_the_held_out_half(
    held_out: tuple[pcsat_fit.Corpus, np.ndarray, np.ndarray],
) -> None:
    c, p, pick = held_out
    target = pcsat_fit.dissatisfied(c)
    m = pick & (target >= 0)
    bins = [b for b in pcsat_fit.reliability(p[m], target[m]) if b["n"] >= 30]
    assert len(bins) >= 4  # not vacuous: most conversations sit in bins this test checks
    assert sum(b["n"] for b in bins) >= 0.95 * m.sum()
    for b in bins:
        assert abs(b["mean_predicted"] - b["observed"]) <= 0.1, b


def test_beats_the_review_score_on_both_questions_in_the_held_out_half(
    held_out: tuple[pcsat_fit.Corpus, np.ndarray, np.ndarray],
) -> None:
    c, p, pick = held_out
    review_risk = 1 - c.review_score
    for y in (c.not_done, c.not_calm):
        assert pcsat_fit.auc(y, p, pick) > pcsat_fit.auc(y, review_risk, pick)


def test_the_published_validity_figures_are_what_the_shipped_model_gives_on_the_data(
    held_out: tuple[pcsat_fit.Corpus, np.ndarray, np.ndarray],
) -> None:
    """model.json's validity, intervals included, is what the API serves and the console shows."""
    c, p, _ = held_out
    assert pcsat_fit.validity(c, p) == current().document["validity"]


def test_the_auc_by_ranks_is_sklearns_on_both_questions_and_halves(
    held_out: tuple[pcsat_fit.Corpus, np.ndarray, np.ndarray],
) -> None:
    c, p, _ = held_out
    for y in (c.not_done, c.not_calm):
        for half in (pcsat_fit.FIT, pcsat_fit.CHECK):
            m = (c.half == half) & (y >= 0)
            for score in (p, 1 - c.review_score):  # review scores tie often: ties count half
                expected = roc_auc_score(y[m], score[m])
                assert float(pcsat_fit.rank_auc(y[m].astype(float), score[m])) == pytest.approx(
                    expected, abs=1e-12
                )


def test_auc_intervals_cover_the_figure_and_pair_the_two_scores() -> None:
    rng = np.random.default_rng(0)
    n = 1500
    y = (rng.random(n) < 0.15).astype(int)
    strong = y + rng.normal(0, 0.8, n)
    everyone = np.ones(n, dtype=bool)
    beside_noise = pcsat_fit.auc_intervals(y, strong, rng.normal(0, 1, n), everyone)
    lo, hi = beside_noise["pcsat_ci95"]
    assert lo < pcsat_fit.auc(y, strong, everyone) < hi
    low, high = beside_noise["review_score_ci95"]
    assert low < 0.5 < high  # noise tells nobody apart
    assert beside_noise["difference_ci95"][0] > 0  # so the strong score is shown better
    # Nearly the same score: paired resamples move both alike, so the difference's interval is far narrower
    # than either AUC's (drawn apart, each resample's two AUCs would differ by about the AUC's own spread).
    nudged = pcsat_fit.auc_intervals(y, strong, strong + rng.normal(0, 0.05, n), everyone)
    d_lo, d_hi = nudged["difference_ci95"]
    assert d_lo <= nudged["difference"] <= d_hi
    assert d_hi - d_lo < 0.2 * (hi - lo)


def test_too_few_negatives_for_an_interval_give_none_not_a_number() -> None:
    rng = np.random.default_rng(1)
    y = np.zeros(40, dtype=int)
    y[7] = 1  # most resamples hold no negative at all
    score = rng.random(40)
    found = pcsat_fit.auc_intervals(y, score, rng.random(40), np.ones(40, dtype=bool))
    assert (found["pcsat_ci95"], found["review_score_ci95"], found["difference_ci95"]) == (None, None, None)


@pytest.mark.xfail(
    strict=True,
    reason="not met by pCSAT 1.2.0: on the held-out half, task-not-done AUC is 0.817 against the 0.82 target "
    "and not-calm-helpful 0.719 against 0.75; no signal tried moved the calm head's out-of-fold AUC on the "
    "fitting half above about 0.72 but one that proxies STAR's templates, so the signals cannot meet the calm "
    "target honestly (see DESIGN.md, pCSAT, and bench.pcsat_candidates)",
)
def test_meets_the_targets_in_the_held_out_half(
    held_out: tuple[pcsat_fit.Corpus, np.ndarray, np.ndarray],
) -> None:
    c, p, pick = held_out
    for y, target in ((c.not_done, 0.82), (c.not_calm, 0.75)):
        assert pcsat_fit.auc(y, p, pick) >= target


def test_a_failing_signal_gives_a_reason_not_a_number(monkeypatch: pytest.MonkeyPatch) -> None:
    from qastream_scoring.autoqa.conduct import ConductScorer

    def broken(self: ConductScorer, view: object, parsed: object) -> None:
        raise ValueError("boom")

    monkeypatch.setattr(ConductScorer, "score", broken)
    p = current().predict(chat(("customer", "Hi, I need a taxi"), ("agent", "Booked, it is on its way.")))
    assert (p.predicted, p.p_dissatisfied) == (None, None)
    assert p.reason == "no signals: ValueError: boom"


def test_sharing_the_view_with_pcsat_leaves_every_rating_as_it_was() -> None:
    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    card = prepare(default_scorecard())
    runner = AutoQARunner(DEFAULT_REGISTRY)
    with STAR.open("rb") as fh:
        convs = [c for c in itertools.islice(parse_star(fh), 300) if isinstance(c, Conversation)]
    for conv in convs:
        shared = runner.review(conv, card, ScoringSettings())
        alone = score_conversation(conv, card)
        assert (shared.ratings, shared.result) == (alone.ratings, alone.result), conv.conversation_id
        assert shared.pcsat_json is not None
        assert PredictedCsat.model_validate_json(shared.pcsat_json) == current().predict(conv)


def test_the_tone_signal_is_the_sentiment_scorers_agent_tone_on_every_star_conversation() -> None:
    """pCSAT reads tone from the scorer's per-view result, without its quotes: the same fraction and turns as
    the sentiment scorer's finding with customer_weight 0."""
    from qastream_scoring.autoqa.base import ConversationView
    from qastream_scoring.autoqa.sentiment import SentimentScorer
    from qastream_scoring.pcsat.signals import signals
    from qastream_shared.scorecard import Scale, ScaleKind

    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    scorer = SentimentScorer()
    params = scorer.parse({"customer_weight": 0}, Scale(kind=ScaleKind.five_point))
    with STAR.open("rb") as fh:
        convs = [c for c in parse_star(fh) if isinstance(c, Conversation)]
    differ = []
    for conv in convs:
        view = ConversationView(conv)
        if not (view.agent and view.customer):
            continue
        finding = scorer.score(ConversationView(conv), params)
        tone = signals(view)["agent_tone"]
        if (tone.value, tone.turns) != (finding.fraction, tuple(e.turn for e in finding.evidence)):
            differ.append(conv.conversation_id)
    assert not differ, differ[:5]
