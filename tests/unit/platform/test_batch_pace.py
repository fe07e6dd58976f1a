"""The consumer's latency cap on batches (`BatchPace`), driven by a batch cost of fixed + per-record time."""

from qastream_shared.batch_pace import MIN_CAPPED_BATCH, BatchPace
from qastream_shared.settings import Settings

FIXED_S, PER_RECORD_S = 0.015, 0.0019  # scoring's shape under load: 255 records in ~495 ms


def took(n: int) -> float:
    return FIXED_S + n * PER_RECORD_S


def backlog(pace: BatchPace, batches: int) -> list[int]:
    """Batches taken from a backlog deeper than any batch: each as large as the limit allows."""
    sizes = []
    for _ in range(batches):
        n = pace.limit()
        sizes.append(n)
        pace.batch_took(took(n), n)
    return sizes


def test_a_backlog_is_worked_off_in_batches_that_take_about_the_target() -> None:
    pace = BatchPace(Settings(consumer_batch_size=500, consumer_batch_target_ms=250))
    sizes = backlog(pace, 30)
    assert sizes[0] == 500  # no pace known yet
    assert all(0.9 * 0.25 <= took(n) <= 1.1 * 0.25 for n in sizes[-10:]), [took(n) for n in sizes[-10:]]


def test_after_small_batches_a_burst_takes_most_of_the_target_and_not_more() -> None:
    """Batches of what has arrived (few records, fixed costs weighing more) overstate the cost per record:
    the cap they leave errs short of the target, not past it, and not by much."""
    pace = BatchPace(Settings(consumer_batch_size=500, consumer_batch_target_ms=250))
    for _ in range(20):
        pace.batch_took(took(35), 35)
    assert 0.75 * 0.25 <= took(pace.limit()) <= 0.25


def test_a_stalled_batch_costs_the_next_ones_little_and_they_recover() -> None:
    pace = BatchPace(Settings(consumer_batch_size=500, consumer_batch_target_ms=250))
    backlog(pace, 20)
    settled = pace.limit()
    pace.batch_took(5.0, 10)  # a database stall: 10 records in 5 s
    assert pace.limit() == settled
    pace.batch_took(5.0, 10)
    pace.batch_took(5.0, 10)  # most of the recent batches stalled: the pace follows, within bounds
    assert MIN_CAPPED_BATCH <= pace.limit() < settled
    sizes = backlog(pace, 10)
    assert 0.9 * 0.25 <= took(sizes[-1]) <= 1.1 * 0.25


def test_no_target_leaves_the_batch_size_alone() -> None:
    pace = BatchPace(Settings(consumer_batch_size=500))
    assert backlog(pace, 5) == [500] * 5
