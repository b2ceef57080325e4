"""Metric names, usage records and period arithmetic for usage aggregates (UTC, epoch
seconds). Pure: imports the standard library only.

Periods: hour, day, ISO week (starts Monday 00:00 UTC) and calendar month. A usage record
falls into exactly one period of each granularity, so a longer period is always a whole
number of hours: every aggregate can be checked against (and rebuilt from) hourly buckets.
"""

from __future__ import annotations

from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Iterable, Sequence

# Counters add up over a period; gauges are sampled levels whose aggregate is the peak.
COUNTERS = ("api_requests", "egress_bytes", "function_invocations", "realtime_messages")
GAUGES = ("db_size_bytes", "storage_bytes", "realtime_peak_connections")
METRICS = COUNTERS + GAUGES
GRANULARITIES = ("hour", "day", "week", "month")

HOUR = 3600
DAY = 86400
_METRICS = frozenset(METRICS)

Record = tuple[str, str, str, int, int]  # (org_slug, project_ref, metric, epoch seconds, quantity)


class UsageError(ValueError):
    """A record that cannot be folded (unknown metric, negative quantity...)."""


def check_records(records: Iterable[Sequence[Any]]) -> list[Record]:
    out: list[Record] = []
    for r in records:
        org, ref, metric, at, q = r
        if metric not in _METRICS:
            raise UsageError(f"unknown metric {metric!r}")
        if type(q) is not int or q < 0 or type(at) is not int or at < 0:
            raise UsageError(f"quantity and time must be non-negative integers: {r!r}")
        if not org or not ref:
            raise UsageError(f"record without organization or project: {r!r}")
        out.append((org, ref, metric, at, q))
    return out


def is_gauge(metric: str) -> bool:
    return metric in GAUGES


def hour_start(t: int) -> int:
    return t - t % HOUR


@lru_cache(maxsize=4096)
def _month_start_of_day(day: int) -> int:
    d = datetime.fromtimestamp(day, timezone.utc)
    return int(datetime(d.year, d.month, 1, tzinfo=timezone.utc).timestamp())


def period_start(granularity: str, t: int) -> int:
    """Start (epoch seconds) of the period of this granularity that contains instant t."""
    if granularity == "hour":
        return t - t % HOUR
    day = t - t % DAY
    if granularity == "day":
        return day
    if granularity == "week":
        # 1970-01-01 was a Thursday: (days + 3) % 7 counts days since Monday.
        return day - ((day // DAY + 3) % 7) * DAY
    if granularity == "month":
        return _month_start_of_day(day)
    raise ValueError(f"unknown granularity {granularity!r}")


def next_period(granularity: str, start: int) -> int:
    """Start of the period after the one starting at `start`."""
    if granularity == "hour":
        return start + HOUR
    if granularity == "day":
        return start + DAY
    if granularity == "week":
        return start + 7 * DAY
    if granularity == "month":
        d = datetime.fromtimestamp(start, timezone.utc)
        year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return int(datetime(year, month, 1, tzinfo=timezone.utc).timestamp())
    raise ValueError(f"unknown granularity {granularity!r}")


def starts_of(t_hour: int) -> tuple[int, int, int, int]:
    """The hour, day, week and month starts of an hour bucket (one tuple per hour: cheap to cache)."""
    return (t_hour, period_start("day", t_hour), period_start("week", t_hour), period_start("month", t_hour))


def periods_between(granularity: str, start: int, end: int, limit: int) -> list[int]:
    """Starts of the periods from the one containing `start` up to (excluding) `end`."""
    out: list[int] = []
    p = period_start(granularity, start)
    while p < end:
        if len(out) >= limit:
            raise ValueError(f"more than {limit} {granularity} periods in that range")
        out.append(p)
        p = next_period(granularity, p)
    return out


def cover(start: int, end: int) -> list[tuple[str, int, int]]:
    """Split [start, end) (hour-aligned) into whole months, days and hours, coarsest first
    where they fit: (granularity, first period start, end). Summing (or taking the peak of)
    the aggregates of these pieces gives the range's exact total from few rows."""
    if start % HOUR or end % HOUR:
        raise ValueError("range must start and end on an hour")
    pieces: list[tuple[str, int, int]] = []

    def split(lo: int, hi: int, grains: tuple[str, ...]) -> None:
        if lo >= hi:
            return
        if not grains:
            return
        g, rest = grains[0], grains[1:]
        first = lo if period_start(g, lo) == lo else next_period(g, period_start(g, lo))
        last = period_start(g, hi)
        if first >= last:  # no whole period of this size inside
            split(lo, hi, rest)
            return
        split(lo, first, rest)
        pieces.append((g, first, last))
        split(last, hi, rest)

    split(start, end, ("month", "day", "hour"))
    return pieces


def month_bounds(t: int) -> tuple[int, int]:
    start = period_start("month", t)
    return start, next_period("month", start)


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def parse_instant(value: str, field: str) -> int:
    """An ISO 8601 instant as epoch seconds (a value without offset is taken as UTC)."""
    if not isinstance(value, str):
        raise ValueError(f"{field}: an ISO 8601 date-time")
    try:
        d = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: not an ISO 8601 date-time: {value!r}") from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=timezone.utc)
    return int(d.timestamp())
