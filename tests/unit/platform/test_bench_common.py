"""The one percentile rule every bench prints its latencies with."""

from bench.common import percentile, percentiles


def test_percentiles_stay_inside_the_samples_range() -> None:
    few = [5.0, 1.0, 9.0]
    out = percentiles(few, (50, 99))
    assert out["n"] == 3
    assert out["p50_ms"] == 5.0
    assert 5.0 < out["p99_ms"] <= out["max_ms"] == 9.0


def test_percentiles_interpolate_between_ranks() -> None:
    out = percentiles([float(x) for x in range(1, 101)], (50, 90, 99), digits=2)
    assert (out["p50_ms"], out["p90_ms"], out["p99_ms"], out["max_ms"]) == (50.5, 90.1, 99.01, 100.0)


def test_no_samples_or_one() -> None:
    assert percentiles([]) == {"n": 0}
    assert percentiles([3.0], (99,)) == {"n": 1, "p99_ms": 3.0, "max_ms": 3.0}
    assert percentile([], 99) is None
    assert percentile([7.0], 99) == 7.0
