"""NCRONTAB occurrences: the timer derives one request id per scheduled occurrence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from licensing.errors import ConfigurationError
from licensing.ncrontab import Schedule
from licensing.pipeline.schedule import occurrence_request_id


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_two_firings_of_one_occurrence_share_the_request_id() -> None:
    first = occurrence_request_id("0 30 2 * * *", at("2026-11-24T02:30:00.120"))
    late = occurrence_request_id("0 30 2 * * *", at("2026-11-24T02:47:13"))  # past due, caught up later
    assert first == late == "schedule-20261124T023000Z"
    assert occurrence_request_id("0 30 2 * * *", at("2026-11-25T02:30:01")) == "schedule-20261125T023000Z"


def test_before_todays_time_belongs_to_yesterday() -> None:
    assert Schedule.parse("0 30 2 * * *").previous(at("2026-11-24T01:00:00")) == at("2026-11-23T02:30:00")


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("0 */15 * * * *", "2026-11-24T10:44:59", "2026-11-24T10:30:00"),
        ("0 0 6 * * 1-5", "2026-11-29T12:00:00", "2026-11-27T06:00:00"),  # Sunday -> Friday
        ("0 0 6 * * Mon", "2026-11-24T12:00:00", "2026-11-23T06:00:00"),
        ("30 5 4 1 * *", "2026-11-24T00:00:00", "2026-11-01T04:05:30"),
        ("0 0 0 * Jan *", "2026-11-24T00:00:00", "2026-01-31T00:00:00"),
        ("0 0 12 * * 0,6", "2026-11-24T00:00:00", "2026-11-22T12:00:00"),
    ],
)
def test_previous_occurrence(expr: str, now: str, expected: str) -> None:
    assert Schedule.parse(expr).previous(at(now)) == at(expected)


@pytest.mark.parametrize("expr", ["0 30 2 * *", "0 61 2 * * *", "0 30 2 * * Funday", "0 */0 * * * *"])
def test_invalid_expressions_name_the_setting(expr: str) -> None:
    with pytest.raises(ConfigurationError, match="AUDIT_SCHEDULE"):
        Schedule.parse(expr)
