"""Sampling periods: the UTC day, ISO week or calendar month a conversation's event time falls in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

from qastream_sampler.plans import Period


def period_bounds(t: datetime, period: Period) -> tuple[datetime, datetime, str]:
    """(start, end, label) of the UTC day, ISO week or calendar month containing t."""
    return _period_bounds(t.date(), period)


@lru_cache(maxsize=4096)
def _period_bounds(d: date, period: Period) -> tuple[datetime, datetime, str]:
    day = datetime(d.year, d.month, d.day, tzinfo=UTC)
    if period is Period.day:
        return day, day + timedelta(days=1), day.date().isoformat()
    if period is Period.week:
        start = day - timedelta(days=day.weekday())
        year, week, _ = start.isocalendar()
        return start, start + timedelta(days=7), f"{year}-W{week:02d}"
    start = day.replace(day=1)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end, f"{start.year}-{start.month:02d}"
