"""pCSAT candidates judged out of fold on the fitting (even) half only: the evidence behind issue 17's calm target.

    uv run python -m bench.pcsat_candidates [--data path/to/star.jsonl] [--seeds 3] [--tiny]

Prints JSON. The held-out (odd) half is dropped right after loading: nothing here reads its labels. Each
candidate is run through bench.pcsat_fit's rule: a task-not-done head and a not-calm-helpful head (L2
logistic, the fit's strength), out of fold (5 folds; fold seed 0 is the fit's, the others re-hash the id),
combined as task + w·calm with the largest w whose task-not-done AUC stays at the 0.82 target. Reported per
candidate, averaged over the fold seeds: each head's AUC on its own question, w, and the combined risk's
AUC on both questions (the figure the calm target is about).

Candidates: the nine signals as 1.2.0 fits them; the calm head on fewer of them; the nine plus one
structural signal of how the customer reacts to the agent, or of the agent repeating itself (none reads a
word list of a domain, an id or a template name; `agent_unsure` reads generic phrases), or an interaction;
two other model forms (noisy-or of the heads; a gradient-boosted calm head). `reasked` also gets a
diagnosis: which turns it counts (the STAR template names, read here only to say what the signal is).
"""

from __future__ import annotations

import argparse
import itertools
import re
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from bench import pcsat_fit
from bench.common import TINY_HELP, emit
from qastream_scoring.autoqa import vader
from qastream_scoring.autoqa.base import ConversationView
from qastream_scoring.autoqa.conduct import near_repeats
from qastream_scoring.pcsat.signals import SIGNALS
from qastream_shared.testing import STAR

FOLDS = pcsat_fit.FOLDS
WEIGHTS = [round(0.1 * k, 1) for k in range(81)]
CALM_FOUR = ("mood", "resolved", "conduct", "agent_tone")
UNSURE = re.compile(
    r"\b(?:not sure|don'?t know|do not know|no idea|don'?t (?:quite )?understand|do not understand|"
    r"can'?t help|cannot help|unable to help|only able to)\b"
)
REASK_SIMILARITY = 0.4


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


def _agent_questions(v: ConversationView) -> list[int]:
    return [i for i in v.agent if "?" in v.texts[i]]


def structural(v: ConversationView) -> dict[str, float]:
    """Cheap signals from turns, roles and what the scorers hold per turn (token sets, VADER's floor)."""
    sets, words, cu, ag = v.token_sets, v.words, v.customer, v.agent
    replies = [i for i in cu if i > ag[0]] or cu[-1:]
    after_answer = [i for i in cu if i - 1 in v.agent_set and "?" not in v.texts[i - 1]]
    negative = [i for i in replies if vader.below(v, i, -0.3)]
    mean_words = [float(np.mean([len(words[i]) for i in turns])) for turns in (cu, ag)]
    return {
        "customer_repeat": max((_jaccard(sets[a], sets[b]) for a, b in itertools.pairwise(cu)), default=0.0),
        "agent_repeat": max((_jaccard(sets[a], sets[b]) for a, b in itertools.pairwise(ag)), default=0.0),
        "customer_asks_after_answer": (
            sum("?" in v.texts[i] for i in after_answer) / len(after_answer) if after_answer else 0.0
        ),
        "customer_questions": sum("?" in v.texts[i] for i in replies) / len(replies),
        "words_customer_over_agent": float(np.log1p(mean_words[0]) - np.log1p(mean_words[1])),
        "customer_negative_turns": float(len(negative)),
        "customer_ends_negative": float(vader.below(v, cu[-1], -0.3)),
        "customer_short_replies": sum(len(words[i]) <= 2 for i in replies) / len(replies),
        "agent_unsure": float(sum(UNSURE.search(v.lower[i]) is not None for i in ag)),
        "reasked": float(
            min(len(near_repeats(v, _agent_questions(v), REASK_SIMILARITY, previous_only=False).turns), 3)
        ),
    }


class Fitting:
    """The fitting half's signals (standardised on it, missing at the centre) and labels."""

    def __init__(self, c: pcsat_fit.Corpus, seeds: int) -> None:
        keep = c.half == pcsat_fit.FIT
        self.ids = [i for i, k in zip(c.ids, keep, strict=True) if k]
        self.views = [v for v, k in zip(c.views, keep, strict=True) if k]
        extra = [structural(v) for v in self.views]
        self.columns: dict[str, np.ndarray] = {s: c.x[keep, j] for j, s in enumerate(SIGNALS)}
        self.columns |= {name: np.array([e[name] for e in extra]) for name in extra[0]}
        self.not_done, self.not_calm = c.not_done[keep], c.not_calm[keep]
        self.folds = [
            np.array([(zlib.crc32(i.encode()) >> 1) % FOLDS for i in self.ids])
            if s == 0
            else np.array([zlib.crc32(f"{s}:{i}".encode()) % FOLDS for i in self.ids])
            for s in range(seeds)
        ]

    def z(self, name: str) -> np.ndarray:
        if "*" in name:
            a, b = name.split("*")
            return self.z(a) * self.z(b)
        x = self.columns[name]
        scale = float(np.nanstd(x)) or 1.0
        return np.nan_to_num((x - np.nanmean(x)) / scale, nan=0.0)

    def matrix(self, names: Sequence[str]) -> np.ndarray:
        return np.column_stack([self.z(n) for n in names])


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    m = y >= 0
    return float(roc_auc_score(y[m], score[m]))


def _oof(
    x: np.ndarray, y: np.ndarray, fold: np.ndarray, model: Callable[[], Any], proba: bool = False
) -> np.ndarray:
    out = np.zeros(len(y))
    for k in range(FOLDS):
        train, test = (fold != k) & (y >= 0), fold == k
        fitted = model().fit(x[train], y[train])
        out[test] = fitted.predict_proba(x[test])[:, 1] if proba else fitted.decision_function(x[test])
    return out


def _logistic() -> LogisticRegression:
    return LogisticRegression(C=pcsat_fit.HEAD_C, max_iter=2000)


def _boosted() -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(
        max_depth=2,
        learning_rate=0.05,
        max_iter=100,
        min_samples_leaf=40,
        l2_regularization=1.0,
        random_state=0,
    )


def risks(
    f: Fitting, task: Sequence[str], calm: Sequence[str], form: str = "sum"
) -> list[tuple[np.ndarray, float, float, float]]:
    """Per fold seed: the combined out-of-fold risk at the weight bench.pcsat_fit's rule picks, that weight,
    and each head's AUC on its own question."""
    out = []
    for fold in f.folds:
        a = _oof(f.matrix(task), f.not_done, fold, _logistic)
        if form == "boosted":
            p = np.clip(_oof(f.matrix(calm), f.not_calm, fold, _boosted, proba=True), 1e-6, 1 - 1e-6)
            b = np.log(p / (1 - p))
        else:
            b = _oof(f.matrix(calm), f.not_calm, fold, _logistic)

        def combine(w: float, a: np.ndarray = a, b: np.ndarray = b) -> np.ndarray:
            if form == "noisy_or":  # P(either negative) from the two heads' probabilities
                return 1 - (1 + np.exp(a)) ** -1 * (1 + np.exp(b)) ** -w
            return a + w * b

        w = max(
            (w for w in WEIGHTS if _auc(f.not_done, combine(w)) >= pcsat_fit.TARGET_NOT_DONE), default=0.0
        )
        out.append((combine(w), w, _auc(f.not_done, a), _auc(f.not_calm, b)))
    return out


def judge(f: Fitting, task: Sequence[str], calm: Sequence[str], form: str = "sum") -> dict[str, Any]:
    found = risks(f, task, calm, form)

    def mean(values: Sequence[float], digits: int = 4) -> float:
        return round(float(np.mean(values)), digits)

    return {
        "task_head_auc": mean([r[2] for r in found]),
        "calm_head_auc": mean([r[3] for r in found]),
        "weight": mean([r[1] for r in found], 2),
        "auc_task_not_done": mean([_auc(f.not_done, r[0]) for r in found]),
        "auc_not_calm_helpful": mean([_auc(f.not_calm, r[0]) for r in found]),
    }


def paired_difference(f: Fitting, base: list[np.ndarray], other: list[np.ndarray]) -> dict[str, Any]:
    """Calm AUC of `other` minus `base`, mean over fold seeds, with the 95% interval model.json's differences
    have (pcsat_fit.interval95: BCa, resampled in pairs over conversations)."""
    m = f.not_calm >= 0
    y, k = f.not_calm[m].astype(float), len(base)
    scores = [s[m] for s in (*base, *other)]

    def statistic(y: np.ndarray, *s: np.ndarray, axis: int = -1) -> np.ndarray:
        pairs = zip(s[:k], s[k:], strict=True)
        return np.mean(
            [pcsat_fit.rank_auc(y, o, axis) - pcsat_fit.rank_auc(y, b, axis) for b, o in pairs], axis=0
        )

    return {
        "difference": round(float(statistic(y, *scores)), 4),
        "ci95": pcsat_fit.interval95((y, *scores), statistic),
    }


def diagnose_reasked(f: Fitting, path: Path) -> dict[str, Any]:
    """What `reasked` counts on the fitting half: template-sent turns, which ones, and the calm answers by its value."""
    actions: dict[str, list[str | None]] = {}
    with path.open("rb") as fh:
        for line in fh:
            row = orjson.loads(line)
            actions[row["conversation_id"]] = row["labels"]["turn_actions"]
    hits = templated = 0
    named: Counter[str] = Counter()
    for cid, v in zip(f.ids, f.views, strict=True):
        for turn in near_repeats(v, _agent_questions(v), REASK_SIMILARITY, previous_only=False).turns:
            hits += 1
            name = actions[cid][turn]
            templated += name is not None
            named[name or "(free text)"] += 1
    value, asked = f.columns["reasked"], f.not_calm >= 0
    return {
        "turns_counted": hits,
        "template_sent_share": round(templated / hits, 3) if hits else None,
        "top_templates": dict(named.most_common(5)),
        "calm_negative_rate_by_value": {
            str(k): round(float(f.not_calm[m].mean()), 4) if (m := asked & (value == k)).any() else None
            for k in range(4)
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=STAR)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args(argv)
    # Tiny: enough conversations that every training fold still holds calm negatives (about 18 in all).
    f = Fitting(pcsat_fit.load(args.data, 1200 if args.tiny else None), 1 if args.tiny else args.seeds)
    nine = list(SIGNALS)
    out: dict[str, Any] = {
        "fitting_half": {
            "conversations": len(f.ids),
            "negatives_task_not_done": int((f.not_done == 1).sum()),
            "negatives_not_calm_helpful": int((f.not_calm == 1).sum()),
            "fold_seeds": len(f.folds),
        },
        "candidates": {},
    }
    candidates: dict[str, tuple[list[str], list[str], str]] = {
        "1.2.0: the nine in both heads": (nine, nine, "sum"),
        "calm head on mood, resolved, conduct, tone": (nine, list(CALM_FOUR), "sum"),
        "calm head on mood alone": (nine, ["mood"], "sum"),
        "noisy-or of the heads": (nine, nine, "noisy_or"),
        "boosted calm head (depth 2)": (nine, nine, "boosted"),
    }
    for extra in [*structural(f.views[0]), "mood*outcome", "mood*resolved", "conduct*mood"]:
        candidates[f"+ {extra}"] = ([*nine, extra], [*nine, extra], "sum")
    candidates["+ reasked, calm head on the four + reasked"] = (
        [*nine, "reasked"],
        [*CALM_FOUR, "reasked"],
        "sum",
    )
    for name, (task, calm, form) in candidates.items():
        out["candidates"][name] = judge(f, task, calm, form)
    base = [r[0] for r in risks(f, nine, nine)]
    four = [r[0] for r in risks(f, nine, list(CALM_FOUR))]
    out["calm_difference_four_vs_1.2.0"] = paired_difference(f, base, four)
    out["reasked"] = diagnose_reasked(f, args.data)
    emit(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
