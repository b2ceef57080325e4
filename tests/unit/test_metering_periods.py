"""Period arithmetic of usage aggregates: ISO weeks, calendar months, range covers."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from services.metering.periods import cover, next_period, period_start, periods_between


def ts(*args: int) -> int:
    return int(datetime(*args, tzinfo=timezone.utc).timestamp())


@pytest.mark.parametrize("when,hour,day,week,month", [
    # Sunday 31 Dec 2023, 23:59:59: ISO week 52 began Monday 25 Dec; next second is a new
    # hour, day, week, month and year all at once.
    (ts(2023, 12, 31, 23, 59, 59), ts(2023, 12, 31, 23), ts(2023, 12, 31), ts(2023, 12, 25), ts(2023, 12, 1)),
    (ts(2024, 1, 1, 0, 0, 0), ts(2024, 1, 1, 0), ts(2024, 1, 1), ts(2024, 1, 1), ts(2024, 1, 1)),
    # Leap day, a Thursday; its ISO week started Monday 26 Feb.
    (ts(2024, 2, 29, 12, 30), ts(2024, 2, 29, 12), ts(2024, 2, 29), ts(2024, 2, 26), ts(2024, 2, 1)),
    # 1 Jan 2021 was a Friday: ISO week 53 of 2020, which began Monday 28 Dec 2020.
    (ts(2021, 1, 1, 5), ts(2021, 1, 1, 5), ts(2021, 1, 1), ts(2020, 12, 28), ts(2021, 1, 1)),
])
def test_period_starts(when: int, hour: int, day: int, week: int, month: int) -> None:
    assert [period_start(g, when) for g in ("hour", "day", "week", "month")] == [hour, day, week, month]


def test_weeks_start_on_monday_like_isocalendar() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        t = rng.randrange(ts(1999, 1, 1), ts(2040, 1, 1))
        d = datetime.fromtimestamp(t, timezone.utc)
        monday = (d - timedelta(days=d.isoweekday() - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        assert period_start("week", t) == int(monday.timestamp())
        assert next_period("week", period_start("week", t)) - period_start("week", t) == 7 * 86400


def test_months_roll_over_the_year() -> None:
    assert next_period("month", ts(2024, 12, 1)) == ts(2025, 1, 1)
    assert periods_between("month", ts(2024, 11, 15), ts(2025, 2, 1), 100) == [ts(2024, 11, 1), ts(2024, 12, 1),
                                                                              ts(2025, 1, 1)]


def test_periods_between_is_bounded() -> None:
    with pytest.raises(ValueError, match="more than 24 hour periods"):
        periods_between("hour", ts(2024, 1, 1), ts(2024, 1, 3), 24)


def test_cover_splits_a_range_into_whole_periods_without_gaps_or_overlaps() -> None:
    rng = random.Random(11)
    for _ in range(500):
        start = rng.randrange(ts(2023, 1, 1), ts(2025, 1, 1)) // 3600 * 3600
        end = start + rng.randrange(1, 24 * 400) * 3600
        hours: list[int] = []
        for g, lo, hi in cover(start, end):
            p = lo
            while p < hi:
                assert period_start(g, p) == p
                nxt = next_period(g, p)
                hours += range(p, nxt, 3600)
                p = nxt
            assert p == hi
        assert hours == list(range(start, end, 3600))
    assert cover(ts(2024, 1, 1), ts(2024, 3, 1)) == [("month", ts(2024, 1, 1), ts(2024, 3, 1))]
