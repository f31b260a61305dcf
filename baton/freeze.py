"""Freeze windows: is an environment frozen at an instant, and until when?

Pure functions of the configured windows and an instant, so workflows call them with
`workflow.now()`. Windows that touch or overlap chain: a freeze over the weekend that a holiday
window extends ends when the last of them does.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

from baton.config import WEEKDAYS, FreezeWindow

# More chained windows than this is a configuration mistake; stop extending there.
MAX_CHAIN = 64


class Freeze(NamedTuple):
    name: str
    until: datetime


def active(windows: list[FreezeWindow], now: datetime) -> Freeze | None:
    """The freeze in force at `now`, ending when no window covers the instant any more."""
    found = _covering(windows, now)
    if found is None:
        return None
    names, until = [found.name], found.until
    for _ in range(MAX_CHAIN):
        more = _covering(windows, until)
        if more is None:
            break
        if more.name not in names:
            names.append(more.name)
        until = more.until
    return Freeze(", ".join(names), until)


def _covering(windows: list[FreezeWindow], now: datetime) -> Freeze | None:
    """The window covering `now` that ends last, if any."""
    spans = [span for window in windows if (span := _span(window, now)) is not None]
    return max(spans, key=lambda f: f.until, default=None)


def _span(window: FreezeWindow, now: datetime) -> Freeze | None:
    if window.weekly is None:
        assert window.start is not None and window.end is not None
        inside = window.start <= now < window.end
        return Freeze(window.name, window.end.astimezone(UTC)) if inside else None
    zone = ZoneInfo(window.timezone)
    local = now.astimezone(zone)
    weekly = window.weekly
    for day in (local.date() - timedelta(days=1), local.date()):
        if WEEKDAYS[day.weekday()] not in weekly.days:
            continue
        start = datetime.combine(day, weekly.start, zone).astimezone(UTC)
        end_day = (
            day if weekly.end is not None and weekly.end > weekly.start else day + timedelta(1)
        )
        end = datetime.combine(end_day, weekly.end or datetime.min.time(), zone).astimezone(UTC)
        # In UTC: wall-clock comparisons in the zone go wrong in the hour clocks go back.
        if start <= now < end:
            return Freeze(window.name, end)
    return None
