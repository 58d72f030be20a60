"""What the report's seat views (the terminal table, the HTML chart) say of a SKU: short, low, idle or ok, and
whether who waits for a seat was read at all."""

from __future__ import annotations

from licensing.model import AuditReport, FindingKind, Part, SkuSummary

__all__ = ["seat_state", "users_unread"]


def users_unread(report: AuditReport) -> bool:
    """The users scan was not read (or not trusted): the run records each unreadable whole part as one problem line
    "users: <reason>" (licensing.pipeline.conclusion); a single user that could not be read is "user <id>: …"."""
    prefix = f"{Part.USERS.value}: "
    return any(error.startswith(prefix) for error in report.run.errors)


def seat_state(sku: SkuSummary, kinds: set[str], *, users_read: bool = True) -> str:
    """``short``, ``low``, ``idle`` (nothing enabled, nothing used) or ``ok``. Who waits comes from the users scan:
    without it only the SKU's own counts and the findings that ran say short or low."""
    waiting = users_read and sku.waiting_users > max(sku.available, 0)
    if FindingKind.SEAT_SHORTAGE in kinds or sku.consumed > sku.enabled or waiting:
        return "short"
    if kinds & {FindingKind.SEAT_LOW, FindingKind.SEAT_FORECAST, FindingKind.UNITS_EXPIRING}:
        return "low"
    if sku.enabled == 0 and sku.consumed == 0:
        return "idle"
    return "ok"
