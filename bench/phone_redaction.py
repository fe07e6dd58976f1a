"""Phone redaction: the built-in detector (stdlib regex + shape rules) beside `phonenumbers.PhoneNumberMatcher`
with a default region per tenant, on real numbers and on ordinary text that must survive.

    uv run python -m bench.phone_redaction [--ordinary 3000]

Real numbers: phonenumbers' own example numbers (fixed line, mobile, toll free) of twelve regions, in national,
international and E.164 form inside a sentence, each tried with its own region as the tenant's default, plus
the redaction tests' worked examples. Ordinary text: the redaction tests' ordinary-text fixtures and
`--ordinary` sentences shaped like the property test's (a date, a time, an order id, prices in three
formats). Counts found numbers, false hits on ordinary text per default region, and microseconds per text.
No stack needed. Prints JSON.
"""

from __future__ import annotations

import argparse
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import phonenumbers
from phonenumbers import Leniency, PhoneNumberFormat, PhoneNumberType

from bench.common import TINY_HELP, emit
from qastream_ingest.redaction import RedactionPolicy, Redactor

REGIONS = ("US", "GB", "FR", "DE", "ES", "IT", "NL", "IN", "AU", "BR", "CA", "MX")
WORKED = [  # (text, region, numbers in it)
    ("call +44 20 7946 0958 or (555) 123-4567", "US", 2),
    ("US 1-800-555-1234, FR 01 23 45 67 89", "US", 2),
    ("compact +4915123456789.", "DE", 1),
    ("my number is 5551234567", "US", 1),
    ("Call me: +1 415 555 0132", "US", 1),
]
ORDINARY = [
    "order 12345", "order 12345678 is on its way", "at 10:30 or 17:05:12", "it costs $1,299.00, or €1.299,00",
    "12345.67 USD", "on 2020-05-21, 21.05.2020 10.30 or 05/21/2020", "2020-05-21T17:04:12Z",
    "between 1500-2000 a month", "a million is 1 000 000 or 1.000.000",
    "room 1204, 3 guests, 2 nights, flight UA 1234", "pi is 3.14159265", "card 4111 1111 1111 1112 fails Luhn",
    "GB82WEST12345698765433 fails mod-97", "reply to @support on twitter",
]  # fmt: skip
Detector = Callable[[str, str], int]


def real_numbers() -> list[tuple[str, str, int]]:
    out = list(WORKED)
    for region in REGIONS:
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE, PhoneNumberType.TOLL_FREE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            for fmt in (PhoneNumberFormat.NATIONAL, PhoneNumberFormat.INTERNATIONAL, PhoneNumberFormat.E164):
                text = phonenumbers.format_number(number, fmt)
                out += [(f"you can reach me on {text} after five", region, 1), (f"ok {text}.", region, 1)]
    return out


def ordinary_text(n: int) -> list[str]:
    rng = random.Random(1)
    out = list(ORDINARY)
    for _ in range(n):
        day = date(1900, 1, 1) + timedelta(days=rng.randrange(73_000))
        fmt = rng.choice(["%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d %B %Y"])
        clock = dtime(rng.randrange(24), rng.randrange(60))
        price = Decimal(rng.randrange(10**9)) / 100
        out.append(
            f"On {day.strftime(fmt)} at {clock.strftime('%H:%M')} order {rng.randrange(10**12)} cost"
            f" ${price:,.2f} ({price:.2f} EUR, {str(price).replace('.', ',')} €)"
        )
    return out


def builtin() -> Detector:
    redactor = Redactor(RedactionPolicy(emails=False, cards=False, ibans=False, national_ids=False), b"bench")

    def hits(text: str, region: str) -> int:
        counts: Counter[str] = Counter()
        redactor.redact_text(text, counts)
        return counts["phone"]

    return hits


def matcher(leniency: int) -> Detector:  # a phonenumbers.Leniency value
    def hits(text: str, region: str) -> int:
        return len(list(phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency)))

    return hits


def measure(detect: Detector, real: list[tuple[str, str, int]], ordinary: list[str]) -> dict[str, Any]:
    found = sum(min(detect(text, region), n) for text, region, n in real)
    false_hits = {}
    started = time.perf_counter()
    for region in ("US", "GB", "DE"):
        false_hits[region] = sum(detect(text, region) for text in ordinary)
    per_text = (time.perf_counter() - started) / (3 * len(ordinary))
    return {
        "real_found": found,
        "real_total": sum(n for *_, n in real),
        "false_hits_by_default_region": false_hits,
        "ordinary_texts": len(ordinary),
        "us_per_text": round(per_text * 1e6, 1),
    }


def main(n: int) -> dict[str, Any]:
    real, ordinary = real_numbers(), ordinary_text(n)
    baseline = measure(builtin(), real, ordinary)
    valid = measure(matcher(Leniency.VALID), real, ordinary)
    possible = measure(matcher(Leniency.POSSIBLE), real, ordinary)
    return {
        "builtin_regex": baseline,
        "phonenumbers_valid": valid,
        "phonenumbers_possible": possible,
        "valid_time_over_builtin": round(valid["us_per_text"] / baseline["us_per_text"], 1),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ordinary", type=int, default=3000)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    emit(main(50 if args.tiny else args.ordinary))
