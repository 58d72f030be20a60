"""Subscriptions that end soon and need someone: trials, subscriptions already in grace or suspended, and the
SKUs an admin watches. Month-to-month subscriptions that simply roll over are not news."""

from __future__ import annotations

from datetime import timedelta

from licensing.model import FindingKind, Scope, Subscription
from licensing.rules.base import Facts, RuleContext, RuleResult, as_utc, make_finding, plural

__all__ = ["evaluate_subscription_renewal", "renewal_due"]

# companySubscription.status values that mean the seats are already in trouble (the resource page's values).
_TROUBLE = frozenset({"warning", "suspended"})


def renewal_due(sub: Subscription, ctx: RuleContext, part_number: str) -> str | None:
    """Why this subscription needs attention before its next lifecycle date, or None.

    ``nextLifecycleDateTime`` is "when the subscription will move to the next state ... if not renewed"
    (https://learn.microsoft.com/graph/api/resources/companysubscription). A paid, enabled subscription reaching it
    usually renews itself (month-to-month ones do every month), so it counts only when its SKU is watched.
    """
    if sub.next_lifecycle is None or sub.status.casefold() in ("deleted", "lockedout"):
        return None
    now = as_utc(ctx.now)
    when = as_utc(sub.next_lifecycle)
    if not now <= when <= now + timedelta(days=ctx.renewal_warn_days):
        return None
    watched = {s.casefold() for s in ctx.renewal_watch_skus}
    if sub.is_trial:
        return "a trial"
    if sub.status.casefold() in _TROUBLE:
        return f"already {sub.status.lower()}"
    if sub.sku_id.casefold() in watched or part_number.casefold() in watched:
        return "on RENEWAL_WATCH_SKUS"
    return None


def evaluate_subscription_renewal(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult()
    snap = facts.snapshot
    if not snap.subscriptions_read:
        result.not_applicable = "subscriptions not readable (/directory/subscriptions needs Organization.Read.All)"
        return result
    earliest: dict[str, tuple[Subscription, str]] = {}
    # Subscriptions are read tenant-wide; a group-scoped audit judges only the SKUs its group assigns (exactly as
    # the tenant audit judges them), never a product unrelated to the group: it must not open or resolve those.
    group_skus = {s.sku_id for s in facts.skus} | {k for g in facts.groups for k in g.sku_ids}
    for sub in snap.subscriptions:
        sku = facts.sku_index.get(sub.sku_id)
        if not facts.sku_in_scope(sub.sku_id) or (facts.scope is Scope.GROUP and sub.sku_id not in group_skus):
            continue
        if sku is not None and sku.applies_to.casefold() == "company":
            continue  # Company SKUs (tenant-wide add-ons) never alert, as in the seat rules
        part = facts.part_number(sub.sku_id) or sub.sku_part_number
        why = renewal_due(sub, ctx, part)
        if why is None:
            continue
        known = earliest.get(sub.sku_id)
        if known is None or (sub.next_lifecycle or ctx.now) < (known[0].next_lifecycle or ctx.now):
            earliest[sub.sku_id] = (sub, why)
    for sku_id, (sub, why) in sorted(earliest.items()):
        assert sub.next_lifecycle is not None
        days = max(0, (as_utc(sub.next_lifecycle) - as_utc(ctx.now)).days)
        seats = f"{plural(sub.total_licenses, 'seat')}, " if sub.total_licenses else ""
        message = (
            f"A subscription of {facts.product(sku_id)} ({seats}{why}) reaches its next lifecycle date on "
            f"{as_utc(sub.next_lifecycle):%Y-%m-%d}, in {plural(days, 'day')}: renew it, buy it, or plan for its "
            "users to lose access"
        )
        result.findings.append(make_finding(FindingKind.SUBSCRIPTION_RENEWAL, message, facts, sku_id=sku_id))
    return result
