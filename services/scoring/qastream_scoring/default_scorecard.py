"""The customer-service scorecard every new tenant starts with; each category names its AutoQA scorer."""

from __future__ import annotations

from datetime import datetime

from qastream_shared.scorecard import Category, Group, Scale, ScaleKind, Scorecard, ScorerRef

DEFAULT_SCORECARD_ID = "customer-service"

GREETINGS = [
    "hello", "hi", "hey", "good morning", "good afternoon", "good evening", "welcome", "greetings",
    "how can i help", "how may i help", "how can i assist", "how may i assist", "thank you for contacting",
    "thanks for contacting", "thanks for reaching out", "thank you for reaching out",
]  # fmt: skip
CLOSINGS = [
    "anything else", "goodbye", "bye", "have a nice day", "have a great day", "have a good day",
    "have a wonderful", "take care", "enjoy", "thank you for contacting", "thanks for contacting",
    "glad i could help", "happy to help", "is there anything", "you're welcome", "you are welcome",
]  # fmt: skip
FORBIDDEN = [
    "shut up", "stupid", "idiot", "dumb", "moron", "not my problem", "i don't care", "deal with it",
    "your password", "pin number", "social security number", "full card number",
]  # fmt: skip


def _cat(
    cid: str, name: str, description: str, weight: int, scale: Scale, scorer: str, **params: object
) -> Category:
    return Category(
        category_id=cid,
        name=name,
        description=description,
        weight=weight,
        scale=scale,
        scorer=ScorerRef(name=scorer, params=dict(params)),
        allow_na=True,
        root_cause_tags=[],
    )


BINARY = Scale(kind=ScaleKind.binary)
FIVE = Scale(kind=ScaleKind.five_point)
FOUR = Scale(kind=ScaleKind.four_point)
THREE = Scale(kind=ScaleKind.three_point)


def default_scorecard(published_at: datetime | None = None) -> Scorecard:
    # The weights lean on the customer's mood, the outcome and conduct: on the labelled STAR chats those are
    # what the customers' own post-chat answers track (bench/autoqa_validity.py); greeting, accuracy and
    # solution-offered stay on the card for reviewers and coaching but barely move the score.
    greeting = _cat(
        "greeting", "Greeting", "Opens with a greeting and an offer to help.", 2, BINARY,
        "phrases", required=GREETINGS, window="first", turns=2,
    )  # fmt: skip
    empathy = _cat(
        "empathy-tone", "Empathy and tone",
        "Stays calm and courteous, acknowledges the customer's situation: judged by the customer's own mood, "
        "how they close and whether they show appreciation.",
        45, FIVE, "sentiment", customer_weight=1.0,
    )  # fmt: skip
    conduct = _cat(
        "conduct", "Conduct",
        "Attentive, clear replies: no looping on one message, no curt or sloppy replies, no goodbye before the "
        "customer is done; the customer never has to repeat themselves or grows frustrated.",
        20, FIVE, "conduct",
    )  # fmt: skip
    accuracy = _cat(
        "accuracy", "Accuracy", "Gives correct information: the customer never has to correct or repeat.",
        2, FOUR, "resolution", check="corrections",
    )  # fmt: skip
    solution = _cat(
        "solution-offered", "Solution offered", "States an outcome or a next step, not only questions.",
        2, THREE, "resolution", check="solution_offered",
    )  # fmt: skip
    resolution = _cat(
        "resolution", "Resolution",
        "The customer's need is met: the request is carried out, not refused; they confirm or thank, nothing "
        "left open.",
        27, FIVE, "resolution", check="resolved",
    )  # fmt: skip
    compliance = _cat(
        "compliance-disclosures", "Compliance disclosures",
        "Says the required disclosures and nothing forbidden (abuse, asking for secrets).",
        10, BINARY, "phrases", forbidden=FORBIDDEN,
    )  # fmt: skip
    compliance = compliance.model_copy(update={"critical": True, "allow_na": False})
    personalization = _cat(
        "personalization", "Personalization", "Addresses the customer by the name they gave.", 5, BINARY,
        "phrases", target="customer_name",
    )  # fmt: skip
    closing = _cat(
        "closing", "Closing", "Checks for anything else and closes politely.", 5, BINARY,
        "phrases", required=CLOSINGS, window="last", turns=2,
    )  # fmt: skip
    efficiency = _cat(
        "efficiency", "Efficiency", "Answers promptly and keeps the handle time reasonable.", 5,
        Scale(kind=ScaleKind.points, max_points=10), "timing",
    )  # fmt: skip
    groups = [
        Group(group_id="opening", name="Opening", categories=[greeting]),
        Group(group_id="communication", name="Communication", categories=[empathy, conduct, personalization]),
        Group(group_id="solution", name="Solution", categories=[accuracy, solution, resolution]),
        Group(group_id="compliance", name="Compliance", categories=[compliance]),
        Group(group_id="closing", name="Closing", categories=[closing, efficiency]),
    ]
    return Scorecard(
        scorecard_id=DEFAULT_SCORECARD_ID, version=1, name="Customer service", groups=groups,
        published_at=published_at,
    )  # fmt: skip
