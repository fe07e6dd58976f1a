"""Design-based estimates from a sample and its inclusion probabilities (Horvitz–Thompson, Hájek).

Units with a `stratum` came from a fixed-size draw without replacement in that stratum (quota slots, the
fallback): their variance is the stratified SRSWOR one, N_h²(1 − n_h/N_h)s²_h/n_h with N_h = Σ 1/π. Units
without one came from independent Bernoulli draws (random and targeted plans): Poisson variance
Σ(1 − π)e²/π². The 95% interval is normal: estimate ± 1.96·√variance.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

Z95 = NormalDist().inv_cdf(0.975)


@dataclass(frozen=True, slots=True)
class SampledValue:
    value: float
    probability: float
    stratum: str | None = None


@dataclass(frozen=True, slots=True)
class Estimate:
    mean: float
    variance: float
    ci_low: float
    ci_high: float
    n: int

    @property
    def std_error(self) -> float:
        return math.sqrt(self.variance)


def _total_variance(units: Sequence[SampledValue], residuals: Sequence[float]) -> float:
    var = 0.0
    strata: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for u, e in zip(units, residuals, strict=True):
        if u.stratum is None:
            var += (1 - u.probability) * e * e / (u.probability * u.probability)
        else:
            strata[u.stratum].append((e, u.probability))
    for members in strata.values():
        n = len(members)
        if n < 2:
            continue  # a single pick has no within-stratum spread to estimate from
        big_n = sum(1 / p for _, p in members)
        mean = sum(e for e, _ in members) / n
        s2 = sum((e - mean) ** 2 for e, _ in members) / (n - 1)
        var += big_n * big_n * max(0.0, 1 - n / big_n) * s2 / n
    return var


def _estimate(mean: float, variance: float, n: int) -> Estimate:
    half = Z95 * math.sqrt(variance)
    return Estimate(mean=mean, variance=variance, ci_low=mean - half, ci_high=mean + half, n=n)


def _check(units: Sequence[SampledValue]) -> None:
    if not units:
        raise ValueError("no sampled values")
    if any(not 0 < u.probability <= 1 for u in units):
        raise ValueError("inclusion probabilities must be in (0, 1]")


def horvitz_thompson_mean(units: Iterable[SampledValue], population_size: int) -> Estimate:
    """Σ(y/π)/N for a population of known size N."""
    sample = list(units)
    _check(sample)
    if population_size <= 0:
        raise ValueError("population_size must be positive")
    total = sum(u.value / u.probability for u in sample)
    variance = _total_variance(sample, [u.value for u in sample]) / population_size**2
    return _estimate(total / population_size, variance, len(sample))


def hajek_mean(units: Iterable[SampledValue]) -> Estimate:
    """Σ(y/π)/Σ(1/π): the design-weighted mean when N is not known, with its linearised variance."""
    sample = list(units)
    _check(sample)
    n_hat = sum(1 / u.probability for u in sample)
    mean = sum(u.value / u.probability for u in sample) / n_hat
    variance = _total_variance(sample, [u.value - mean for u in sample]) / n_hat**2
    return _estimate(mean, variance, len(sample))


def design_weighted_iqs(reviews: Iterable[tuple[float, float, str | None]]) -> Estimate:
    """IQS over (review score, inclusion probability, stratum) of the reviews of one sampling plan."""
    return hajek_mean(SampledValue(score, p, stratum) for score, p, stratum in reviews)
