"""VADER's compound score, and a provable lower bound on it that is far cheaper than VADER itself.

Most turns cannot score below a threshold, and proving so is cheaper than scoring them. `below` first asks a
gate, on the words the conversation view already holds, whether the turn has anything that can score negative
at all (most have not); then `compound_floor`, the bound, cached by text; VADER runs only where neither answers. The bound follows
vaderSentiment 3.3's `polarity_scores` on VADER's own tokens (whitespace split, punctuation stripped off a
token that keeps more than two characters):
- only lexicon tokens score, and a positive one can only turn negative through a negator ("not", any "n't",
  "least", "no") or a dampener ("slightly", "kind of") among its three preceding tokens, or through a special
  idiom ("yeah right"); capitals, intensifiers, "never so" and punctuation only scale a sign they keep;
- so the sum of the token scores is at least −B, where B adds, for every token that may be negative, its
  lexicon magnitude, the 0.733 of capitals, each preceding booster's 0.293 (+0.733 in capitals), and
  ×1.25² where "so"/"this" precede it (VADER's "never so" emphasis); negation's ×0.74 only shrinks it;
- punctuation then pushes a negative sum further down by at most the text's "!"/"?" amplifier, and the
  compound is that sum normalised and rounded to 4 decimals, both monotonic.
Where the bound would need more of VADER than that, it gives up (−1, so VADER runs): an emoji (VADER reads
its description), a special idiom or a multi-word booster, or "but" (VADER's `_but_check` can scale one
token's score several times over).
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass
from functools import lru_cache

from vaderSentiment.vaderSentiment import (
    B_DECR,
    B_INCR,
    BOOSTER_DICT,
    C_INCR,
    NEGATE,
    SPECIAL_CASES,
    SentimentIntensityAnalyzer,
)

from qastream_scoring.autoqa.base import ConversationView

ALPHA = 15  # vaderSentiment's normalize() default
ROUNDING = 1e-4  # the compound is rounded to 4 decimals: the floor stays below whatever it rounds to
_EMPHASIS = 1.25 * 1.25  # "never so good": VADER's ×1.25 at two preceding positions at most
_EMPHASIS_WORDS = frozenset({"so", "this"})
_NEGATORS = frozenset(w.lower() for w in NEGATE) | {"least", "no"}
_BOOSTER = max(abs(B_INCR), abs(B_DECR))
_PHRASES = tuple(f" {p} " for p in (*SPECIAL_CASES, *BOOSTER_DICT) if " " in p)


@lru_cache(maxsize=1)
def analyzer() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


@lru_cache(maxsize=65536)
def compound(text: str) -> float:
    return float(analyzer().polarity_scores(text)["compound"])


_LETTERS = re.compile(r"[a-z]+")


@dataclass(frozen=True, slots=True)
class _Gate:
    """What every lowercased text that may score below 0 holds: a negative lexicon entry, a negator, a dampener,
    a multi-word booster or a special idiom. A text with none of them, and no emoji, scores ≥ 0."""

    # Entries of letters only, and one word of each phrase: found among the text's runs of letters and
    # apostrophes (ConversationView.words), apostrophes stripped (VADER strips the quotes around a token).
    words: frozenset[str]
    # The other entries: found as one of VADER's tokens, looked for only where `symbolic` is found.
    symbols: frozenset[str]
    symbolic: re.Pattern[str]

    def may_be_negative(self, text: str, lower: str, runs: list[str]) -> bool:
        if "n't" in lower or not self.words.isdisjoint(runs):
            return True
        if "'" in lower and not self.words.isdisjoint(w.strip("'") for w in runs if "'" in w):
            return True
        if self.symbolic.search(lower) is None:
            return False
        return not self.symbols.isdisjoint(t.lower() for t in _vader_tokens(text))


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
    literal = sorted((w for w in symbols if not chars.intersection(w)), key=len, reverse=True)
    symbolic = re.compile("|".join([f"[{re.escape(''.join(sorted(chars)))}]", *map(re.escape, literal)]))
    return _Gate(frozenset(words), frozenset(symbols), symbolic)


def _vader_tokens(text: str) -> list[str]:
    out = []
    for token in text.split():
        stripped = token.strip(string.punctuation)
        out.append(stripped if len(stripped) > 2 else token)
    return out


def _amplifier(text: str) -> float:
    """The most punctuation adds to a negative sum's magnitude (vaderSentiment's _punctuation_emphasis)."""
    marks = text.count("?")
    return min(text.count("!"), 4) * 0.292 + (0.0 if marks < 2 else marks * 0.18 if marks <= 3 else 0.96)


# What can turn a positive word after it negative: a negator, any "n't", or a dampener.
_TURNERS = _NEGATORS | {w for w, v in BOOSTER_DICT.items() if v < 0}


@lru_cache(maxsize=131072)
def compound_floor(text: str) -> float:
    """A lower bound on compound(text), without running VADER: 0 when nothing in it can score negative."""
    if not text.isascii():
        emojis = analyzer().emojis
        if any(ch in emojis for ch in text):
            return -1.0
    originals = _vader_tokens(text)
    tokens = [t.lower() for t in originals]
    if "but" in tokens:
        return -1.0
    joined = f" {' '.join(tokens)} "
    if any(phrase in joined for phrase in _PHRASES):
        return -1.0
    lexicon = analyzer().lexicon
    low = 0.0  # a lower bound on the sum of the token scores
    for i, token in enumerate(tokens):
        valence = lexicon.get(token)
        if valence is None or token in BOOSTER_DICT:
            continue  # VADER scores both 0
        if valence > 0 and not any(w in _TURNERS or "n't" in w for w in tokens[max(0, i - 3) : i]):
            low += valence  # capitals, intensifiers and emphasis only raise it
            continue
        magnitude = abs(valence) + (C_INCR if originals[i].isupper() else 0.0)
        for j in range(max(0, i - 3), i):  # a booster's push, at its nearest, in capitals or not
            if tokens[j] in BOOSTER_DICT:
                magnitude += _BOOSTER + (C_INCR if originals[j].isupper() else 0.0)
        if not _EMPHASIS_WORDS.isdisjoint(tokens[max(0, i - 2) : i]):
            magnitude *= _EMPHASIS
        low -= magnitude
    if low >= 0.0:
        return 0.0
    low -= _amplifier(text)
    return max(-1.0, low / math.sqrt(low * low + ALPHA) - ROUNDING)


def below(view: ConversationView, turn: int, threshold: float) -> bool:
    """The turn's compound < threshold (≤ 0), running VADER only where neither the gate (on the words the view
    already holds) nor the floor rules it out."""
    text = view.texts[turn]
    if text.isascii() and not _gate().may_be_negative(text, view.lower[turn], view.words[turn]):
        return False
    return compound_floor(text) < threshold and compound(text) < threshold
