"""The timer's request ids: the scheduled occurrence a firing belongs to.

The timer derives its request id from the scheduled occurrence, so a timer that fires twice
for one occurrence (host restart, past-due catch-up, two instances) enqueues the same
request twice and the audit runs once.
"""

from __future__ import annotations

from datetime import datetime

from licensing.ncrontab import Schedule

__all__ = ["occurrence_request_id"]


def occurrence_request_id(schedule: str, now: datetime) -> str:
    """``schedule-20261124T023000Z``: the same for every firing of one scheduled occurrence."""
    return f"schedule-{Schedule.parse(schedule).previous(now):%Y%m%dT%H%M%SZ}"
