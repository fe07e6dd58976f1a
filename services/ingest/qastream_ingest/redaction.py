"""PII redaction, applied to every conversation before it is stored or published.

The original text is never kept: `Redactor.redact` returns a new Conversation with PII replaced by tokens
such as `[EMAIL]`, plus how many of each kind it replaced (for metrics).

Built-in detectors use the stdlib `re` with bounded quantifiers and a validation step (Luhn for cards,
mod-97 for IBANs, python-stdnum for US social security numbers, HMRC's allocation rules for UK National
Insurance numbers, shape rules for phone numbers) so ordinary numbers survive. Tenant patterns are compiled
with RE2, which matches in linear time, so no tenant pattern can backtrack catastrophically.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import re2
from pydantic import ConfigDict, Field, field_validator, model_validator
from stdnum import iban, luhn
from stdnum.us import ssn

from qastream_events.json_input import JsonInput
from qastream_shared.conversation import Conversation, Role, Turn

MAX_CUSTOM_PATTERNS = 50
MAX_PATTERN_CHARS = 500
# Bounds RE2's compiled program, so a pattern like `a{1000}{1000}` is refused instead of eating memory.
_RE2_MAX_MEM = 8 << 20


class PiiKind(StrEnum):
    email = "email"
    phone = "phone"
    card = "card"
    iban = "iban"
    national_id = "national_id"


class PolicyError(ValueError):
    """A tenant redaction policy that cannot be used, with a message naming the pattern."""


def _re2_options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # errors are raised as PolicyError; RE2 would also print them to stderr
    options.max_mem = _RE2_MAX_MEM
    return options


def _compile_custom(name: str, pattern: str, ignore_case: bool) -> Any:
    options = _re2_options()
    options.case_sensitive = not ignore_case
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise PolicyError(
            f"custom pattern {name!r} is not a valid RE2 regular expression: {reason} "
            "(backreferences and lookaround are not supported)"
        ) from None
    for probe in ("", " ", "a", "a b 1 _ -"):
        if any(m.end() == m.start() for m in compiled.finditer(probe)):
            raise PolicyError(f"custom pattern {name!r} matches the empty string")
    return compiled


class CustomPattern(JsonInput):
    """A tenant-defined kind of PII: every match is replaced by the token for `name`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    # No NUL: the policy is stored as JSONB, which cannot hold one.
    pattern: str = Field(min_length=1, max_length=MAX_PATTERN_CHARS, pattern=r"^[^\x00]+$")
    ignore_case: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> CustomPattern:
        if self.name in PiiKind.__members__:
            raise PolicyError(f"custom pattern name {self.name!r} is a built-in detector")
        _compile_custom(self.name, self.pattern, self.ignore_case)
        return self


class RedactionPolicy(JsonInput):
    """A tenant's redaction policy. Validating it compiles the custom patterns, so a bad one fails here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    emails: bool = True
    phones: bool = True
    cards: bool = True
    ibans: bool = True
    national_ids: bool = True
    custom: tuple[CustomPattern, ...] = Field(default=(), max_length=MAX_CUSTOM_PATTERNS)
    # `{kind}` is replaced by the upper-cased kind: "[{kind}]" gives "[EMAIL]", "[MEMBER_ID]".
    # '{kind}' exactly once, no other braces, no backslash: the pattern is the rule, and the schema says it.
    token_format: str = Field(
        default="[{kind}]", max_length=40, pattern=r"^[^{}\\\x00]*\{kind\}[^{}\\\x00]*$"
    )
    redact_metadata: bool = True

    @field_validator("custom")
    @classmethod
    def _unique_names(cls, custom: tuple[CustomPattern, ...]) -> tuple[CustomPattern, ...]:
        names = [c.name for c in custom]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise PolicyError(f"custom pattern names must be unique: {', '.join(dupes)}")
        return custom

    def token(self, kind: str) -> str:
        return self.token_format.replace("{kind}", kind.upper())


# --- built-in detectors ---------------------------------------------------------------------------------

# RFC 5321 caps the local part at 64 and a label at 63 characters; the caps also keep matching linear.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,127}"
    r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)
_HAS_DIGIT = re.compile(r"\d")
# The fewest digits a card (13), SSN (9), NI number (6) or phone (7) holds: fewer in the text, none is there.
_FEWEST_DIGITS = 6
# A run of digit groups joined by single spaces or dashes, long enough to hold a card number.
_DIGIT_RUN = re.compile(r"(?<![\d])\d[\d -]{11,}\d(?![\d])")
_DIGIT_GROUP = re.compile(r"\d+")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b", re.IGNORECASE)
_PHONE = re.compile(
    # Not glued to a word, a price, a decimal, a time or a path.
    r"(?<![\w+$€£¥.,:/-])"
    r"(?:"
    r"\+\d{7,15}"  # international, compact
    r"|(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]\d{2,5}){1,5}"  # grouped
    r"|\(\d{1,5}\)[ .-]?\d{3,8}"  # (030) 1234567
    r"|\d{7,15}"  # bare digits: a phone only when the words before it say so
    r")"
    r"(?![\w:/%]|[.,]\d)"
)
_PHONE_CONTEXT = re.compile(
    r"phone|call|tel\b|mobile|cell|whatsapp|sms|text me|reach me|contact|my number|fax", re.IGNORECASE
)
_PHONE_CONTEXT_CHARS = 30
# A US SSN written 123-45-6789 or 123 45 6789 (one separator throughout), or nine bare digits after "SSN".
_SSN = re.compile(r"(?<![\w+$€£¥.,:/-])(?:\d{3}([- ])\d{2}\1\d{4}|\d{9})(?![\w:/%-]|[.,]\d)")
_SSN_CONTEXT = re.compile(r"\bssn\b|social security|\bsocial\b", re.IGNORECASE)
# A UK National Insurance number: two letters, three pairs of digits, a suffix A–D (spaces optional).
_NINO = re.compile(r"\b([A-Z]{2}) ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b", re.IGNORECASE)
_NINO_NEVER_ISSUED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})


def _is_ssn(text: str, match: re.Match[str]) -> bool:
    if match.group(1) is None:  # bare digits: an SSN only when the words before it say so
        context = text[max(0, match.start() - _PHONE_CONTEXT_CHARS) : match.start()]
        if _SSN_CONTEXT.search(context) is None:
            return False
    return bool(ssn.is_valid(match.group().replace(" ", "")))


def _is_nino(match: re.Match[str]) -> bool:
    """HMRC's allocation rules (python-stdnum has no UK NI number module): neither letter D, F, I, Q, U or V,
    the second not O, and none of the prefixes that are never issued."""
    prefix = match.group(1).upper()
    return not (set(prefix) & set("DFIQUV") or prefix[1] == "O" or prefix in _NINO_NEVER_ISSUED)


def _is_date(groups: list[str]) -> bool:
    """2020-05-21 or 21.05.2020 (optionally followed by a time); two-digit years are too short for a phone."""
    if len(groups) < 3:
        return False
    a, b, c = groups[:3]
    if len(a) == 4 and len(b) <= 2 and len(c) <= 2:
        return 1 <= int(b) <= 12 and 1 <= int(c) <= 31
    if len(a) <= 2 and len(b) <= 2 and len(c) == 4:
        return (int(a) <= 31 and int(b) <= 12) or (int(a) <= 12 and int(b) <= 31)
    return False


def _is_phone(text: str, match: re.Match[str]) -> bool:
    candidate = match.group()
    groups = _DIGIT_GROUP.findall(candidate)
    digits = sum(map(len, groups))
    if not 7 <= digits <= 15:
        return False
    if len(groups) == 1 and candidate[0] != "+":
        context = text[max(0, match.start() - _PHONE_CONTEXT_CHARS) : match.start()]
        return _PHONE_CONTEXT.search(context) is not None
    if candidate[0] == "+" or "(" in candidate:
        return True
    if _is_date(groups):
        return False
    if len(groups) == 2:
        if "." in candidate:  # 12345.67
            return False
        if "-" in candidate and len(groups[0]) == len(groups[1]) and int(groups[0]) < int(groups[1]):
            return False  # a range: 1500-2000
    # 1 000 000 or 1.000.000: thousands separators, not a phone.
    return not (all(len(g) == 3 for g in groups[1:]) and ("." in candidate or len(groups[0]) <= 2))


def _card_spans(run: str) -> list[tuple[int, int]]:
    """Spans inside a digit run that are card numbers: 13–19 digits over whole groups, passing Luhn.

    Every window of whole groups is tried, so a card is found even next to other numbers ("qty 2 4111 ...").
    Overlapping valid windows are merged into one span: redacting only the longest one could leave part of
    another real card behind.
    """
    groups = [(m.start(), m.end()) for m in _DIGIT_GROUP.finditer(run)]
    windows: list[tuple[int, int]] = []  # (first group, last group), in order of first group
    for i in range(len(groups)):
        digits = ""
        for j in range(i, len(groups)):
            digits += run[groups[j][0] : groups[j][1]]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn.is_valid(digits):
                windows.append((i, j))
    merged: list[list[int]] = []
    for i, j in windows:
        if merged and i <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], j)
        else:
            merged.append([i, j])
    return [(groups[i][0], groups[j][1]) for i, j in merged]


def _iban_end(candidate: str) -> int:
    """Length of the longest valid IBAN at the start of `candidate`, or 0.

    The case-insensitive pattern may swallow a following short word ("... 0130 00 fine"), so shorter
    prefixes made of whole groups are tried too.
    """
    ends = [m.end() for m in re.finditer(r"\S+", candidate)]
    for end in reversed(ends):
        if iban.is_valid(candidate[:end]):
            return end
    return 0


@dataclass(frozen=True, slots=True)
class Redaction:
    conversation: Conversation
    counts: dict[str, int]  # kind → number of replacements, only kinds that occurred


def tenant_pepper(master_pepper: str, tenant_id: str) -> bytes:
    """The tenant's pseudonymisation key, derived so nothing per tenant has to be stored."""
    return hmac.new(master_pepper.encode(), b"pseudonym:" + tenant_id.encode(), hashlib.sha256).digest()


def pseudonymise(pepper: bytes, value: str) -> str:
    """A stable pseudonym for an identifier: the same value gives the same pseudonym within a tenant."""
    return "psn_" + hmac.new(pepper, value.encode(), hashlib.sha256).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class _Custom:
    name: str
    token: str
    pattern: Any  # re2 pattern, applied to each string
    # The same pattern in multi-line mode, run once over all of a conversation's strings joined by "\n" to
    # skip the pattern when nothing matches: in multi-line mode ^ and $ match at every string's ends, so the
    # screen finds at least what the per-string runs would. \A and \z would not, so they disable it.
    screen: Any | None


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    """`value` (JSON) with `fn` applied to each string in it. Scalars are passed over without a call: metadata
    such as STAR's holds mostly labels of None, booleans and short strings, and one call each was half the
    cost of redacting it."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {
            k: fn(v) if isinstance(v, str) else _map_strings(v, fn) if isinstance(v, dict | list) else v
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            fn(v) if isinstance(v, str) else _map_strings(v, fn) if isinstance(v, dict | list) else v
            for v in value
        ]
    return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


class Redactor:
    """A tenant's policy compiled once; `redact` is then safe to call for every conversation."""

    def __init__(self, policy: RedactionPolicy, pepper: bytes) -> None:
        self.policy = policy
        self._pepper = pepper
        self._tokens = {kind: policy.token(kind) for kind in PiiKind}
        self._custom = [
            _Custom(
                name=c.name,
                token=policy.token(c.name),
                pattern=_compile_custom(c.name, c.pattern, c.ignore_case),
                screen=None
                if "\\A" in c.pattern or "\\z" in c.pattern
                else _compile_custom(c.name, "(?m)" + c.pattern, c.ignore_case),
            )
            for c in policy.custom
        ]

    def redact(self, conversation: Conversation) -> Redaction:
        counts: Counter[str] = Counter()
        texts = [self._builtin(turn.text, counts) for turn in conversation.turns]
        tags = conversation.tags
        metadata = conversation.metadata
        if self.policy.redact_metadata:
            tags = [self._builtin(tag, counts) for tag in tags]
            metadata = _map_strings(metadata, lambda s: self._builtin(s, counts))
        if self._custom:
            joined = "\n".join([*texts, *tags, *_strings(metadata)])
            active = [c for c in self._custom if c.screen is None or c.screen.search(joined)]
            if active:
                texts = [self._apply_custom(text, active, counts) for text in texts]
                if self.policy.redact_metadata:
                    tags = [self._apply_custom(tag, active, counts) for tag in tags]
                    metadata = _map_strings(metadata, lambda s: self._apply_custom(s, active, counts))

        turns: list[Turn] = []
        for turn, text in zip(conversation.turns, texts, strict=True):
            update: dict[str, Any] = {}
            if text is not turn.text:
                update["text"] = text
            # Customer names and handles are PII; agent, bot and system authors identify staff for QA.
            if turn.author is not None and turn.role is Role.customer:
                update["author"] = pseudonymise(self._pepper, turn.author)
            turns.append(turn.model_copy(update=update) if update else turn)
        update = {"turns": turns, "tags": tags, "metadata": metadata}
        if conversation.customer_id is not None:
            update["customer_id"] = pseudonymise(self._pepper, conversation.customer_id)
        return Redaction(conversation.model_copy(update=update), {str(k): n for k, n in counts.items()})

    def redact_text(self, text: str, counts: Counter[str]) -> str:
        """`text` with PII replaced, adding to `counts`; the same object when nothing was found."""
        return self._apply_custom(self._builtin(text, counts), self._custom, counts)

    def _builtin(self, text: str, counts: Counter[str]) -> str:
        policy = self.policy
        if policy.emails and "@" in text:
            text = self._sub(_EMAIL.subn(self._tokens[PiiKind.email], text), PiiKind.email, counts, text)
        # Every detector below needs digits (an IBAN its check digits), and all but the IBAN at least six:
        # most turns have none or a few (a time, a quantity), so they are screened once here instead of
        # scanned by each pattern. The tokens put in hold no digits, so a screen stays true of the text as
        # the detectors change it.
        if not _HAS_DIGIT.search(text):
            return text
        if policy.ibans:
            text = self._validated(text, _IBAN, PiiKind.iban, counts)
        if len(_HAS_DIGIT.findall(text)) < _FEWEST_DIGITS:  # counted faster than any pattern finds six
            return text
        if policy.cards:
            text = self._cards(text, counts)
        if policy.national_ids:  # before phones: 123-45-6789 has a phone's shape
            text = self._validated(text, _SSN, PiiKind.national_id, counts)
            text = self._validated(text, _NINO, PiiKind.national_id, counts)
        if policy.phones:
            text = self._validated(text, _PHONE, PiiKind.phone, counts)
        return text

    def _apply_custom(self, text: str, custom: list[_Custom], counts: Counter[str]) -> str:
        for c in custom:
            text = self._sub(c.pattern.subn(c.token, text), c.name, counts, text)
        return text

    @staticmethod
    def _sub(result: tuple[str, int], kind: str, counts: Counter[str], original: str) -> str:
        new, n = result
        if not n:
            return original
        counts[kind] += n
        return new

    def _validated(self, text: str, pattern: re.Pattern[str], kind: PiiKind, counts: Counter[str]) -> str:
        pieces: list[str] = []
        last = 0
        for match in pattern.finditer(text):
            if kind is PiiKind.iban:
                end = match.start() + _iban_end(match.group())
                if end == match.start():
                    continue
            elif (pattern is _SSN and _is_ssn(text, match)) or (pattern is _NINO and _is_nino(match)):
                end = match.end()
            elif pattern is _PHONE and _is_phone(text, match):
                end = match.end()
            else:
                continue
            pieces += (text[last : match.start()], self._tokens[kind])
            last = end
            counts[kind] += 1
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)

    def _cards(self, text: str, counts: Counter[str]) -> str:
        pieces: list[str] = []
        last = 0
        for match in _DIGIT_RUN.finditer(text):
            for start, end in _card_spans(match.group()):
                pieces += (text[last : match.start() + start], self._tokens[PiiKind.card])
                last = match.start() + end
                counts[PiiKind.card] += 1
        if not pieces:
            return text
        pieces.append(text[last:])
        return "".join(pieces)
