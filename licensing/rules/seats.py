"""Seat rules, one finding per User SKU: shortage, low, forecast, expiring units, expected group assignment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from licensing.model import FindingKind, Scope, Severity, Sku, SkuDay
from licensing.rules.base import Facts, RuleContext, RuleResult, make_finding, plural
from licensing.rules.reclaim import reclaimable

__all__ = [
    "MIN_FORECAST_POINTS",
    "Projection",
    "evaluate_expected_sku",
    "evaluate_seat_forecast",
    "evaluate_seat_low",
    "evaluate_seat_shortage",
    "evaluate_units_expiring",
    "forecast_days_left",
    "is_over",
    "is_shortage",
    "low_threshold",
    "project_seats",
]

MIN_FORECAST_POINTS = 7


def _user_skus(facts: Facts) -> list[Sku]:
    # Company SKUs (tenant-wide add-ons) have no per-user seats: listed in the report, never a finding.
    return [s for s in facts.skus if s.applies_to.casefold() == "user"]


def _seat_skus(facts: Facts) -> list[Sku]:
    """User SKUs with active units: a SKU whose units are all in grace, suspended or locked out has a
    lifecycle problem (units_expiring), and "buy more seats" would be the wrong advice (Sku.in_lifecycle_only)."""
    return [s for s in _user_skus(facts) if not s.in_lifecycle_only]


def _undercount_note(facts: Facts) -> str | None:
    if facts.scope is Scope.GROUP:
        # Waiting users of other groups are not read: what this run does not see may still wait, so it opens
        # what it sees and resolves nothing (alerts.policy skips a kind whose outcome carries a reason).
        return "waiting users outside this group were not read (group-scoped audit): a tenant audit judges the seats"
    if facts.scope is Scope.SKU:
        # Only the groups assigning the SKU are read (and only its counters): users waiting outside them, and the
        # other products of an all-or-nothing group, are not seen.
        return "waiting users outside the groups assigning this SKU were not read (SKU-scoped audit)"
    if facts.users_unreadable:
        return "waiting users may be undercounted: users could not be read"
    if facts.unreadable_members:
        groups = plural(len(facts.unreadable_members), "group")
        return f"waiting users may be undercounted: members of {groups} could not be read"
    return None


def _blocked(facts: Facts) -> str | None:
    return f"SKUs could not be read: {facts.skus_unreadable}" if facts.skus_unreadable else None


def is_over(sku: Sku) -> bool:
    """More seats in use than the active and grace units hold (units in grace still serve their users:
    https://learn.microsoft.com/graph/api/resources/licenseunitsdetail, ``warning``)."""
    return sku.consumed > sku.enabled + sku.warning


def is_shortage(sku: Sku, waiting: int) -> bool:
    """docs/findings.md: over (see is_over), or users waiting that the free seats cannot cover; never for a
    SKU without active units (a lifecycle problem, see units_expiring)."""
    if sku.in_lifecycle_only:
        return False
    return is_over(sku) or (waiting > 0 and waiting > max(sku.available, 0))


def low_threshold(sku: Sku, ctx: RuleContext) -> float:
    return max(float(ctx.seat_min_free), ctx.seat_min_free_pct / 100.0 * sku.enabled)


def _counts(sku: Sku) -> str:
    return f"enabled {sku.enabled}, consumed {sku.consumed}"


def _buy_or_reclaim(facts: Facts, ctx: RuleContext, sku_id: str, need: int) -> str:
    """ "; buy 12 or reclaim 7 (3 disabled, 4 inactive, 2 redundant direct assignments)": what it takes, two ways."""
    found = reclaimable(facts, ctx, sku_id)
    if found is None:
        return f"; buy {need}" if need else ""
    return f"; buy {need} or reclaim {found.seats} ({found.text()})"


def evaluate_seat_shortage(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult(blocked=_blocked(facts), note=_undercount_note(facts))
    if result.blocked:
        return result
    for sku in _seat_skus(facts):
        waiting = len(facts.waiting.get(sku.sku_id, ()))
        if not is_shortage(sku, waiting):
            continue
        product = facts.product(sku.sku_id)
        if is_over(sku):
            held = sku.enabled + sku.warning
            over = sku.consumed - held
            grace = f" (and {sku.warning} in grace)" if sku.warning else ""
            message = (
                f"{product}: {plural(sku.consumed, 'seat is', 'seats are')} in use but only {sku.enabled} "
                f"{'is' if sku.enabled == 1 else 'are'} enabled{grace} ({over} over)"
            )
            if waiting:
                message += f", and {plural(waiting, 'user is', 'users are')} waiting for a seat"
            need = over + waiting
        else:
            free = max(sku.available, 0)
            message = (
                f"{product}: {plural(waiting, 'user is', 'users are')} waiting for a seat and only "
                f"{free} {'is' if free == 1 else 'are'} free ({_counts(sku)})"
            )
            need = max(waiting - free, 0)
        message += _buy_or_reclaim(facts, ctx, sku.sku_id, need)
        result.findings.append(make_finding(FindingKind.SEAT_SHORTAGE, message, facts, sku_id=sku.sku_id))
    return result


def evaluate_seat_low(facts: Facts, ctx: RuleContext) -> RuleResult:
    if facts.scope is not Scope.TENANT:
        # Low or short is decided by the users waiting anywhere in the tenant, which a scoped audit does not read:
        # judged here it would open "low" where the tenant audit says "short" (and the nightly resolve it).
        return RuleResult(not_applicable="a tenant audit judges it (users waiting outside this scope decide)")
    result = RuleResult(blocked=_blocked(facts), note=_undercount_note(facts))
    if result.blocked:
        return result
    for sku in _seat_skus(facts):
        if sku.enabled <= 0 or is_shortage(sku, len(facts.waiting.get(sku.sku_id, ()))):
            continue
        threshold = low_threshold(sku, ctx)
        if sku.available < threshold:
            shown = math.ceil(threshold)
            message = (
                f"{facts.product(sku.sku_id)}: only {sku.available} of {sku.enabled} seats "
                f"{'is' if sku.available == 1 else 'are'} free "
                f"(alert below {shown}; consumed {sku.consumed})"
            )
            found = reclaimable(facts, ctx, sku.sku_id)
            if found is not None and (found.seats or found.redundant):
                message += f"; reclaim {found.seats} ({found.text()})"
            result.findings.append(make_finding(FindingKind.SEAT_LOW, message, facts, sku_id=sku.sku_id))
    return result


def _window(series: Sequence[SkuDay], days: int) -> list[SkuDay]:
    """The points of the last ``days`` calendar days ending at the latest point, one per day (last wins)."""
    by_day = {d.day: d for d in sorted(series, key=lambda d: d.day)}
    if not by_day:
        return []
    latest = max(by_day)
    start = latest - timedelta(days=days - 1)
    return [by_day[day] for day in sorted(by_day) if day >= start]


@dataclass(frozen=True, slots=True)
class Projection:
    """Least-squares line of ``consumed`` over the forecast window (docs/findings.md, seat_forecast)."""

    slope: float  # seats a day
    intercept: float  # fitted consumed on ``latest``
    latest: date
    enabled: int  # the latest enabled, the line's target
    days_left: float  # from ``latest`` until the line reaches ``enabled`` (<= 0: already there)

    def value_at(self, day: date) -> float:
        return self.intercept + self.slope * (day - self.latest).days

    @property
    def reaches_on(self) -> date:
        return self.latest + timedelta(days=max(0, math.ceil(self.days_left)))


def project_seats(series: Sequence[SkuDay], days: int) -> Projection | None:
    """The consumption trend of one SKU over the window, or None with fewer than 7 points or no rise.

    The one implementation of the forecast: the rule, the HTML chart and the terminal use it.
    """
    points = _window(series, days)
    if len(points) < MIN_FORECAST_POINTS:
        return None
    latest = points[-1]
    xs = [float((p.day - latest.day).days) for p in points]
    ys = [float(p.consumed) for p in points]
    n = float(len(points))
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    if slope <= 0:
        return None
    intercept = mean_y - slope * mean_x  # the fitted value at x = 0, the latest day
    return Projection(slope, intercept, latest.day, latest.enabled, (latest.enabled - intercept) / slope)


def forecast_days_left(series: Sequence[SkuDay], days: int) -> tuple[float, float] | None:
    """(slope per day, days until the trend reaches the latest ``enabled``), or None (see project_seats)."""
    projection = project_seats(series, days)
    return None if projection is None else (projection.slope, projection.days_left)


def evaluate_seat_forecast(facts: Facts, ctx: RuleContext) -> RuleResult:
    if facts.scope is Scope.GROUP:
        return RuleResult(not_applicable="not evaluated in a group-scoped audit (partial data)")
    if ctx.history is None:
        return RuleResult(not_applicable="no SKU history (needs a store)")
    result = RuleResult(blocked=_blocked(facts))
    if result.blocked:
        return result
    evaluated = 0
    for sku in _seat_skus(facts):
        series = ctx.history.get(sku.sku_id, ())
        trend = forecast_days_left(series, ctx.forecast_days)
        if len(_window(series, ctx.forecast_days)) >= MIN_FORECAST_POINTS:
            evaluated += 1
        if trend is None or is_shortage(sku, len(facts.waiting.get(sku.sku_id, ()))):
            continue
        slope, days_left = trend
        if days_left > ctx.forecast_days:
            continue
        enabled = _window(series, ctx.forecast_days)[-1].enabled
        when = "now" if days_left <= 0 else f"in about {max(1, math.ceil(days_left))} days"
        message = (
            f"{facts.product(sku.sku_id)}: at the current trend (+{slope:.1f} seats a day) "
            f"the {enabled} seats run out {when} (consumed {sku.consumed})"
        )
        result.findings.append(make_finding(FindingKind.SEAT_FORECAST, message, facts, sku_id=sku.sku_id))
    if evaluated == 0 and _seat_skus(facts):
        result.not_applicable = f"fewer than {MIN_FORECAST_POINTS} days of SKU history"
    return result


def evaluate_units_expiring(facts: Facts, ctx: RuleContext) -> RuleResult:
    """Units in grace (warning), suspended or locked out; a SKU with no active unit at all says so."""
    result = RuleResult(blocked=_blocked(facts))
    if result.blocked:
        return result
    for sku in _user_skus(facts):
        product = facts.product(sku.sku_id)
        parts = [f"{n} {what}" for n, what in ((sku.suspended, "suspended"), (sku.locked_out, "locked out")) if n]
        status = sku.capability_status.strip().casefold()
        if parts or status in ("suspended", "lockedout", "deleted"):
            what = " and ".join(parts) + " seats" if parts else f"subscription status {sku.capability_status}"
            message = f"{product}: {what}: the subscription has expired or was cancelled ({_counts(sku)})"
            severity = Severity.CRITICAL
        elif sku.warning > 0 or status == "warning":
            message = (
                f"{product}: {plural(sku.warning, 'seat is', 'seats are')} in a grace period and will be suspended "
                "unless renewed "
                f"({_counts(sku)})"
            )
            severity = Severity.WARNING
        else:
            continue
        if sku.in_lifecycle_only:
            message += f"; no seat is active, so the {sku.consumed} users holding it depend on renewal"
        result.findings.append(
            make_finding(FindingKind.UNITS_EXPIRING, message, facts, severity=severity, sku_id=sku.sku_id)
        )
    return result


def evaluate_expected_sku(facts: Facts, ctx: RuleContext) -> RuleResult:
    if facts.scope is Scope.GROUP:
        return RuleResult(not_applicable="not evaluated in a group-scoped audit (other groups were not read)")
    if facts.skus_unreadable:
        return RuleResult(blocked=f"SKUs could not be read: {facts.skus_unreadable}")
    if facts.groups_unreadable:
        return RuleResult(blocked=f"groups could not be read: {facts.groups_unreadable}")
    assigned = {sku_id for g in facts.groups for sku_id in g.sku_ids}
    result = RuleResult()
    for sku in _user_skus(facts):
        if sku.enabled <= 0 or not ctx.is_expected(sku) or sku.sku_id in assigned:
            continue
        message = (
            f"{facts.product(sku.sku_id)}: no group assigns it ({sku.consumed} of {sku.enabled} seats in use, "
            "assigned directly); it is expected to be licensed through groups"
        )
        result.findings.append(
            make_finding(FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED, message, facts, sku_id=sku.sku_id)
        )
    return result
