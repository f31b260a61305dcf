"""Freeze windows: when an environment is frozen, and until when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from baton.config import ConfigError, FreezeWindow, parse_config
from baton.freeze import Freeze, active


def window(**fields) -> FreezeWindow:
    return FreezeWindow.model_validate({"name": "w", **fields})


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


HOLIDAYS = window(name="holidays", start="2026-12-24T00:00:00Z", end="2027-01-02T00:00:00Z")
WEEKEND = window(name="weekend", weekly={"days": ["sat", "sun"]}, timezone="Europe/Berlin")
NIGHTS = window(
    name="nights",
    weekly={"days": ["mon", "tue", "wed", "thu", "fri"], "start": "18:00", "end": "08:00"},
)


def test_one_time_window_covers_start_but_not_end() -> None:
    assert active([HOLIDAYS], at("2026-12-23T23:59:59+00:00")) is None
    assert active([HOLIDAYS], at("2026-12-24T00:00:00+00:00")) == Freeze(
        "holidays", at("2027-01-02T00:00:00+00:00")
    )
    assert active([HOLIDAYS], at("2027-01-02T00:00:00+00:00")) is None


def test_weekly_whole_days_chain_across_midnight_in_their_timezone() -> None:
    # Saturday 10:00 in Berlin (UTC+1 in November): frozen until Monday 00:00 Berlin time.
    assert active([WEEKEND], at("2026-11-28T10:00:00+01:00")) == Freeze(
        "weekend", at("2026-11-30T00:00:00+01:00")
    )
    assert active([WEEKEND], at("2026-11-29T23:30:00+00:00")) is None  # Monday 00:30 in Berlin


def test_overnight_window_ends_the_next_morning() -> None:
    assert active([NIGHTS], at("2026-11-27T17:59:00+00:00")) is None  # Friday
    assert active([NIGHTS], at("2026-11-27T18:00:00+00:00")) == Freeze(
        "nights", at("2026-11-28T08:00:00+00:00")
    )
    # Friday night's window reaches into Saturday morning.
    assert active([NIGHTS], at("2026-11-28T07:00:00+00:00")).until == at("2026-11-28T08:00:00Z")


def test_touching_windows_chain_and_name_each_other() -> None:
    frozen = active([NIGHTS, WEEKEND], at("2026-11-27T20:00:00+00:00"))  # Friday night
    # Friday's night (until Saturday 08:00 UTC) runs into the weekend (until Monday 00:00 in
    # Berlin); Sunday night is not a weeknight, so nothing extends it further.
    assert frozen == Freeze("nights, weekend", at("2026-11-30T00:00:00+01:00"))


@pytest.mark.parametrize(
    ("freeze", "problem"),
    [
        ("{name: x, start: 2026-12-24T00:00:00Z}", "a one-time window needs both start and end"),
        (
            "{name: x, start: 2026-12-24T00:00:00, end: 2026-12-25T00:00:00}",
            "start and end need a UTC offset",
        ),
        ("{name: x, start: 2026-12-25T00:00:00Z, end: 2026-12-24T00:00:00Z}", "end must be after"),
        ("{name: x, weekly: {days: [sat]}, timezone: Mars/Olympus}", "unknown timezone"),
        ("{name: x, weekly: {days: [caturday]}}", "freeze[0].weekly.days[0]"),
        (
            "{name: x, weekly: {days: [sat]}, start: 2026-12-24T00:00:00Z, end: 2026-12-25T00:00:00Z}",
            "set either start and end (once) or weekly, not both",
        ),
    ],
)
def test_bad_windows_name_the_field_and_the_fix(freeze: str, problem: str) -> None:
    text = (
        "apps: [{name: web, repo: web, image: web, chart: chart}]\n"
        f"environments: [{{name: prod, namespace: prod, freeze: [{freeze}]}}]\n"
    )
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    assert problem in str(error.value), str(error.value)


def test_the_night_clocks_go_back_the_window_ends_at_the_first_0130() -> None:
    """01:15 happens twice in New York on 2025-11-02: the window ends at the first 01:30 (EDT),
    and the second 01:15 (EST) is past it, not frozen with an end in the past."""
    late = window(
        name="late",
        weekly={"days": ["sat", "sun"], "start": "22:00", "end": "01:30"},
        timezone="America/New_York",
    )
    assert active([late], at("2025-11-02T05:15:00+00:00")).until == at("2025-11-02T05:30:00Z")
    assert active([late], at("2025-11-02T06:15:00+00:00")) is None
