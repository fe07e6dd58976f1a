"""The VADER floor is a true lower bound: on texts built to trip each of VADER's rules, on every turn of STAR,
and, through it, pCSAT predicts exactly what it predicts when VADER scores every turn."""

from __future__ import annotations

import pytest
from scoring_fixtures import convo

from qastream_ingest.importers import parse_star
from qastream_scoring.autoqa import vader
from qastream_scoring.autoqa.base import ConversationView
from qastream_scoring.autoqa.vader import below, compound, compound_floor
from qastream_scoring.pcsat import current
from qastream_shared.conversation import Conversation
from qastream_shared.testing import STAR

TRICKY = [
    "I don't have a booking number",  # a negator with nothing to turn
    "That is not good at all",  # a negator turning a positive word
    "No, that's not what I asked",
    "This is useless and I am angry!!",
    "not :)",  # a positive emoticon, negated
    "Oh :(",  # a negative emoticon, the only sentiment in the turn
    "It is 86 and I am John.",  # a number VADER reads as slang ("86": get rid of)
    "I need some directions though :(",
    "Thanks, great, see you at 10:30",
    "Thanks \U0001f620",  # an emoji: VADER reads its description ("angry face")
    "that is 'bad'",  # quoted: VADER strips the quotes off the token
    "that was _bad_ honestly",
    "slightly aboard",  # a dampener turning a barely positive word negative
    "it was kind of aboard",  # a multi-word dampener
    "oh well sure yeah right",  # a special idiom
    "the service was good but the wait was bad",  # "but" rescales both sides
    "never so good, NOT GOOD AT ALL!!!!",  # emphasis, capitals, negation and exclamation marks
    "least helpful agent ever",  # "least" negates
    "no good no nice no help???",  # "no" negates what follows it
    "It isn't-great, really",  # "n't" inside a token
    "VERY BAD service from you today",  # capitals and a booster on a negative word
    "Great, great, great, but a tiny problem",
    "It was fine. Sad though.",
    "kind\nof   aboard",  # a phrase split over other whitespace
]


@pytest.mark.parametrize("text", TRICKY)
def test_the_floor_is_never_above_vaders_score(text: str) -> None:
    assert compound_floor(text) <= compound(text)
    view = ConversationView(convo(("customer", text), ("agent", "ok")))
    for threshold in (0.0, -0.3, -0.6):
        assert below(view, 0, threshold) is (compound(text) < threshold), threshold


def test_the_floor_skips_vader_where_nothing_can_be_negative() -> None:
    assert compound_floor("Thanks, great, see you at 10:30") == 0.0
    assert compound_floor("I don't have a booking number") == 0.0
    # Negative words outweighed by positive ones that nothing can turn: VADER is not needed above -0.3.
    assert compound_floor("Great, thank you so much, sorry for the wait") >= -0.3


def star() -> list[Conversation]:
    if not STAR.exists():
        pytest.skip(f"{STAR} is not here")
    with STAR.open("rb") as fh:
        return [c for c in parse_star(fh) if isinstance(c, Conversation)]


def test_the_gate_and_the_floor_hold_on_every_turn_of_star() -> None:
    views = [ConversationView(c) for c in star()]
    texts = {t for v in views for t in v.texts}
    above = [t for t in texts if compound_floor(t) > compound(t)]
    assert not above, above[:5]
    wrong = [
        (v.conversation.conversation_id, i)
        for v in views
        for i, text in enumerate(v.texts)
        for threshold in (0.0, -0.3)
        if below(v, i, threshold) is not (compound(text) < threshold)
    ]
    assert not wrong, wrong[:5]
    # It earns its keep: most turns never reach VADER at the agent-tone threshold.
    skipped = sum(compound_floor(t) >= -0.3 for t in texts)
    assert skipped > 0.8 * len(texts)


def test_pcsat_is_bit_identical_with_vader_on_every_turn(monkeypatch: pytest.MonkeyPatch) -> None:
    convs = star()
    model = current()
    fast = [model.predict(ConversationView(c)).model_dump_json() for c in convs]
    monkeypatch.setattr(vader, "below", lambda view, turn, threshold: compound(view.texts[turn]) < threshold)
    full = [model.predict(ConversationView(c)).model_dump_json() for c in convs]
    differ = [c.conversation_id for c, a, b in zip(convs, fast, full, strict=True) if a != b]
    assert not differ, differ[:5]
