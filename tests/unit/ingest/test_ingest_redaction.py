import re
from collections import Counter
from datetime import date
from datetime import time as dtime
from decimal import Decimal

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from stdnum import luhn
from stdnum.us import ssn

from qastream_ingest.redaction import (
    RedactionPolicy,
    Redactor,
    pseudonymise,
    tenant_pepper,
)
from qastream_shared.conversation import Conversation

PEPPER = tenant_pepper("test-master-pepper", "tenant-a")
REDACTOR = Redactor(RedactionPolicy(), PEPPER)


def redact(text: str, redactor: Redactor = REDACTOR) -> tuple[str, dict[str, int]]:
    counts: Counter[str] = Counter()
    out = redactor.redact_text(text, counts)
    return out, {str(k): v for k, v in counts.items()}


# --- generated cards and emails never survive ------------------------------------------------------------


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet="0123456789", min_size=12, max_size=18))
    number = body + luhn.calc_check_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


noise = st.text(alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), max_size=40)
digit_heavy_noise = st.text(alphabet="0123456789 -ab.,:$", max_size=40)


def luhn_windows(text: str) -> list[str]:
    """Every 13–19 digit number made of whole digit groups (joined by spaces or dashes) that passes Luhn."""
    found = []
    for run in re.finditer(r"\d+(?:[ -]+\d+)*", text):
        groups = re.findall(r"\d+", run.group())
        for i in range(len(groups)):
            for j in range(i, len(groups)):
                digits = "".join(groups[i : j + 1])
                if 13 <= len(digits) <= 19 and luhn.is_valid(digits):
                    found.append(digits)
    return found


@settings(max_examples=300, deadline=None)
@given(
    before=st.one_of(noise, digit_heavy_noise), card=card_numbers(), after=st.one_of(noise, digit_heavy_noise)
)
def test_no_luhn_valid_card_survives(before: str, card: str, after: str) -> None:
    out, counts = redact(f"{before} {card} {after}")
    assert luhn_windows(out) == []
    assert re.sub(r"\D", "", card) not in re.sub(r"[ -]", "", out)
    assert counts["card"] >= 1


@settings(max_examples=300, deadline=None)
@given(before=noise, email=st.emails(), after=noise)
def test_no_input_email_survives(before: str, email: str, after: str) -> None:
    out, counts = redact(f"{before} {email} {after}")
    assert email not in out
    assert counts["email"] >= 1


@settings(max_examples=300, deadline=None)
@given(
    day=st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)),
    date_format=st.sampled_from(["%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d %B %Y"]),
    clock=st.times(),
    order=st.integers(min_value=0, max_value=10**12 - 1),
    price=st.decimals(min_value=0, max_value=10**7, places=2),
)
def test_dates_times_order_ids_and_prices_are_not_pii(
    day: date, date_format: str, clock: dtime, order: int, price: Decimal
) -> None:
    text = (
        f"On {day.strftime(date_format)} at {clock.strftime('%H:%M')} order {order} cost ${price:,.2f}"
        f" ({price:.2f} EUR, {str(price).replace('.', ',')} €)"
    )
    assert redact(text) == (text, {})


# --- worked examples -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "counts"),
    [
        ("mail me at john.doe+qa@example.co.uk now", "mail me at [EMAIL] now", {"email": 1}),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [PHONE] or [PHONE]", {"phone": 2}),
        ("US 1-800-555-1234, FR 01 23 45 67 89", "US [PHONE], FR [PHONE]", {"phone": 2}),
        ("compact +4915123456789.", "compact [PHONE].", {"phone": 1}),
        ("my number is 5551234567", "my number is [PHONE]", {"phone": 1}),
        ("card 4111 1111 1111 1111 exp 12/25", "card [CARD] exp 12/25", {"card": 1}),
        ("card 5500-0000-0000-0004.", "card [CARD].", {"card": 1}),
        ("qty 2 4111111111111111", "qty 2 [CARD]", {"card": 1}),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [IBAN] thanks", {"iban": 1}),
        ("iban de89370400440532013000 fine", "iban [IBAN] fine", {"iban": 1}),
    ],
)
def test_worked_examples(text: str, expected: str, counts: dict[str, int]) -> None:
    assert redact(text) == (expected, counts)


@pytest.mark.parametrize(
    "text",
    [
        "order 12345",
        "order 12345678 is on its way",
        "at 10:30 or 17:05:12",
        "it costs $1,299.00, or €1.299,00",
        "12345.67 USD",
        "on 2020-05-21, 21.05.2020 10.30 or 05/21/2020",
        "2020-05-21T17:04:12Z",
        "between 1500-2000 a month",
        "a million is 1 000 000 or 1.000.000",
        "room 1204, 3 guests, 2 nights, flight UA 1234",
        "pi is 3.14159265",
        "card 4111 1111 1111 1112 fails Luhn",
        "GB82WEST12345698765433 fails mod-97",
        "reply to @support on twitter",
    ],
)
def test_ordinary_text_is_untouched(text: str) -> None:
    out, counts = redact(text)
    assert (out, counts) == (text, {})
    assert out is text


def test_detectors_can_be_switched_off() -> None:
    redactor = Redactor(RedactionPolicy(emails=False, phones=False), PEPPER)
    assert redact("a@b.example +44 20 7946 0958 4111111111111111", redactor)[0] == (
        "a@b.example +44 20 7946 0958 [CARD]"
    )


def test_token_format() -> None:
    redactor = Redactor(RedactionPolicy(token_format="<redacted:{kind}>"), PEPPER)
    assert redact("x a@b.example", redactor)[0] == "x <redacted:EMAIL>"


# --- tenant patterns -------------------------------------------------------------------------------------


def test_custom_pattern_is_applied_with_its_name() -> None:
    policy = RedactionPolicy(custom=[{"name": "member_id", "pattern": r"M-\d{6}", "ignore_case": True}])
    assert redact("member m-123456 and M-654321", Redactor(policy, PEPPER)) == (
        "member [MEMBER_ID] and [MEMBER_ID]",
        {"member_id": 2},
    )


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ([{"name": "bad", "pattern": "(unclosed"}], "custom pattern 'bad' is not a valid RE2"),
        ([{"name": "backref", "pattern": r"(a)\1"}], "custom pattern 'backref' is not a valid RE2"),
        ([{"name": "lookahead", "pattern": r"a(?=b)"}], "custom pattern 'lookahead' is not a valid RE2"),
        ([{"name": "huge", "pattern": r"a{1000}{1000}"}], "custom pattern 'huge' is not a valid RE2"),
        ([{"name": "empty", "pattern": r"x*"}], "custom pattern 'empty' matches the empty string"),
        ([{"name": "email", "pattern": r"x"}], "'email' is a built-in detector"),
        ([{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}], "must be unique: a"),
        ([{"name": "Bad Name", "pattern": "x"}], "String should match pattern"),
    ],
)
def test_invalid_policy_is_refused_with_a_clear_error(custom: list[dict[str, str]], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        RedactionPolicy(custom=custom)


def test_token_format_needs_one_kind_placeholder() -> None:
    with pytest.raises(ValidationError, match="token_format"):
        RedactionPolicy(token_format="[REDACTED]")


def test_patterns_that_backtrack_catastrophically_elsewhere_run_in_linear_time() -> None:
    # Under a backtracking engine `(a+)+b` takes exponential time on "aaaa…!" (2^50,000 steps: this test
    # would never finish); RE2 does not backtrack. How fast it is, is measured by bench.redaction.
    redactor = Redactor(RedactionPolicy(custom=[{"name": "nested", "pattern": "(a+)+b"}]), PEPPER)
    text = "a" * 50_000 + "!"
    assert redact(text, redactor) == (text, {})
    assert redact(text[:-1] + "b", redactor)[1] == {"nested": 1}


# --- whole conversations ---------------------------------------------------------------------------------


def conversation() -> Conversation:
    return Conversation.model_validate(
        {
            "conversation_id": "c-1",
            "customer_id": "cust-42",
            "agent_ids": ["agent-7"],
            "turns": [
                {
                    "role": "customer",
                    "author": "Ann Lee",
                    "text": "I'm ann.lee@example.com, card 4111111111111111",
                },
                {"role": "agent", "author": "agent-7", "text": "Thanks, I can see order 48213."},
                {"role": "customer", "author": "Ann Lee", "text": "Call me: +1 415-555-0132"},
            ],
            "tags": ["vip", "ann.lee@example.com"],
            "metadata": {"subject": "help ann.lee@example.com", "nested": [{"phone": "+1 415 555 0132"}, 3]},
        }
    )


def test_conversation_is_redacted_everywhere_pii_can_hide() -> None:
    original = conversation()
    result = REDACTOR.redact(original)
    dumped = result.conversation.model_dump_json()
    for secret in (
        "ann.lee@example.com",
        "4111111111111111",
        "415-555-0132",
        "415 555 0132",
        "cust-42",
        "Ann Lee",
    ):
        assert secret not in dumped
    assert result.counts == {"email": 3, "card": 1, "phone": 2}
    turns = result.conversation.turns
    assert [t.text for t in turns] == [
        "I'm [EMAIL], card [CARD]",
        "Thanks, I can see order 48213.",
        "Call me: [PHONE]",
    ]
    assert turns[1] is original.turns[1]  # untouched turns are shared, not copied
    assert turns[1].author == "agent-7"  # agents stay attributable
    assert result.conversation.metadata == {"subject": "help [EMAIL]", "nested": [{"phone": "[PHONE]"}, 3]}
    assert result.conversation.tags == ["vip", "[EMAIL]"]
    assert original.turns[0].text.startswith("I'm ann.lee")  # the input object is not mutated


def test_customer_pseudonyms_are_stable_per_tenant() -> None:
    first = REDACTOR.redact(conversation()).conversation
    again = REDACTOR.redact(conversation()).conversation
    other_tenant = Redactor(RedactionPolicy(), tenant_pepper("test-master-pepper", "tenant-b"))
    elsewhere = other_tenant.redact(conversation()).conversation
    assert first.customer_id == again.customer_id == pseudonymise(PEPPER, "cust-42")
    assert first.customer_id is not None and first.customer_id.startswith("psn_")
    assert first.turns[0].author == first.turns[2].author == pseudonymise(PEPPER, "Ann Lee")
    assert elsewhere.customer_id != first.customer_id


def test_metadata_can_be_left_alone() -> None:
    result = Redactor(RedactionPolicy(redact_metadata=False), PEPPER).redact(conversation())
    assert result.conversation.metadata["subject"] == "help ann.lee@example.com"
    assert result.counts == {"email": 1, "card": 1, "phone": 1}


@pytest.mark.parametrize("pattern", [r"^ref-\d+$", r"\Aref-\d+\z", r"ref-\d+"])
def test_custom_patterns_match_each_string_on_its_own(pattern: str) -> None:
    redactor = Redactor(RedactionPolicy(custom=[{"name": "ref", "pattern": pattern}]), PEPPER)
    original = Conversation.model_validate(
        {
            "conversation_id": "c-2",
            "turns": [{"role": "customer", "text": "hello"}, {"role": "customer", "text": "ref-123"}],
            "metadata": {"ref": "ref-9", "other": "no"},
        }
    )
    result = redactor.redact(original)
    assert [t.text for t in result.conversation.turns] == ["hello", "[REF]"]
    assert result.conversation.metadata == {"ref": "[REF]", "other": "no"}
    assert result.counts == {"ref": 2}


# --- national ids ------------------------------------------------------------------------------------------


@st.composite
def valid_ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    number = f"{area:03d}{draw(st.integers(1, 99)):02d}{draw(st.integers(1, 9999)):04d}"
    assume(ssn.is_valid(number))  # python-stdnum also refuses a few numbers known to be misused
    sep = draw(st.sampled_from(["-", " "]))
    return sep.join((number[:3], number[3:5], number[5:]))


@settings(max_examples=300, deadline=None)
@given(before=noise, number=valid_ssns(), after=noise)
def test_no_valid_ssn_survives_and_it_is_labelled_a_national_id(before: str, number: str, after: str) -> None:
    out, counts = redact(f"{before} {number} {after}")
    assert number not in out
    assert counts.get("national_id") == 1 and "phone" not in counts


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my SSN is 536-90-4399, thanks", "my SSN is [NATIONAL_ID], thanks"),
        ("ssn 536904399", "ssn [NATIONAL_ID]"),
        ("NI number AB 12 34 56 C.", "NI number [NATIONAL_ID]."),
        ("ni: ab123456d", "ni: [NATIONAL_ID]"),
    ],
)
def test_national_ids_are_labelled_as_such(text: str, expected: str) -> None:
    assert redact(text) == (expected, {"national_id": 1})


@pytest.mark.parametrize(
    "text",
    [
        "order 536904399",  # nine bare digits with no SSN nearby
        "DQ 12 34 56 C",  # D and Q are never used in an NI number
        "GB 12 34 56 A",  # a prefix never issued
        "AB 12 34 56 E",  # suffixes run A to D
    ],
)
def test_invalid_national_ids_are_not_national_ids(text: str) -> None:
    out, counts = redact(text)
    assert "national_id" not in counts and out == text


def test_national_ids_can_be_switched_off() -> None:
    redactor = Redactor(RedactionPolicy(national_ids=False), PEPPER)
    assert redact("NI AB 12 34 56 C", redactor) == ("NI AB 12 34 56 C", {})
