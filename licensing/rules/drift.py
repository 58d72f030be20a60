"""``license_drift``: a group licensing-audit apply manages no longer holds its last applied desired state.

Compared per group: the products it assigns (the group's ``assignedLicenses``) and, per product, the disabled
plans, which the snapshot carries on the members' ``licenseAssignmentStates`` (``disabledPlans`` of the states the
group assigned; https://learn.microsoft.com/graph/api/resources/licenseassignmentstate). A group without members
in a state can only be compared by products. Only with a journal (RuleContext.applied): no journal, no drift.
"""

from __future__ import annotations

from collections import Counter

from licensing.changes import Product
from licensing.model import FindingKind, Scope
from licensing.rules.base import Facts, RuleContext, RuleResult, make_finding, quote

__all__ = ["evaluate_license_drift"]


def _disabled_by_members(facts: Facts, group_id: str) -> dict[str, tuple[str, ...]]:
    """Per SKU the disabled plans most of the group's states show (all of them, unless mid-processing)."""
    seen: dict[str, Counter[tuple[str, ...]]] = {}
    for user in facts.users.values():
        for a in user.assignments:
            if a.assigned_by_group == group_id:
                seen.setdefault(a.sku_id, Counter())[tuple(sorted(a.disabled_plans))] += 1
    return {sku: counts.most_common(1)[0][0] for sku, counts in seen.items()}


def _describe(
    facts: Facts, applied: tuple[Product, ...], now_skus: set[str], disabled: dict[str, tuple[str, ...]]
) -> list[str]:
    want = {p.sku_id: p for p in applied}
    parts: list[str] = []
    added = sorted(now_skus - want.keys())
    removed = sorted(want.keys() - now_skus)
    if added:
        parts.append("added " + ", ".join(facts.product(s) for s in added))
    if removed:
        parts.append("removed " + ", ".join(facts.product(s) for s in removed))
    for sku in sorted(now_skus & want.keys()):
        if sku in disabled and set(disabled[sku]) != set(want[sku].disabled_plans):
            on = sorted(set(want[sku].disabled_plans) - set(disabled[sku]))
            off = sorted(set(disabled[sku]) - set(want[sku].disabled_plans))
            what = "; ".join(x for x in (f"turned on {', '.join(on)}" if on else "",
                                         f"turned off {', '.join(off)}" if off else "") if x)  # fmt: skip
            parts.append(f"disabled plans of {facts.product(sku)} changed ({what})")
    return parts


def evaluate_license_drift(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult()
    if ctx.applied is None:
        return result  # no journal: no managed group, nothing to compare, and nothing said (no noise)
    if facts.scope is not Scope.TENANT:
        result.not_applicable = "compared on tenant audits only"
        return result
    if facts.groups_unreadable:
        result.blocked = f"groups could not be read: {facts.groups_unreadable}"
        return result
    licensed = {g.id: g for g in facts.groups}
    for group_id, applied in sorted(ctx.applied.items()):
        group = licensed.get(group_id)
        now_skus = set(group.sku_ids) if group is not None else set()
        disabled = _disabled_by_members(facts, group_id) if facts.users_unreadable is None else {}
        parts = _describe(facts, applied, now_skus, disabled)
        if not parts:
            continue
        name = facts.group_name(group_id) if group is not None else group_id
        gone = " (it assigns no licence now, or was deleted)" if group is None else ""
        message = (
            f"Group {quote(name)}{gone} changed outside licensing-audit apply since the last applied desired state: "
            + "; ".join(parts)
        )
        result.findings.append(make_finding(FindingKind.LICENSE_DRIFT, message, facts, group_id=group_id))
    return result
