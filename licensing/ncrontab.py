"""NCRONTAB schedules, the timer trigger's six-field form: parse one, find its previous and next occurrence.

Settings validate ``AUDIT_SCHEDULE`` with it at start-up, and the timer derives its request ids from
it (:mod:`licensing.pipeline.schedule`), so the two can never disagree. Schedules are UTC: Linux plans
ignore time zones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from licensing.errors import ConfigurationError

__all__ = ["Schedule"]

_NAMES = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
    "sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6,
}  # fmt: skip
# (name, low, high) of the six NCRONTAB fields: {second} {minute} {hour} {day} {month} {day-of-week}
_FIELDS = (("second", 0, 59), ("minute", 0, 59), ("hour", 0, 23), ("day", 1, 31), ("month", 1, 12), ("weekday", 0, 6))


def _value(token: str, low: int, high: int) -> int:
    token = token.lower()
    value = _NAMES[token] if token in _NAMES else int(token)
    if high == 6 and value == 7:  # Sunday may be written 7
        value = 0
    if not low <= value <= high:
        raise ValueError(token)
    return value


def _parse_field(text: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        part, step = item, 1
        if "/" in item:
            part, step_text = item.split("/", 1)
            step = int(step_text)
            if step < 1:
                raise ValueError(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            a, b = part.split("-", 1)
            start, end = _value(a, low, high), _value(b, low, high)
        else:
            start = _value(part, low, high)
            end = high if step > 1 else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A parsed six-field NCRONTAB expression."""

    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    day_restricted: bool
    weekday_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ConfigurationError(f"AUDIT_SCHEDULE={expression!r} is invalid: expected 6 NCRONTAB fields")
        try:
            sets = [_parse_field(p, lo, hi) for p, (_, lo, hi) in zip(parts, _FIELDS, strict=True)]
        except (ValueError, KeyError):
            raise ConfigurationError(f"AUDIT_SCHEDULE={expression!r} is invalid: not an NCRONTAB expression") from None
        seconds, minutes, hours, days, months, weekdays = sets
        return cls(
            expression,
            seconds,
            minutes,
            hours,
            days,
            months,
            weekdays,
            day_restricted=parts[3] != "*",
            weekday_restricted=parts[5] != "*",
        )

    def _day_matches(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        # Cron semantics: when both day fields are restricted, either one matching is enough.
        if self.day_restricted and self.weekday_restricted:
            return dom or dow
        return dom and dow

    def previous(self, now: datetime) -> datetime:
        """The latest occurrence at or before ``now`` (UTC), looking back at most about a year."""
        now = now.astimezone(UTC).replace(microsecond=0)
        day = now.replace(hour=0, minute=0, second=0)
        for _ in range(370):
            if self._day_matches(day):
                limit = now if day.date() == now.date() else day.replace(hour=23, minute=59, second=59)
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        for second in sorted(self.seconds, reverse=True):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate <= limit:
                                return candidate
            day -= timedelta(days=1)
        raise ConfigurationError(f"AUDIT_SCHEDULE={self.expression!r} has no occurrence in the past year")

    def next_after(self, now: datetime) -> datetime:
        """The first occurrence after ``now`` within a year (366 days); ConfigurationError when there is none.

        A schedule that cannot fire within a year (30 February, or 29 February three years out) is
        a typo, not a nightly audit.
        """
        now = now.astimezone(UTC).replace(microsecond=0)
        day = now.replace(hour=0, minute=0, second=0)
        for _ in range(367):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        for second in sorted(self.seconds):
                            candidate = day.replace(hour=hour, minute=minute, second=second)
                            if candidate > now:
                                return candidate
            day += timedelta(days=1)
        raise ConfigurationError(f"AUDIT_SCHEDULE={self.expression!r} does not fire within a year")
