from __future__ import annotations

import random
import re
from typing import Any

import pytest
from scoring_fixtures import card, convo

from qastream_scoring.autoqa import ConversationView, Finding, Registry, default_registry, score_conversation
from qastream_scoring.autoqa.base import occurs
from qastream_scoring.autoqa.conduct import ConductScorer, jaccard
from qastream_scoring.autoqa.phrases import PhrasesScorer
from qastream_scoring.autoqa.resolution import ResolutionScorer
from qastream_scoring.autoqa.sentiment import SentimentScorer
from qastream_scoring.autoqa.spelling import SpellingScorer
from qastream_scoring.autoqa.timing import TimingScorer
from qastream_scoring.autoqa.vader import compound
from qastream_scoring.default_scorecard import default_scorecard
from qastream_shared.conversation import Conversation
from qastream_shared.scorecard import Category, Scale, ScaleKind, ScorerRef

BIN = Scale(kind=ScaleKind.binary)

GOOD = convo(
    ("customer", "Hi, my name is Maria. My order never arrived and I'm really frustrated."),
    ("agent", "Hello Maria, thank you for contacting us. I'm sorry to hear that, let me check."),
    ("customer", "Thanks."),
    ("agent", "I have found the parcel and a replacement has been sent; you'll have it tomorrow."),
    ("customer", "Perfect, thank you so much!"),
    ("agent", "You're welcome, Maria. Is there anything else? Have a great day!"),
)
BAD = convo(
    ("customer", "My card was charged twice."),
    ("agent", "Unfortunately I can't do anything about that."),
    ("customer", "That's not what I asked. I said I was charged twice!"),
    ("agent", "Sorry, that is not possible."),
    ("customer", "This is useless, I want to speak to a manager."),
    gap_s=200,
)


def run(scorer: Any, conv: Conversation, **params: Any) -> Finding:
    return scorer.score(ConversationView(conv), scorer.parse(params, BIN))


def test_phrases_required_window_and_forbidden() -> None:
    greet = {"required": ["hello", "hi"], "window": "first", "turns": 1}
    hit = run(PhrasesScorer(), GOOD, **greet)
    assert hit.fraction == 1.0 and hit.evidence[0].turn == 1 and "Hello Maria" in hit.evidence[0].quote
    assert run(PhrasesScorer(), BAD, **greet).fraction == 0.0
    assert run(PhrasesScorer(), GOOD, required=["anything else", "goodbye"], require_all=True).fraction == 0.5
    assert run(PhrasesScorer(), GOOD, required_regex=[r"thank(s| you) for contacting"]).fraction == 1.0
    forbidden = run(PhrasesScorer(), GOOD, required=["hello"], forbidden=["let me check"])
    assert forbidden.fraction == 0.0 and forbidden.evidence[0].turn == 1


def test_a_phrase_check_answers_for_its_own_pattern_whatever_others_asked_of_the_same_text() -> None:
    # `occurs` caches by (pattern, text): a text's answer for one pattern must never answer for another.
    hello, goodbye = (["hello"], 1.0), (["goodbye"], 0.0)  # what GOOD's first agent turn holds, and not
    for order in ((hello, goodbye), (goodbye, hello)):
        for required, fraction in order:
            assert run(PhrasesScorer(), GOOD, required=required, window="first", turns=1).fraction == fraction
    sensitive, insensitive = re.compile("hello"), re.compile("hello", re.IGNORECASE)
    assert occurs(insensitive, "Hello Maria") and not occurs(sensitive, "Hello Maria")
    assert not occurs(sensitive, "Hello Maria") and occurs(insensitive, "Hello Maria")


def test_jaccard_counts_the_union_it_does_not_build() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        a = frozenset(map(str, rng.sample(range(12), rng.randint(1, 8))))
        b = frozenset(map(str, rng.sample(range(12), rng.randint(1, 8))))
        assert jaccard(a, b) == len(a & b) / len(a | b)


def test_phrases_customer_name() -> None:
    assert run(PhrasesScorer(), GOOD, target="customer_name").fraction == 1.0
    assert run(PhrasesScorer(), BAD, target="customer_name").fraction is None  # no name given: N/A
    asked = convo(
        ("customer", "I need a taxi"),
        ("agent", "May I have your name?"),
        ("customer", "Tom"),
        ("agent", "Booked."),
    )
    assert run(PhrasesScorer(), asked, target="customer_name").fraction == 0.0


def test_sentiment_mood_and_tone() -> None:
    good, bad = run(SentimentScorer(), GOOD), run(SentimentScorer(), BAD)
    assert good.fraction is not None and bad.fraction is not None
    assert good.fraction > 0.8 > bad.fraction
    rude = convo(("customer", "Where is my refund?"), ("agent", "Stop whining, it is your own stupid fault."))
    assert run(SentimentScorer(), rude, customer_weight=0).fraction == 0.5
    # the customer was upset and the agent acknowledged it: full tone marks
    assert run(SentimentScorer(), GOOD, customer_weight=0).fraction == 1.0


def test_sentiment_customer_mood_rewards_appreciation_not_just_polarity() -> None:
    def ending(customer_says: str) -> Conversation:
        return convo(
            ("customer", "I need to move my appointment to Monday."),
            ("agent", "Done, it is now on Monday at 10."),
            ("customer", customer_says),
            ("agent", "Goodbye."),
        )

    def mood(customer_says: str) -> float:
        found = run(SentimentScorer(), ending(customer_says), customer_weight=1).fraction
        assert found is not None
        return found

    assert compound("Monday at 10 then.") == 0 and compound("That is terrible.") < 0
    # Neutral throughout, no appreciation, nothing upbeat: exactly the scale's midpoint.
    assert mood("Monday at 10 then.") == pytest.approx(0.5)
    # A sour ending takes the lower half, and a sourer one goes lower still.
    assert mood("That is terrible.") < 0.5
    assert mood("This is terrible, awful, the worst service ever.") < mood("That is terrible.")
    # Thanks lift a neutral ending; an upbeat exclamation lifts it to the top of the scale.
    assert 0.5 < mood("ok thanks") < mood("Perfect, thank you!") == 1.0
    # Appreciation counts beyond its polarity: a thank-you scores above equally positive words without one.
    assert compound("ok thanks") <= compound("ok good") and mood("ok thanks") > mood("ok good")
    found = run(SentimentScorer(), ending("Perfect, thank you!"), customer_weight=1)
    assert [e.turn for e in found.evidence] == [2, 0]


def test_timing_thresholds() -> None:
    fast = run(TimingScorer(), GOOD)
    slow = run(TimingScorer(), BAD)
    assert fast.fraction == 1.0
    assert slow.fraction is not None and slow.fraction < 0.4
    no_ts = Conversation.model_validate(
        {
            "conversation_id": "x",
            "turns": [{"role": "customer", "text": "hi"}, {"role": "agent", "text": "hello"}],
        }
    )
    assert run(TimingScorer(), no_ts).fraction is None


def test_resolution_checks() -> None:
    good, bad = run(ResolutionScorer(), GOOD), run(ResolutionScorer(), BAD)
    assert good.fraction is not None and bad.fraction is not None
    assert good.fraction >= 0.9 and bad.fraction == 0.0
    abandoned = convo(
        ("customer", "hi"), ("agent", "Hello, how can I help?"), ("customer", "my bill is wrong")
    )
    assert (run(ResolutionScorer(), abandoned).fraction or 0) < 0.5
    assert run(ResolutionScorer(), GOOD, check="solution_offered").fraction == 1.0
    assert run(ResolutionScorer(), BAD, check="solution_offered").fraction == 0.0
    assert run(ResolutionScorer(), GOOD, check="corrections").fraction == 1.0
    assert (run(ResolutionScorer(), BAD, check="corrections").fraction or 1) < 0.5


def test_resolution_judges_the_last_outcome_and_the_share_of_bad_news() -> None:
    def resolution(*agent_and_customer: tuple[str, str]) -> Finding:
        return run(ResolutionScorer(), convo(*agent_and_customer))

    ask = ("customer", "Can you book me a room at the Grand for Friday?")
    thanks, bye = ("customer", "Thanks!"), ("agent", "You're welcome, goodbye!")
    refused = ("agent", "Unfortunately the Grand is fully booked on Friday.")
    booked = ("agent", "Your room at the Plaza is booked for Friday.")
    refused_then_booked = resolution(
        ask, refused, ("customer", "Then the Plaza, please."), booked, thanks, bye
    )
    booked_then_refused = resolution(
        ask,
        ("agent", "Your room at the Grand is booked for Friday."),
        ("customer", "Actually, make it Saturday, please."),
        ("agent", "Unfortunately the Grand is fully booked on Saturday."),
        thanks,
        bye,
    )
    booked_at_once = resolution(ask, booked, ("customer", "Great."), ("agent", "Anything else?"), thanks, bye)
    no_outcome = resolution(
        ("customer", "What are your opening hours?"), ("agent", "We open at nine every weekday."), thanks, bye
    )
    fractions = [f.fraction for f in (booked_at_once, refused_then_booked, no_outcome, booked_then_refused)]
    assert None not in fractions
    at_once, then_booked, neither, then_refused = (float(f or 0) for f in fractions)
    # The last outcome decides: the same two outcomes in the other order score far apart.
    assert then_booked > 0.5 > then_refused
    # Bad news on the way costs something even when the task is done in the end.
    assert at_once > then_booked
    # Neither carried out nor refused sits between a booking and a refusal.
    assert then_refused < neither < at_once
    # Evidence: the refusal, the booking and the customer's thanks.
    assert [e.turn for e in refused_then_booked.evidence] == [1, 3, 4]


def test_spelling_rate() -> None:
    clean = run(SpellingScorer(), GOOD)
    sloppy = convo(
        ("customer", "help"), ("agent", "I beleive your pakage was delivred yesturday to the adress.")
    )
    assert clean.fraction == 1.0
    bad = run(SpellingScorer(), sloppy)
    assert bad.fraction == 0.0 and bad.evidence[0].turn == 1
    assert run(SpellingScorer(), convo(("customer", "hi"), ("agent", "Hello!"))).fraction is None


def test_too_little_content_is_na_everywhere() -> None:
    only_customer = convo(("customer", "Hello? Anyone there?"))
    review = score_conversation(only_customer, default_scorecard())
    assert all(r.value is None for r in review.ratings)
    assert review.result.score is None and review.result.passed is None
    assert {r.comment for r in review.ratings if r.provenance} == {"no agent turn"}


def test_score_conversation_ranks_good_above_bad_with_provenance() -> None:
    card = default_scorecard()
    good, bad = score_conversation(GOOD, card), score_conversation(BAD, card)
    assert good.result.score is not None and bad.result.score is not None
    assert good.result.score > 0.8 > 0.4 > bad.result.score
    assert good.scorecard_id == card.scorecard_id and good.scorecard_version == 1
    assert set(good.scorer_versions) == {"phrases", "sentiment", "conduct", "resolution", "timing"}
    for rating in good.ratings:
        assert rating.provenance is not None and rating.provenance.version
        assert rating.score is None or 0 <= rating.score <= 1


class Boom:
    name = "boom"
    version = "0.0.1"

    def parse(self, params: Any, scale: Scale) -> None:
        return None

    def can_fail(self, parsed: Any) -> bool:
        return True

    def score(self, view: ConversationView, parsed: Any) -> Finding:
        raise ZeroDivisionError("scorer bug")


def test_a_scorer_that_throws_makes_only_its_category_na() -> None:
    registry = Registry([*[default_registry().get(n) for n in ("phrases",)], Boom()])  # type: ignore[list-item]
    sc = card(
        Category(
            category_id="greet",
            name="g",
            weight=10,
            scale=BIN,
            scorer=ScorerRef(name="phrases", params={"required": ["hello"]}),
        ),
        Category(
            category_id="crash", name="c", weight=90, scale=BIN, critical=True, scorer=ScorerRef(name="boom")
        ),
        Category(category_id="manual", name="m", weight=10, scale=BIN),
        version=3,
    )
    review = score_conversation(GOOD, sc, registry=registry)
    by_id = {r.category_id: r for r in review.ratings}
    assert by_id["crash"].value is None
    assert (
        by_id["crash"].provenance is not None
        and by_id["crash"].provenance.error == "ZeroDivisionError: scorer bug"
    )
    assert by_id["manual"].value is None and by_id["manual"].provenance is None
    assert review.result.score == 1.0 and not review.result.auto_failed
    assert review.scorer_versions == {"boom": "0.0.1", "phrases": "1.0.0"}


def test_conduct_clean_exchange_scores_full() -> None:
    found = run(ConductScorer(), GOOD)
    assert found.fraction == 1.0 and found.evidence == () and found.note is None


def test_conduct_agent_loop_and_customer_repeat() -> None:
    stuck = convo(
        ("customer", "I need to change the delivery address on my order."),
        ("agent", "Could you give me your order number, please?"),
        ("customer", "I need to change the delivery address on my order please."),
        ("agent", "Could you give me your order number please?"),
    )
    only = {"customer_frustration": 0, "curt_reply": 0, "sloppy_writing": 0}
    found = run(ConductScorer(), stuck, penalties={"agent_loop": 0.2, "customer_repeat": 0.3, **only})
    assert found.fraction == 0.5
    assert [e.turn for e in found.evidence] == [2, 3]
    assert found.note == "agent_loop ×1, customer_repeat ×1"


def test_conduct_frustration_curt_and_sloppy_writing() -> None:
    rough = convo(
        ("customer", "Where is my parcel?"),
        ("agent", "tracking number"),
        ("customer", "I ALREADY gave it to you, this is ridiculous!!"),
        ("agent", "Found it, it arrives tomorrow."),
    )
    frustrated = run(ConductScorer(), rough, penalties={"customer_frustration": 0.1})
    assert frustrated.fraction == 0.9 and [e.turn for e in frustrated.evidence] == [2]
    curt = run(ConductScorer(), rough, penalties={"curt_reply": 0.2})
    assert curt.fraction == 0.8 and [e.turn for e in curt.evidence] == [1]
    # One agent turn in two starts in lower case without end punctuation: half the penalty.
    sloppy = run(ConductScorer(), rough, penalties={"sloppy_writing": 0.5})
    assert sloppy.fraction == 0.75
    polite_short = convo(("customer", "Can you book it?"), ("agent", "Sure, done."))
    assert run(ConductScorer(), polite_short, penalties={"curt_reply": 0.2}).fraction == 1.0


def test_conduct_premature_close() -> None:
    cut_off = convo(
        ("customer", "Please cancel my order."),
        ("agent", "It is cancelled. Goodbye!"),
        ("customer", "Wait, will I get a refund?"),
        ("agent", "Yes, within five days. Bye."),
        ("customer", "Thanks! And the invoice?"),
        ("agent", "It is in your inbox. Goodbye."),
        ("customer", "Thanks, bye!"),
        ("agent", "Bye."),
    )
    found = run(ConductScorer(), cut_off, penalties={"premature_close": 0.2})
    # A question after a goodbye counts even with thanks in it; "Thanks, bye!" is the customer closing too.
    assert found.fraction == pytest.approx(0.6) and [e.turn for e in found.evidence] == [2, 4]
    assert found.note == "premature_close ×2"


def test_conduct_hits_are_capped_and_na_without_exchange() -> None:
    loop = convo(
        ("customer", "Hello?"),
        *[("agent", "Please hold while I check your account.")] * 6,
    )
    assert run(ConductScorer(), loop, penalties={"agent_loop": 0.2}, max_hits=3).fraction == pytest.approx(
        0.4
    )
    assert run(ConductScorer(), convo(("customer", "Hello?"))).fraction is None


def test_a_view_scores_equal_params_once_and_different_params_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ConversationView.finding` reuses a finding for params equal to earlier ones (another object, as pCSAT's
    are to the scorecard's), also when asked again, and never for params that differ."""
    scored: list[Any] = []
    real = ResolutionScorer.score

    def counted(self: ResolutionScorer, view: ConversationView, parsed: Any) -> Finding:
        scored.append(parsed)
        return real(self, view, parsed)

    monkeypatch.setattr(ResolutionScorer, "score", counted)
    scorer = ResolutionScorer()
    view = ConversationView(BAD)
    first = view.finding(scorer, scorer.parse({"check": "resolved"}, BIN))
    for _ in range(2):
        assert view.finding(scorer, scorer.parse({"check": "resolved"}, BIN)) is first
    assert len(scored) == 1
    view.finding(scorer, scorer.parse({"check": "corrections"}, BIN))
    view.finding(scorer, scorer.parse({"check": "resolved", "tail": 3}, BIN))
    assert [p.model_dump() for p in scored] == [
        {"check": "resolved", "tail": 2},
        {"check": "corrections", "tail": 2},
        {"check": "resolved", "tail": 3},
    ]
