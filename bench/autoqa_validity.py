"""AutoQA validity on the labelled STAR conversations, and the speed of score_conversation. Prints JSON.

For each label (`user_says_task_done`, `user_says_agent_calm_helpful`) the negatives (label false) are the
positive class of a ROC whose score is 1 − review score: AUC 1.0 means every negative ranks below every
positive. Point-biserial r is between "label is false" and the review score, so a good scorer gives r < 0.
The AUC is also given per half of the corpus (CRC-32 of the conversation id, even or odd): the default card's
weights were tuned on the even half and checked on the odd one, so two halves that agree are the check that
no cue keys on a few conversations. (The cues themselves came from reading conversations of both halves.)
Default scorecard, default settings, no llm. Labels are only read here, to measure.

`pcsat` puts the pCSAT model (services/scoring/qastream_scoring/pcsat, fitted on the even half by
bench.pcsat_fit) next to the review score, per half: AUC for task-not-done and not-calm-helpful (both
scores on the same conversations), Brier score (and the base rate's), and reliability bins with their n,
drawn in docs/pcsat_reliability.png.

    uv run python -m bench.autoqa_validity [path/to/star.jsonl]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import zlib
from pathlib import Path

from scipy.stats import pointbiserialr
from sklearn.metrics import roc_auc_score

from bench import pcsat_fit
from bench.common import TINY_HELP
from qastream_scoring.autoqa import prepare, score_conversation
from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.pcsat import current
from qastream_shared.conversation import Conversation
from qastream_shared.testing import STAR as DATA

LABELS = ("user_says_task_done", "user_says_agent_calm_helpful")


def _auc(negative: list[int], review_score: list[float]) -> float:
    return round(float(roc_auc_score(negative, [1 - s for s in review_score])), 4)


def _mean(xs: list[float]) -> float:
    return round(sum(xs) / max(1, len(xs)), 4)


def main(path: Path, limit: int | None) -> None:
    with path.open() as fh:
        rows = [json.loads(line) for line in itertools.islice(fh, limit)]
    convs = [Conversation.model_validate({k: v for k, v in r.items() if k != "labels"}) for r in rows]
    card = prepare(default_scorecard())
    score_conversation(convs[0], card)  # load VADER and the word list outside the timing
    t0, c0 = time.perf_counter(), time.process_time()
    reviews = [score_conversation(c, card) for c in convs]
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    # A second pass: what a long-running service sees once the per-text caches are warm.
    t1, c1 = time.perf_counter(), time.process_time()
    for c in convs:
        score_conversation(c, card)
    warm_elapsed, warm_cpu = time.perf_counter() - t1, time.process_time() - c1
    scores = [r.result.score for r in reviews]
    out: dict[str, object] = {
        "conversations": len(convs),
        "scored": sum(s is not None for s in scores),
        "not_scored_too_little_content": sum(s is None for s in scores),
        # CPU time is what one core can do; wall time suffers when the machine is shared.
        "cold_pass": {"per_s": round(len(convs) / elapsed), "per_cpu_s": round(len(convs) / cpu)},
        "warm_pass": {"per_s": round(len(convs) / warm_elapsed), "per_cpu_s": round(len(convs) / warm_cpu)},
        "note": "cold pass: the per-text sentiment and cue caches start empty; warm pass: second run",
    }
    for label in LABELS:
        triples = [
            (s, r["labels"][label], zlib.crc32(r["conversation_id"].encode()) % 2)
            for s, r in zip(scores, rows, strict=True)
            if s is not None and r["labels"][label] is not None
        ]
        negative = [0 if lab else 1 for _, lab, _ in triples]
        review_score = [s for s, _, _ in triples]
        r, p = pointbiserialr(negative, review_score)
        halves = {}
        for half, name in ((0, "even"), (1, "odd")):
            pick = [k for k, (_, _, h) in enumerate(triples) if h == half]
            halves[f"auc_{name}_half"] = _auc([negative[k] for k in pick], [review_score[k] for k in pick])
        out[f"{label}_false"] = {
            "n": len(triples),
            "negatives": sum(negative),
            "auc": _auc(negative, review_score),
            **halves,
            "point_biserial_r": round(float(r), 4),
            "p_value": float(f"{p:.3g}"),
            "mean_score_negatives": _mean([s for s, n in zip(review_score, negative, strict=True) if n]),
            "mean_score_positives": _mean([s for s, n in zip(review_score, negative, strict=True) if not n]),
        }
    out["pcsat"] = pcsat_validity(path, limit)
    print(json.dumps(out, indent=2))


def pcsat_validity(path: Path, limit: int | None) -> dict[str, object]:
    corpus = pcsat_fit.load(path, limit)
    model = current()
    figures = pcsat_fit.validity(corpus, pcsat_fit.predictions(corpus, model))
    if limit is None:  # a --tiny run does not redraw the published diagram
        pcsat_fit.plot(figures, pcsat_fit.PNG)
    return {
        "model_version": model.version,
        "judged": len(corpus.ids),
        "reliability_diagram": str(pcsat_fit.PNG.relative_to(pcsat_fit.DOCS.parent)),
        "per_half": figures,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("path", nargs="?", type=Path, default=DATA)
    parser.add_argument("--tiny", action="store_true", help=TINY_HELP)
    args = parser.parse_args()
    main(args.path, 300 if args.tiny else None)
