"""VADER's compound score, exactly as vaderSentiment 3.3 computes it at a fraction of its cost, and a gate that
proves most turns cannot score below 0 without scoring them.

`compound(text)` is vaderSentiment's `polarity_scores(text)["compound"]`, float for float. The reference spends
most of its time on work the compound does not need: it copies the text character by character looking for
emoji, lowercases the whole token list again for each rule it checks around each lexicon word, and computes
pos/neu/neg. Here each of VADER's tokens (whitespace split, punctuation stripped off a token that keeps more
than two characters) is lowercased once, and only the tokens in the lexicon that are not boosters run VADER's
rules, in VADER's order and with its arithmetic: every other token scores 0 whatever surrounds it, and adding
0 to the sum changes nothing. "but"'s rescaling and the punctuation amplifier are vaderSentiment's own
functions on the whole token list; a text with an emoji, which VADER replaces by its description, is scored
by vaderSentiment itself.

`below(view, turn, t)` (t ≤ 0) first asks a gate, on the words the conversation view already holds, whether
the turn holds anything that can score negative at all: a negative lexicon entry, a negator ("not", any
"n't", "least", "no"), a dampener, or a word of a multi-word booster or special idiom. Most turns hold none
and so score ≥ 0; the others are scored, once per text.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from functools import lru_cache

from vaderSentiment.vaderSentiment import (
    BOOSTER_DICT,
    C_INCR,
    N_SCALAR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
    normalize,
)

from qastream_scoring.autoqa.base import ConversationView

_NEGATE = frozenset(NEGATE)
_NEGATORS = frozenset(w.lower() for w in NEGATE) | {"least", "no"}


@lru_cache(maxsize=1)
def analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def reference(text: str) -> float:
    """vaderSentiment's own compound: what `compound` must equal."""
    return float(analyzer().polarity_scores(text)["compound"])


@lru_cache(maxsize=1)
def _scored() -> frozenset[str]:
    """The tokens that can score: lexicon entries, boosters excepted (VADER scores a booster 0)."""
    return frozenset(analyzer().lexicon).difference(BOOSTER_DICT)


@lru_cache(maxsize=65536)
def compound(text: str) -> float:
    if not text.isascii():
        emojis = analyzer().emojis
        if any(ch in emojis for ch in text):
            return reference(text)
    tokens = text.split()
    lows = []
    for i, token in enumerate(tokens):
        stripped = token.strip(string.punctuation)
        if len(stripped) > 2:
            tokens[i] = token = stripped
        lows.append(token.lower())
    scored = _scored()
    hits = [i for i, low in enumerate(lows) if low in scored]
    if not hits:
        return 0.0
    sentiments: list[float] = [0] * len(tokens)
    cap_diff: list[bool] = []  # allcap_differential, computed the first time a capitalised token asks
    for i in hits:
        if lows[i] == "kind" and i + 1 < len(lows) and lows[i + 1] == "of":
            continue
        sentiments[i] = _valence(tokens, lows, i, cap_diff)
    if "but" in lows:
        sentiments = SentimentIntensityAnalyzer._but_check(tokens, sentiments)
    total = float(sum(sentiments))
    amplifier = analyzer()._punctuation_emphasis(text)
    if total > 0:
        total += amplifier
    elif total < 0:
        total -= amplifier
    return round(normalize(total), 4)


def _valence(tokens: list[str], lows: list[str], i: int, cap_diff: list[bool]) -> float:
    """vaderSentiment's sentiment_valence for the lexicon token at i, on tokens lowercased once."""
    lexicon = analyzer().lexicon
    low = lows[i]
    valence = lexicon[low]
    if low == "no" and i != len(lows) - 1 and lows[i + 1] in lexicon:
        valence = 0.0
    if (
        (i > 0 and lows[i - 1] == "no")
        or (i > 1 and lows[i - 2] == "no")
        or (i > 2 and lows[i - 3] == "no" and lows[i - 1] in ("or", "nor"))
    ):
        valence = lexicon[low] * N_SCALAR
    if tokens[i].isupper() and _is_cap_diff(tokens, cap_diff):
        valence = valence + C_INCR if valence > 0 else valence - C_INCR
    for start_i in range(3):
        before = i - (start_i + 1)
        if before < 0 or lows[before] in lexicon:
            continue
        # scalar_inc_dec
        scalar = 0.0
        if lows[before] in BOOSTER_DICT:
            scalar = BOOSTER_DICT[lows[before]]
            if valence < 0:
                scalar *= -1
            if tokens[before].isupper() and _is_cap_diff(tokens, cap_diff):
                scalar = scalar + C_INCR if valence > 0 else scalar - C_INCR
        if start_i == 1 and scalar != 0:
            scalar = scalar * 0.95
        if start_i == 2 and scalar != 0:
            scalar = scalar * 0.9
        valence = valence + scalar
        valence = _negation_check(valence, lows, start_i, i)
        if start_i == 2:
            valence = _special_idioms_check(valence, lows, i)
    # _least_check
    if i > 1 and lows[i - 1] not in lexicon and lows[i - 1] == "least":
        if lows[i - 2] != "at" and lows[i - 2] != "very":
            valence = valence * N_SCALAR
    elif i > 0 and lows[i - 1] not in lexicon and lows[i - 1] == "least":
        valence = valence * N_SCALAR
    return valence


def _is_cap_diff(tokens: list[str], memo: list[bool]) -> bool:
    """allcap_differential: some but not all tokens are in capitals."""
    if not memo:
        capitals = sum(1 for t in tokens if t.isupper())
        memo.append(0 < len(tokens) - capitals < len(tokens))
    return memo[0]


def _negated(low: str) -> bool:
    return low in _NEGATE or "n't" in low


def _negation_check(valence: float, lows: list[str], start_i: int, i: int) -> float:
    if start_i == 0:
        if _negated(lows[i - 1]):
            valence = valence * N_SCALAR
    elif start_i == 1:
        if lows[i - 2] == "never" and (lows[i - 1] == "so" or lows[i - 1] == "this"):
            valence = valence * 1.25
        elif lows[i - 2] == "without" and lows[i - 1] == "doubt":
            pass
        elif _negated(lows[i - 2]):
            valence = valence * N_SCALAR
    elif (lows[i - 3] == "never" and (lows[i - 2] == "so" or lows[i - 2] == "this")) or (
        lows[i - 1] == "so" or lows[i - 1] == "this"
    ):
        valence = valence * 1.25
    elif lows[i - 3] == "without" and (lows[i - 2] == "doubt" or lows[i - 1] == "doubt"):
        pass
    elif _negated(lows[i - 3]):
        valence = valence * N_SCALAR
    return valence


def _special_idioms_check(valence: float, lows: list[str], i: int) -> float:
    zero, one, two, three = lows[i], lows[i - 1], lows[i - 2], lows[i - 3]
    for seq in (
        f"{one} {zero}",
        f"{two} {one} {zero}",
        f"{two} {one}",
        f"{three} {two} {one}",
        f"{three} {two}",
    ):
        if seq in SPECIAL_CASES:
            valence = SPECIAL_CASES[seq]
            break
    if len(lows) - 1 > i and (seq := f"{zero} {lows[i + 1]}") in SPECIAL_CASES:
        valence = SPECIAL_CASES[seq]
    if len(lows) - 1 > i + 1 and (seq := f"{zero} {lows[i + 1]} {lows[i + 2]}") in SPECIAL_CASES:
        valence = SPECIAL_CASES[seq]
    for n_gram in (f"{three} {two} {one}", f"{three} {two}", f"{two} {one}"):
        if n_gram in BOOSTER_DICT:
            valence = valence + BOOSTER_DICT[n_gram]
    return valence


_LETTERS = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class _Gate:
    """What every lowercased text that may score below 0 holds: a negative lexicon entry, a negator, a dampener,
    a multi-word booster or a special idiom. A text with none of them, and no emoji, scores ≥ 0."""

    # Entries of letters only, one word of each phrase, and the longest word of an entry of letters joined by
    # dots ("o.o"): found among the text's runs of letters and apostrophes (ConversationView.words),
    # apostrophes stripped (VADER strips the quotes around a token).
    words: frozenset[str]
    # The other entries: found as one of VADER's tokens, looked for only where a text holds one of their rarer
    # marks ("(", ":", "<"...), or one of those holding none of them ("86", "h8") where it holds a digit. One
    # alternation of both took longer than the rest of the gate: the engine tries every branch at each letter.
    symbols: frozenset[str]
    marks: re.Pattern[str]
    numbered: re.Pattern[str] | None
    digit: re.Pattern[str] | None  # None: some entry of `numbered` holds no digit, so it is always looked for

    def may_be_negative(self, text: str, lower: str, runs: tuple[str, ...]) -> bool:
        if "n't" in lower or not self.words.isdisjoint(runs):
            return True
        if "'" in lower and not self.words.isdisjoint(w.strip("'") for w in runs if "'" in w):
            return True
        if self.marks.search(lower) is None and (
            self.numbered is None
            or (self.digit is not None and self.digit.search(lower) is None)
            or self.numbered.search(lower) is None
        ):
            return False
        return not self.symbols.isdisjoint(t.lower() for t in _vader_tokens(text))


_DOTTED = re.compile(r"[a-z]+(?:\.[a-z]+)+")


@lru_cache(maxsize=1)
def _gate() -> _Gate:
    risky = {w for w, v in analyzer().lexicon.items() if v < 0} | _NEGATORS
    risky |= {w for w, v in BOOSTER_DICT.items() if v < 0}
    # VADER never finds an entry with a space among its tokens; a phrase it finds is a run of its words.
    phrases = [p for p in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in p]
    words = {w for w in risky if _LETTERS.fullmatch(w)} | {max(p.split(" "), key=len) for p in phrases}
    symbols = {w for w in risky if " " not in w and "n't" not in w and not _LETTERS.fullmatch(w)}
    plain = "'.,!?"  # too common in text to look for alone
    chars = {c for w in symbols for c in w if not c.isalnum() and c not in plain}
    unmarked = [w for w in symbols if not chars.intersection(w)]
    # A token "o.o" is among the runs as "o" (a lowercased token never equals "O.o": nothing to look for).
    dotted = [w for w in unmarked if _DOTTED.fullmatch(w.lower())]
    words |= {max(_LETTERS.findall(w), key=len) for w in dotted if w == w.lower()}
    literal = sorted((w for w in unmarked if w not in dotted), key=len, reverse=True)
    return _Gate(
        frozenset(words),
        frozenset(symbols),
        re.compile(f"[{re.escape(''.join(sorted(chars)))}]"),
        re.compile("|".join(map(re.escape, literal))) if literal else None,
        re.compile("[0-9]") if all(any(c.isdigit() for c in w) for w in literal) else None,
    )


def _vader_tokens(text: str) -> list[str]:
    out = []
    for token in text.split():
        stripped = token.strip(string.punctuation)
        out.append(stripped if len(stripped) > 2 else token)
    return out


# Each text's verdict: its compound where the gate cannot rule out a negative one, else None (≥ 0). Keyed by
# the text alone (the gate's lowercased text and words are functions of it), so a repeated text, an agent macro
# above all, costs one lookup; filled from the view's own lowercased text and words. Emptied when full.
_VERDICTS: dict[str, float | None] = {}
_VERDICTS_MAX = 65536
_UNSEEN = float("nan")  # no verdict yet: a sentinel no verdict is (compared by identity)


def below(view: ConversationView, turn: int, threshold: float) -> bool:
    """The turn's compound < threshold (≤ 0), scoring it only where the gate (on the words the view already
    holds) cannot rule it out."""
    text = view.texts[turn]
    score = _VERDICTS.get(text, _UNSEEN)
    if score is _UNSEEN:
        if len(_VERDICTS) >= _VERDICTS_MAX:
            _VERDICTS.clear()
        may = not text.isascii() or _gate().may_be_negative(text, view.lower[turn], view.words[turn])
        score = _VERDICTS[text] = compound(text) if may else None
    return score is not None and score < threshold


def clear_verdicts() -> None:
    """Forgets every text's verdict (bench.scoring starts each in-process pass cold, as a new process)."""
    _VERDICTS.clear()
