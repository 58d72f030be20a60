"""The timer's request ids: the scheduled occurrence a firing belongs to.

The timer derives its request id from the scheduled occurrence, so a timer that fires twice
for one occurrence (host restart, past-due catch-up, two instances) enqueues the same
request twice and the audit runs once.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from licensing.ncrontab import Schedule

__all__ = ["EARLY_TOLERANCE", "occurrence", "occurrence_request_id"]

# How early a firing may reach the app and still be that occurrence's. The host's timer can fire a moment
# early (azure-functions-host issues #7398 and #8254 report firings tens of milliseconds to seconds before the
# scheduled second); a floor of "now" then named the previous night, already done, and skipped the night.
EARLY_TOLERANCE: Final = timedelta(minutes=1)


def occurrence(schedule: str, now: datetime) -> datetime:
    """The scheduled occurrence a firing at ``now`` belongs to: the next one when it is at most
    :data:`EARLY_TOLERANCE` (and less than half the gap to the one before) ahead, else the latest one at or
    before ``now`` (a late or past-due firing)."""
    parsed = Schedule.parse(schedule)
    latest = parsed.previous(now)
    upcoming = parsed.next_after(now)
    gap = upcoming - now
    if gap <= EARLY_TOLERANCE and gap * 2 < upcoming - latest:
        return upcoming
    return latest


def occurrence_request_id(schedule: str, now: datetime) -> str:
    """``schedule-20261124T023000Z``: the same for every firing of one scheduled occurrence, early ones included."""
    return f"schedule-{occurrence(schedule, now):%Y%m%dT%H%M%SZ}"
