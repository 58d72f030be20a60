"""The ground truth of a simulated tenant: docs/findings.md applied to the generated data (default settings,
tenant scope), independently of ``licensing.rules``; the integration tests compare the two."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from licensing.model import FindingKind, Severity
from licensing.sandbox.tenant import (
    ENABLED,
    EXT_ACCEPTED,
    EXT_PENDING,
    EXT_UPN,
    GUEST,
    INVITED,
    NO_GROUP,
    PROCESSING_COMPLETE,
    ExpectedFinding,
    SandboxTenant,
    SkuState,
)
from licensing.settings import DEFAULT_EXPECTED_GROUP_SKUS

__all__ = ["ground_truth", "is_b2b"]


def is_b2b(tenant: SandboxTenant, u: int) -> bool:
    return bool(tenant.flags[u] & (GUEST | EXT_PENDING | EXT_ACCEPTED | INVITED | EXT_UPN))


def _lifecycle_only(s: SkuState) -> bool:
    """docs/findings.md: a SKU without active units (all in grace, suspended or locked out, or not Enabled)."""
    return s.capability_status != "Enabled" or (s.enabled <= 0 and s.warning + s.suspended + s.locked_out > 0)


def _unseen_since(t: SandboxTenant) -> datetime:
    """Since when an old account without a successful sign-in is known to have none: its creation (the STAMP, or a
    year before the tenant's now when earlier) or 2023-12-01, whichever is later."""
    created = min(datetime(2024, 3, 1, 9, 30, tzinfo=UTC), t.as_of - timedelta(days=365))
    return max(created, datetime(2023, 12, 1, tzinfo=UTC))


def ground_truth(t: SandboxTenant) -> tuple[ExpectedFinding, ...]:
    """docs/findings.md, default settings, tenant scope, no SKU history (so no seat_forecast)."""
    out: list[ExpectedFinding] = []
    crit, warn, info = Severity.CRITICAL, Severity.WARNING, Severity.INFO
    licensed = [g for g in t.groups if g.licensed]
    waiting: dict[int, set[int]] = {}

    def short(k: int) -> bool:
        sku = t.skus[k]
        return sku.available <= 0 or _lifecycle_only(sku)

    for g in licensed:
        gid = g.id
        if g.dynamic and g.rule_processing == "Paused":
            out.append(ExpectedFinding(FindingKind.DYNAMIC_GROUP_PAUSED, warn, group_id=gid))
        # The sandbox's rules (with and without hyphens, in any case) either restrict user.userType to members or
        # do not mention it at all.
        if g.dynamic and "user.usertype" not in (g.membership_rule or "").lower():
            out.append(ExpectedFinding(FindingKind.DYNAMIC_RULE_ADMITS_GUESTS, warn, group_id=gid))
        if g.processing_state != PROCESSING_COMPLETE:
            out.append(ExpectedFinding(FindingKind.PROCESSING_INCOMPLETE, info, group_id=gid))
        if g.member_count == 0:
            out.append(ExpectedFinding(FindingKind.EMPTY_LICENSED_GROUP, info, group_id=gid))
        out.extend(
            ExpectedFinding(FindingKind.NESTED_GROUP, warn, group_id=gid, member_group_id=t.groups[mg].id)
            for mg in g.member_groups
        )
        for u in g.users:
            uid = t.user_id(u)
            if is_b2b(t, u):
                out.append(ExpectedFinding(FindingKind.B2B_MEMBER, warn, group_id=gid, user_id=uid))
            mine = [st for st in t.user_states(u) if st.group == g.index]
            counted = {st.sku for st in mine if st.error == "CountViolation"}
            causes = {k for k in counted if short(k)}
            active_here = False
            for st in mine:
                if st.error:
                    sku = t.skus[st.sku]
                    sev = crit if st.error == "CountViolation" else warn
                    out.append(ExpectedFinding(FindingKind.LICENSE_ERROR, sev, sku.sku_id, gid, uid, error=st.error))
                    # All or nothing: waiting for a SKU with seats because another SKU of the group has none.
                    blocked = bool(causes) and causes != counted and st.sku not in causes
                    if st.error == "CountViolation" and not blocked:
                        waiting.setdefault(st.sku, set()).add(u)
                else:
                    active_here = True
            if active_here and not t.flags[u] & ENABLED:
                out.append(ExpectedFinding(FindingKind.DISABLED_USER_LICENSED, info, group_id=gid, user_id=uid))
            # INACTIVE_DAYS 90: 200 days since the last successful sign-in; or none (failed attempts, the
            # placeholder and empty values are none), with the account and the record of successful sign-ins
            # (kept since 2023-12-01, not backfilled) both older than 90 days.
            days = t.sign_in_days_ago(u)
            never_old = days is None and not t.created_recently(u) and _unseen_since(t) < t.as_of - timedelta(days=90)
            # A tenant without Entra ID P1/P2 refuses sign-in activity: the rule is not evaluated there.
            stale = never_old or (days is not None and days > 90)
            if active_here and t.flags[u] & ENABLED and t.spec.entra_premium and stale:
                out.append(ExpectedFinding(FindingKind.INACTIVE_USER_LICENSED, info, group_id=gid, user_id=uid))
    # Former members still holding a group's seat because the removal failed (license_error, any membership).
    for u, left in sorted(t.removed.items()):
        for g_index, k, err in left:
            gid, sku_id = t.groups[g_index].id, t.skus[k].sku_id
            out.append(ExpectedFinding(FindingKind.LICENSE_ERROR, warn, sku_id, gid, t.user_id(u), error=err))
    for u in range(t.user_count):
        states = t.user_states(u)
        direct = {s.sku for s in states if s.group == NO_GROUP}
        if not direct:
            continue
        via_group = {s.sku for s in states if s.group != NO_GROUP and s.state == "Active"}
        out.extend(
            ExpectedFinding(FindingKind.REDUNDANT_DIRECT_ASSIGNMENT, info, t.skus[k].sku_id, user_id=t.user_id(u))
            for k in sorted(direct & via_group)
        )
    expected = {e.lower() for e in DEFAULT_EXPECTED_GROUP_SKUS}
    assigned = {k for g in licensed for k in g.sku_indices}
    for s in t.skus:
        if s.applies_to != "User":
            continue
        w = len(waiting.get(s.index, ()))
        lifecycle = _lifecycle_only(s)
        shortage = not lifecycle and (s.consumed > s.enabled + s.warning or (w > 0 and w > max(s.available, 0)))
        if shortage:
            out.append(ExpectedFinding(FindingKind.SEAT_SHORTAGE, crit, s.sku_id))
        elif not lifecycle and s.enabled > 0 and s.available < max(5, 5 / 100 * s.enabled):
            out.append(ExpectedFinding(FindingKind.SEAT_LOW, warn, s.sku_id))
        if s.suspended > 0 or s.locked_out > 0 or s.capability_status in ("Suspended", "LockedOut", "Deleted"):
            out.append(ExpectedFinding(FindingKind.UNITS_EXPIRING, crit, s.sku_id))
        elif s.warning > 0 or s.capability_status == "Warning":
            out.append(ExpectedFinding(FindingKind.UNITS_EXPIRING, warn, s.sku_id))
        in_expected = s.part_number.lower() in expected or s.sku_id.lower() in expected
        if in_expected and s.enabled > 0 and s.index not in assigned:
            out.append(ExpectedFinding(FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED, warn, s.sku_id))
    # The server's subscriptions (sandbox handlers): the free SKU's is a trial ending in 10 days and the warning
    # SKU's expired one is in grace until 20 days from now: both inside RENEWAL_WARN_DAYS (30). The month-to-month
    # one (12 days) and the annual ones are not news; the suspended one ends in 50 days.
    for s in t.skus:
        if s.applies_to == "User" and (s.part_number == "FLOW_FREE" or s.warning > 0):
            out.append(ExpectedFinding(FindingKind.SUBSCRIPTION_RENEWAL, warn, s.sku_id))
    # A license for group-based licensing for every direct user member of a licensed group: the seats of the SKUs
    # that carry the AAD_PREMIUM or AAD_PREMIUM_P2 plan, or are Office 365 E3 and above (User SKUs, enabled units).
    beneficiaries = {u for g in licensed for u in g.users}
    p1 = sum(
        max(s.enabled, 0)
        for s in t.skus
        if s.applies_to == "User"
        and (
            any(p.name in ("AAD_PREMIUM", "AAD_PREMIUM_P2") for p in s.plans)
            or s.part_number in ("ENTERPRISEPACK", "ENTERPRISEPREMIUM")
        )
    )
    if len(beneficiaries) > p1:
        out.append(ExpectedFinding(FindingKind.P1_COVERAGE_SHORT, warn))
    return tuple(sorted(out, key=lambda f: (f.kind, f.id)))
