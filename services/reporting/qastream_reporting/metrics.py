"""Metric formulas over summed rollup measures: pure functions, no SQL, no I/O.

Design-weighted IQS (manual reviews, w = 1/π from the sampler's inclusion probabilities):
- Hájek: ŷ = Σw·y / Σw. Its variance under Poisson (Bernoulli-per-unit) sampling, by linearisation, is
  V = Σ (1−π)/π² · (y − ŷ)² / (Σw)² = Σ (w² − w)(y − ŷ)² / (Σw)², expanded into the stored sums. The
  interval is ŷ ± z·√V. A census (every π = 1) has V = 0.
- Horvitz–Thompson mean: Σw·y / N, with N the number of conversations in the scope, and
  V = Σ (w² − w)·y² / N².
The raw mean has a Student-t interval from n, Σy and Σy².
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from qastream_shared.agreement import alpha_of_pairs

CONFIDENCE = 0.95


def ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _stats() -> ModuleType:
    # Imported on first use: scipy.stats is most of the service's import time (seconds on a busy machine),
    # and only intervals and p-values need it.
    from scipy import stats

    return stats


def mean_interval(n: float, total: float, total_sq: float) -> dict[str, float | None]:
    """Mean with a Student-t interval (None where n is too small for one)."""
    if n <= 0:
        return {"mean": None, "ci_low": None, "ci_high": None}
    mean = total / n
    if n < 2:
        return {"mean": mean, "ci_low": None, "ci_high": None}
    var = max(0.0, (total_sq - n * mean * mean) / (n - 1))
    half = _t(int(n) - 1) * math.sqrt(var / n)
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half}


@functools.lru_cache(maxsize=4096)
def _t(dof: int) -> float:
    # scipy's ppf costs ~0.1 ms a call: a page of 100 groups paid it 100 times per request.
    return float(_stats().t.ppf(0.5 + CONFIDENCE / 2, dof))


@functools.cache
def _z() -> float:
    return float(_stats().norm.ppf(0.5 + CONFIDENCE / 2))


def hajek(s: Mapping[str, float]) -> dict[str, float | None]:
    """Hájek estimate and interval from Σw, Σwy, Σwy², Σw², Σw²y, Σw²y² (keys w, wy, wyy, ww, wwy, wwyy)."""
    w = s["w"]
    if w <= 0:
        return {"estimate": None, "ci_low": None, "ci_high": None}
    est = s["wy"] / w
    # Σ(w² − w)(y − ŷ)² = Σ(w²−w)y² − 2ŷ Σ(w²−w)y + ŷ² Σ(w²−w)
    a = s["wwyy"] - s["wyy"]
    b = s["wwy"] - s["wy"]
    c = s["ww"] - w
    var = max(0.0, a - 2 * est * b + est * est * c) / (w * w)
    half = _z() * math.sqrt(var)
    return {"estimate": est, "ci_low": est - half, "ci_high": est + half}


def horvitz_thompson(s: Mapping[str, float], population: float) -> dict[str, float | None]:
    if population <= 0 or s["w"] <= 0:
        return {"estimate": None, "ci_low": None, "ci_high": None, "population": population}
    est = s["wy"] / population
    var = max(0.0, s["wwyy"] - s["wyy"]) / (population * population)
    half = _z() * math.sqrt(var)
    return {"estimate": est, "ci_low": est - half, "ci_high": est + half, "population": population}


def quality(s: Mapping[str, float]) -> dict[str, Any]:
    """IQS, pass rate and auto-fail rate of one group of summed score_rollup measures."""
    raw = mean_interval(s["n_scored"], s["sum_score"], s["sum_score_sq"])
    return {
        "reviews": int(s["n"]),
        "scored": int(s["n_scored"]),
        "iqs": raw["mean"],
        "iqs_ci_low": raw["ci_low"],
        "iqs_ci_high": raw["ci_high"],
        "pass_rate": ratio(s["n_passed"], s["n_pass_known"]),
        "auto_fail_rate": ratio(s["n_auto_failed"], s["n"]),
    }


def design_weighted(s: Mapping[str, float], population: float) -> dict[str, Any]:
    raw = mean_interval(s["n_scored"], s["sum_score"], s["sum_score_sq"])
    return {
        "reviews": int(s["n_scored"]),
        "weighted_reviews": int(s["n_weighted"]),
        "raw_mean": raw,
        "hajek": hajek(s),
        "horvitz_thompson": horvitz_thompson(s, population),
    }


def category(s: Mapping[str, float]) -> dict[str, Any]:
    return {
        "ratings": int(s["n"]),
        "rated": int(s["n_scored"]),
        "score": ratio(s["sum_score"], s["n_scored"]),
    }


def agreement(s: Mapping[str, float]) -> dict[str, Any]:
    return {
        "pairs": int(s["n"]),
        "exact_agreement": ratio(s["n_equal"], s["n"]),
        "mean_abs_difference": ratio(s["sum_abs_diff"], s["n"]),
        "manual_score": ratio(s["sum_manual"], s["n"]),
        "auto_score": ratio(s["sum_auto"], s["n"]),
    }


def agreement_alpha(pairs: Sequence[tuple[float, float, int]]) -> float | None:
    """Krippendorff's α of AutoQA against people from counted (auto, human) score pairs: ordinal on the
    0..1 category scores, the level calibration's overall α uses, so binary and point scales compare."""
    return alpha_of_pairs(pairs, "ordinal")


def customer(s: Mapping[str, float]) -> dict[str, Any]:
    """Coverage, CSAT, NPS, FCR and pCSAT of one group of summed conversation_rollup measures."""
    n = s["n"]
    return {
        "conversations": int(n),
        "coverage_auto": ratio(s["n_auto_reviewed"], n),
        "coverage_manual": ratio(s["n_manual_reviewed"], n),
        "csat": ratio(s["sum_csat"], s["n_csat"]),
        "csat_responses": int(s["n_csat"]),
        "csat_satisfied_rate": ratio(s["n_csat_satisfied"], s["n_csat"]),
        "survey_coverage": ratio(s["n_csat"], n),
        "nps": (None if not s["n_nps"] else 100.0 * (s["n_promoters"] - s["n_detractors"]) / s["n_nps"]),
        "nps_responses": int(s["n_nps"]),
        "fcr_rate": ratio(s["n_fcr_yes"], s["n_fcr"]),
        "fcr_responses": int(s["n_fcr"]),
        "pcsat": ratio(s["sum_pcsat"], s["n_pcsat"]),
        "pcsat_predictions": int(s["n_pcsat"]),
        "pcsat_coverage": ratio(s["n_pcsat"], n),
    }


def _average_ranks(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The average rank (1-based) each distinct value takes when it occurs counts[i] times."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ends = np.cumsum(counts[order])
    ranks[order] = ends - (counts[order] - 1) / 2.0
    return ranks


def spearman(pairs: Sequence[tuple[float, float, float]]) -> dict[str, float | None]:
    """Spearman's ρ (ties get average ranks, as scipy.stats.spearmanr) from (x, y, count) rows, with its
    p-value and 95% interval.

    The rollups keep counted pairs, not one row per conversation, so ρ is the weighted Pearson correlation
    of the average ranks; the p-value uses the t-distribution with n − 2 degrees of freedom, as scipy does.
    """
    if not pairs:
        return {"rho": None, "p_value": None, "n": 0, "ci_low": None, "ci_high": None}
    arr = np.asarray(pairs, dtype=float)
    x, y, n = arr[:, 0], arr[:, 1], arr[:, 2]
    total = float(n.sum())
    xs, xi = np.unique(x, return_inverse=True)
    ys, yi = np.unique(y, return_inverse=True)
    rx = _average_ranks(xs, np.bincount(xi, weights=n))[xi]
    ry = _average_ranks(ys, np.bincount(yi, weights=n))[yi]
    mx, my = (rx * n).sum() / total, (ry * n).sum() / total
    cov = (n * (rx - mx) * (ry - my)).sum()
    vx, vy = (n * (rx - mx) ** 2).sum(), (n * (ry - my) ** 2).sum()
    if total < 3 or vx <= 0 or vy <= 0:
        return {"rho": None, "p_value": None, "n": int(total), "ci_low": None, "ci_high": None}
    rho = float(np.clip(cov / math.sqrt(vx * vy), -1.0, 1.0))
    dof = total - 2
    if abs(rho) >= 1.0:
        p = 0.0
    else:
        t = rho * math.sqrt(dof / ((1.0 - rho) * (1.0 + rho)))
        p = float(2 * _stats().t.sf(abs(t), dof))
    return {"rho": rho, "p_value": p, "n": int(total), **rho_interval(rho, total)}


def rho_interval(rho: float, n: float) -> dict[str, float | None]:
    """95% interval of Spearman's ρ over n pairs: Fisher's z with Bonett and Wright's variance for Spearman,
    (1 + ρ²/2)/(n − 3) (Psychometrika 65, 2000), which keeps its coverage for large ρ where Pearson's
    1/(n − 3) is too narrow. None below four pairs; a ρ of ±1 is its own interval."""
    if n <= 3:
        return {"ci_low": None, "ci_high": None}
    if abs(rho) >= 1.0:
        return {"ci_low": rho, "ci_high": rho}
    half = _z() * math.sqrt((1 + rho * rho / 2) / (n - 3))
    z = math.atanh(rho)
    return {"ci_low": math.tanh(z - half), "ci_high": math.tanh(z + half)}
