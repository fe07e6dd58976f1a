"""Fit the pCSAT model on the even half of the labelled STAR conversations and write its versioned data.

    uv run python -m bench.pcsat_fit [--data path/to/star.jsonl] [--check]

Writes services/scoring/qastream_scoring/pcsat/model.json (coefficients, calibration, validity figures);
bench.autoqa_validity draws docs/pcsat_reliability.png from the same figures. Deterministic: the same data gives the same file byte for byte; `--check` fails
(exit 1) when the stored model differs from a refit, e.g. after a scorer changed its cues.

The discipline is the scorecard weights' (bench/autoqa_validity.py): CRC-32 of the conversation id, even
half fits, odd half checks. The id only splits; no feature reads it, a template name or a domain word.
- Two logistic heads on the standardised signals, one per question customers answered: "task not done"
  (user_says_task_done false) and "not calm and helpful" (user_says_agent_calm_helpful false).
- The risk score is head_not_done + w·head_not_calm_helpful, one linear model (a plain fit to "either
  answer negative" lets the frequent task answers drown the calm one). w is chosen on the fitting half, from
  out-of-fold head scores (5 folds): the largest weight at which the task-not-done AUC still meets its
  target (TARGET_NOT_DONE), so the calm question gets all the weight that target leaves. The calm target is
  out of reach of these signals (the calm head alone scores about 0.72 out of fold), so the rule secures
  the reachable target rather than splitting the shortfall between both.
- Isotonic calibration, fitted on the out-of-fold risk scores of the fitting half, against "dissatisfied":
  either answer negative (among conversations where at least one was asked). Not Platt: the risk is mostly
  the task head, and where no task question was asked only the calm answer can make a customer
  dissatisfied, so the observed rate flattens at the top of the risk range where a sigmoid keeps climbing
  (Platt put the held-out 0.5–0.6 bin 0.2 above what was observed).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy.stats import bootstrap, rankdata
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, roc_auc_score

from qastream_scoring.autoqa import prepare, score_conversation
from qastream_scoring.autoqa.base import ConversationView
from qastream_scoring.default_scorecard import default_scorecard
from qastream_scoring.pcsat.model import MODEL_PATH, PcsatModel
from qastream_scoring.pcsat.signals import SIGNALS, scorer_versions, signals
from qastream_shared.conversation import Conversation
from qastream_shared.testing import STAR

MODEL_VERSION = "1.2.0"
DOCS = Path(__file__).resolve().parents[1] / "docs"
PNG = DOCS / "pcsat_reliability.png"
HEAD_C = 0.05  # L2 strength: the calm-helpful head learns from about 70 negatives
FOLDS = 5
WEIGHTS = [round(0.1 * k, 1) for k in range(51)]
CALIBRATION_TAIL = 1.0  # percent of the fitting half pooled at each end of the calibration curve
TARGET_NOT_DONE = 0.82  # issue 17's held-out target for task-not-done
BINS = 10
RESAMPLES = 2000  # bootstrap resamples of each interval
INTERVAL_SEED = 17  # the intervals are part of model.json, which a refit must reproduce byte for byte
FIT, CHECK = 0, 1
HALF_NAMES = {FIT: "even (fitted)", CHECK: "odd (not fitted)"}
NOT_DONE, NOT_CALM = "user_says_task_done", "user_says_agent_calm_helpful"


@dataclass
class Corpus:
    """The labelled conversations pCSAT can judge (an agent and a customer turn), as arrays."""

    ids: list[str]
    views: list[ConversationView]
    x: np.ndarray  # signals, NaN where not measurable
    half: np.ndarray
    not_done: np.ndarray  # 1 negative answer, 0 positive, -1 not asked
    not_calm: np.ndarray
    review_score: np.ndarray  # the default scorecard's review score, NaN when not scored


def _negative(label: bool | None) -> int:
    return -1 if label is None else int(label is False)


def load(path: Path, limit: int | None = None) -> Corpus:
    with path.open("rb") as fh:
        rows = [orjson.loads(line) for line in itertools.islice(fh, limit)]
    card = prepare(default_scorecard())
    ids, views, xs, nd, nc, review = [], [], [], [], [], []
    for row in rows:
        conv = Conversation.model_validate({k: v for k, v in row.items() if k != "labels"})
        view = ConversationView(conv)
        if not view.customer or not view.agent:
            continue
        found = signals(view)
        ids.append(conv.conversation_id)
        views.append(view)
        xs.append([np.nan if found[s].value is None else found[s].value for s in SIGNALS])
        nd.append(_negative(row["labels"][NOT_DONE]))
        nc.append(_negative(row["labels"][NOT_CALM]))
        score = score_conversation(conv, card).result.score
        review.append(np.nan if score is None else score)
    return Corpus(
        ids=ids,
        views=views,
        x=np.array(xs, dtype=float),
        half=np.array([zlib.crc32(i.encode()) % 2 for i in ids]),
        not_done=np.array(nd),
        not_calm=np.array(nc),
        review_score=np.array(review),
    )


def dissatisfied(c: Corpus) -> np.ndarray:
    """1 when either answer is negative, 0 when every answer given is positive, -1 when neither was asked."""
    return np.where(
        (c.not_done == 1) | (c.not_calm == 1), 1, np.where((c.not_done == 0) | (c.not_calm == 0), 0, -1)
    )


def questions(c: Corpus) -> dict[str, np.ndarray]:
    """The two survey questions by the names the validity figures use: 1 negative, 0 positive, -1 not asked."""
    return {"task_not_done": c.not_done, "not_calm_helpful": c.not_calm}


def auc(y: np.ndarray, score: np.ndarray, pick: np.ndarray) -> float:
    m = pick & (y >= 0) & ~np.isnan(score)
    return float(roc_auc_score(y[m], score[m]))


def _head(z: np.ndarray, y: np.ndarray, rows: np.ndarray) -> LogisticRegression:
    m = rows & (y >= 0)
    return LogisticRegression(C=HEAD_C, max_iter=1000).fit(z[m], y[m])


def fit(c: Corpus) -> dict[str, Any]:
    fitting = c.half == FIT
    center = np.nanmean(c.x[fitting], axis=0)
    scale = np.nanstd(c.x[fitting], axis=0)
    scale[scale == 0] = 1.0
    z = np.nan_to_num((c.x - center) / scale, nan=0.0)
    # Out-of-fold head scores on the fitting half: what w and the calibration are chosen on.
    fold = np.array([(zlib.crc32(i.encode()) >> 1) % FOLDS for i in c.ids])
    oof = np.zeros((len(c.ids), 2))
    for k in range(FOLDS):
        train, test = fitting & (fold != k), fitting & (fold == k)
        for j, y in enumerate((c.not_done, c.not_calm)):
            oof[test, j] = _head(z, y, train).decision_function(z[test])

    def fitting_aucs(w: float) -> tuple[float, float]:
        risk = oof[:, 0] + w * oof[:, 1]
        return auc(c.not_done, risk, fitting), auc(c.not_calm, risk, fitting)

    weight = max((w for w in WEIGHTS if fitting_aucs(w)[0] >= TARGET_NOT_DONE), default=0.0)
    heads = [_head(z, y, fitting) for y in (c.not_done, c.not_calm)]
    coefficients = heads[0].coef_[0] + weight * heads[1].coef_[0]
    intercept = float(heads[0].intercept_[0] + weight * heads[1].intercept_[0])
    target = dissatisfied(c)
    m = fitting & (target >= 0)
    risk = oof[m, 0] + weight * oof[m, 1]
    # The top and bottom percent pooled: otherwise the curve's last step rests on the few highest risks
    # (three conversations gave p = 1.0).
    ends = np.percentile(risk, [CALIBRATION_TAIL, 100 - CALIBRATION_TAIL])
    curve = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        np.clip(risk, *ends), target[m]
    )

    def r(x: float) -> float:
        return round(float(x), 6)

    return {
        "version": MODEL_VERSION,
        "fitted_on": "STAR (../shared/data), even half by CRC-32 of the conversation id; odd half held out",
        "target": "dissatisfied: the customer said the task was not done or the agent was not calm and helpful",
        "scorer_versions": scorer_versions(),
        "signals": list(SIGNALS),
        "center": {s: r(v) for s, v in zip(SIGNALS, center, strict=True)},
        "scale": {s: r(v) for s, v in zip(SIGNALS, scale, strict=True)},
        "coefficients": {s: r(v) for s, v in zip(SIGNALS, coefficients, strict=True)},
        "intercept": r(intercept),
        "heads": {
            "not_done": {s: r(v) for s, v in zip(SIGNALS, heads[0].coef_[0], strict=True)},
            "not_calm_helpful": {s: r(v) for s, v in zip(SIGNALS, heads[1].coef_[0], strict=True)},
            "weight_not_calm_helpful": weight,
            # On the fitting half, out of fold, at that weight.
            "fitting_auc_task_not_done": round(fitting_aucs(weight)[0], 4),
            "fitting_auc_not_calm_helpful": round(fitting_aucs(weight)[1], 4),
            "l2_c": HEAD_C,
        },
        "calibration": {
            "method": "isotonic",
            "risk": [r(x) for x in curve.X_thresholds_],
            "p": [r(p) for p in curve.y_thresholds_],
        },
    }


def reliability(p: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Equal-width bins of predicted probability: n, mean predicted, observed rate."""
    out = []
    for k in range(BINS):
        lo, hi = k / BINS, (k + 1) / BINS
        m = (p >= lo) & ((p < hi) if k < BINS - 1 else (p <= hi))
        n = int(m.sum())
        out.append(
            {
                "lo": lo,
                "hi": hi,
                "n": n,
                "mean_predicted": round(float(p[m].mean()), 4) if n else None,
                "observed": round(float(y[m].mean()), 4) if n else None,
            }
        )
    return out


def rank_auc(y: np.ndarray, score: np.ndarray, axis: int = -1) -> np.ndarray:
    """ROC AUC by ranks (Mann-Whitney, ties counted half), along `axis`: what bootstrap resamples in bulk.
    y is 1 for a negative answer, 0 for a positive one; NaN where a resample holds only one of them."""
    ranks = rankdata(score, axis=axis)
    n1 = y.sum(axis=axis)
    n0 = y.shape[axis] - n1
    with np.errstate(invalid="ignore", divide="ignore"):
        return ((ranks * y).sum(axis=axis) - n1 * (n1 + 1) / 2) / (n1 * n0)


def interval95(samples: tuple[np.ndarray, ...], statistic: Any) -> list[float] | None:
    """A 95% BCa bootstrap interval over conversations, resampled in pairs; None where it cannot be taken
    (a half too small to hold negatives in every resample)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a degenerate resample: the interval says None
        found = bootstrap(
            samples, statistic, paired=True, vectorized=True, n_resamples=RESAMPLES, batch=250,
            random_state=np.random.default_rng(INTERVAL_SEED),
        ).confidence_interval  # fmt: skip
    bounds = [float(found.low), float(found.high)]
    return [round(b, 4) for b in bounds] if all(np.isfinite(bounds)) else None


def auc_intervals(y: np.ndarray, p: np.ndarray, review_risk: np.ndarray, pick: np.ndarray) -> dict[str, Any]:
    """95% intervals of pCSAT's AUC, of the review score's, and of their difference on the same conversations
    (paired: one resample feeds both, so what the two share cancels out of the difference)."""
    m = pick & (y >= 0) & ~np.isnan(p) & ~np.isnan(review_risk)
    y, p, r = y[m].astype(float), p[m], review_risk[m]
    return {
        "pcsat_ci95": interval95((y, p), rank_auc),
        "review_score_ci95": interval95((y, r), rank_auc),
        "difference": round(float(rank_auc(y, p) - rank_auc(y, r)), 4),
        "difference_ci95": interval95(
            (y, p, r), lambda y, p, r, axis=-1: rank_auc(y, p, axis) - rank_auc(y, r, axis)
        ),
    }


def validity(c: Corpus, p: np.ndarray) -> dict[str, Any]:
    """Per half: AUCs of pCSAT and of the review score with 95% intervals, Brier score, reliability bins with
    their n."""
    target = dissatisfied(c)
    review_risk = 1 - c.review_score
    out: dict[str, Any] = {}
    for half, name in HALF_NAMES.items():
        pick = c.half == half
        m = pick & (target >= 0)
        intervals = {q: auc_intervals(y, p, review_risk, pick) for q, y in questions(c).items()}
        out[name] = {
            "fitted": half == FIT,  # readers (the console) pick the held-out half by this, not by its name
            "conversations": int(pick.sum()),
            "labelled": int(m.sum()),
            "dissatisfied_rate": round(float(target[m].mean()), 4),
            "auc_task_not_done": round(auc(c.not_done, p, pick), 4),
            "auc_not_calm_helpful": round(auc(c.not_calm, p, pick), 4),
            "review_score_auc_task_not_done": round(auc(c.not_done, review_risk, pick), 4),
            "review_score_auc_not_calm_helpful": round(auc(c.not_calm, review_risk, pick), 4),
            "negatives_task_not_done": int((pick & (c.not_done == 1)).sum()),
            "negatives_not_calm_helpful": int((pick & (c.not_calm == 1)).sum()),
            "auc_intervals": intervals,
            "brier": round(float(brier_score_loss(target[m], p[m])), 4),
            "brier_base_rate": round(
                float(brier_score_loss(target[m], np.full(m.sum(), target[m].mean()))), 4
            ),
            "reliability": reliability(p[m], target[m]),
        }
    return out


def predictions(c: Corpus, model: PcsatModel) -> np.ndarray:
    """p_dissatisfied exactly as the service computes it (same code, same rounding)."""
    return np.array([model.predict(v).p_dissatisfied for v in c.views], dtype=float)


def plot(figures: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    ax.fill_between([0, 1], [-0.1, 0.9], [0.1, 1.1], color="grey", alpha=0.12, label="±0.1")
    for (name, half), marker in zip(figures.items(), ("o", "s"), strict=True):
        bins = [b for b in half["reliability"] if b["n"]]
        xs = [b["mean_predicted"] for b in bins]
        ys = [b["observed"] for b in bins]
        line = ax.plot(xs, ys, marker=marker, label=f"{name}: Brier {half['brier']}")[0]
        for b in bins:
            ax.annotate(str(b["n"]), (b["mean_predicted"], b["observed"]), textcoords="offset points",
                        xytext=(4, -10), fontsize=7, color=line.get_color())  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted P(dissatisfied)", ylabel="observed share dissatisfied")
    ax.set_title("pCSAT reliability on STAR (n per bin)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def build(path: Path) -> dict[str, Any]:
    corpus = load(path)
    doc = fit(corpus)
    doc["validity"] = validity(corpus, predictions(corpus, PcsatModel.from_document(doc)))
    return doc


def encode(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_INDENT_2) + b"\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=STAR)
    parser.add_argument("--check", action="store_true", help="fail when model.json differs from a refit")
    args = parser.parse_args(argv)
    doc = build(args.data)
    text = encode(doc)
    if args.check:
        same = MODEL_PATH.exists() and MODEL_PATH.read_bytes() == text
        print(
            "model.json matches a refit" if same else "model.json differs from a refit: run bench.pcsat_fit"
        )
        return 0 if same else 1
    MODEL_PATH.write_bytes(text)
    print(orjson.dumps(doc["validity"], option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
