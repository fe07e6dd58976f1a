"""`vader.compound` is vaderSentiment's compound, float for float: on texts built to trip each of VADER's rules,
on random texts of lexicon entries and modifiers, and on every turn of STAR. The gate in front of it is sound:
`below` agrees with vaderSentiment on all of them, and through it pCSAT predicts exactly what it predicts when
vaderSentiment scores every turn."""

from __future__ import annotations

import random

import pytest
from scoring_fixtures import convo
from vaderSentiment.vaderSentiment import BOOSTER_DICT, NEGATE, SPECIAL_CASES

from qastream_ingest.importers import parse_star
from qastream_scoring.autoqa import vader
from qastream_scoring.autoqa.base import ConversationView
from qastream_scoring.autoqa.vader import below, compound, reference
from qastream_scoring.pcsat import current
from qastream_shared.conversation import Conversation
from qastream_shared.testing import STAR

TRICKY = [
    "I don't have a booking number",  # a negator with nothing to turn
    "That is not good at all",  # a negator turning a positive word
    "No, that's not what I asked",
    "no good no nice no help???",  # "no" negates what follows it
    "no or nor bad",  # "no" three back, through "or"/"nor"
    "This is useless and I am angry!!",
    "not :)",  # a positive emoticon, negated
    "Oh :(",  # a negative emoticon, the only sentiment in the turn
    "It is 86 and I am John.",  # a number VADER reads as slang ("86": get rid of)
    "h8 it, o.o (o.o) 'o.o' v.v",  # entries of letters and digits, or letters joined by dots
    "you n00b",
    "I need some directions though :(",
    "Thanks, great, see you at 10:30",
    "Thanks \U0001f620",  # an emoji: VADER reads its description ("angry face")
    "that is 'bad'",  # quoted: VADER strips the quotes off the token
    "that was _bad_ honestly",
    "slightly aboard",  # a dampener turning a barely positive word negative
    "it was kind of aboard",  # a multi-word dampener
    "kind of good, kind people",  # "kind" before "of" scores 0
    "oh well sure yeah right",  # a special idiom
    "the bomb and the shit, bad ass",  # special idioms replacing a valence
    "the service was good but the wait was bad",  # "but" rescales both sides
    "good good but good good bad",  # "but" with repeated values (VADER rescales the first equal one)
    "never so good, NOT GOOD AT ALL!!!!",  # emphasis, capitals, negation and exclamation marks
    "it has never been this bad",
    "without a doubt, excellent; without doubt great",
    "least helpful agent ever",  # "least" negates
    "at least it is good, very least good",  # ... but not after "at" or "very"
    "It isn't-great, really",  # "n't" inside a token
    "VERY BAD service from you today",  # capitals and a booster on a negative word
    "VERY BAD",  # all in capitals: no capital emphasis
    "Great, great, great, but a tiny problem",
    "It was fine. Sad though.",
    "kind\nof   aboard",  # a phrase split over other whitespace
    "",
    "!!!",
    "ok ok ok?? ok????",
]


@pytest.mark.parametrize("text", TRICKY)
def test_compound_and_below_are_vaders(text: str) -> None:
    assert compound(text) == reference(text)
    view = ConversationView(convo(("customer", text or "."), ("agent", "ok")))
    for threshold in (0.0, -0.3, -0.6):
        assert below(view, 0, threshold) is (reference(text or ".") < threshold), threshold


def test_compound_is_vaders_on_random_texts() -> None:
    """Lexicon entries next to every modifier VADER looks at, in any case and with punctuation around them."""
    rng = random.Random(17)
    lexicon = sorted(vader.analyzer().lexicon)
    modifiers = [
        *BOOSTER_DICT, *NEGATE, *(w for p in SPECIAL_CASES for w in p.split()),
        "no", "least", "at", "very", "never", "so", "this", "without", "doubt", "or", "nor", "but", "kind", "of",
        "good", "bad", "it", "the", ":)", ":(", "!", "?", "\U0001f620",
    ]  # fmt: skip

    def token() -> str:
        word = rng.choice(lexicon if rng.random() < 0.35 else modifiers)
        word = word.upper() if rng.random() < 0.12 else word.capitalize() if rng.random() < 0.1 else word
        if rng.random() < 0.15:
            word += rng.choice([",", ".", "!", "?", "'", "...", "!?"])
        return rng.choice(["'", '"', "(", "_"]) + word if rng.random() < 0.05 else word

    texts = [" ".join(token() for _ in range(rng.randint(0, 14))) for _ in range(20_000)]
    wrong = [t for t in texts if compound.__wrapped__(t) != reference(t)]
    assert not wrong, wrong[:5]


def test_the_gate_keeps_texts_with_nothing_negative_from_being_scored(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scored: list[str] = []

    def counted(text: str) -> float:
        scored.append(text)
        return reference(text)

    monkeypatch.setattr(vader, "compound", counted)
    vader.clear_verdicts()
    for text in ("Thanks, great, see you at 10:30", "Room 86B is booked", "It is 86 and I am John."):
        below(ConversationView(convo(("customer", text), ("agent", "ok"))), 0, -0.3)
    assert scored == ["It is 86 and I am John."]


def test_a_repeated_text_is_judged_once_whatever_the_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    """Agent macros repeat across conversations: the gate and the compound run once per text, and the verdict
    answers every threshold."""
    gated: list[str] = []
    gate = vader._gate()

    class Counted:
        def may_be_negative(self, text: str, lower: str, runs: tuple[str, ...]) -> bool:
            gated.append(text)
            return gate.may_be_negative(text, lower, runs)

    monkeypatch.setattr(vader, "_gate", Counted)
    vader.clear_verdicts()
    texts = ["I can't help you, sorry.", "Thanks, all done.", "This is not good"]
    for _ in range(3):
        for text in texts:
            view = ConversationView(convo(("customer", text), ("agent", "ok")))
            for threshold in (0.0, -0.3, -0.6):
                assert below(view, 0, threshold) is (reference(text) < threshold), (text, threshold)
    assert gated == texts


def star() -> list[Conversation]:
    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    with STAR.open("rb") as fh:
        return [c for c in parse_star(fh) if isinstance(c, Conversation)]


def test_compound_and_below_are_vaders_on_every_turn_of_star() -> None:
    views = [ConversationView(c) for c in star()]
    texts = {t for v in views for t in v.texts}
    wrong = [t for t in texts if compound.__wrapped__(t) != reference(t)]
    assert not wrong, wrong[:5]
    wrong_below = [
        (v.conversation.conversation_id, i)
        for v in views
        for i, text in enumerate(v.texts)
        for threshold in (0.0, -0.3)
        if below(v, i, threshold) is not (compound(text) < threshold)
    ]
    assert not wrong_below, wrong_below[:5]


def test_pcsat_is_bit_identical_with_vadersentiment_on_every_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    convs = star()
    model = current()
    fast = [model.predict(ConversationView(c)).model_dump_json() for c in convs]
    monkeypatch.setattr(vader, "compound", reference)
    monkeypatch.setattr(vader, "below", lambda view, turn, threshold: reference(view.texts[turn]) < threshold)
    full = [model.predict(ConversationView(c)).model_dump_json() for c in convs]
    differ = [c.conversation_id for c, a, b in zip(convs, fast, full, strict=True) if a != b]
    assert not differ, differ[:5]
