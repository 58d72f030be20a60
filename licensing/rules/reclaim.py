"""Seats that can be reclaimed before buying more: disabled and inactive holders, and direct assignments that a
group's assignment makes redundant without losing a service plan; and the inactive_user_licensed rule."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from licensing.model import FindingKind, LicenseAssignment, User
from licensing.rules.base import Facts, RuleContext, RuleResult, as_utc, make_finding, plural, quote

__all__ = [
    "Reclaim",
    "direct_adds_nothing",
    "evaluate_inactive_user_licensed",
    "holds",
    "is_inactive",
    "plans_lost",
    "reclaimable",
]

_SEAT_STATES: Final = frozenset({"active", "activewitherror"})  # states that hold a seat (licenseAssignmentState)


def is_inactive(user: User, now: datetime, days: int) -> bool:
    """No successful sign-in for ``days``: the last one is older, or there was none and both the account and the
    record of sign-ins (``sign_ins_since``: 2023-12-01 for lastSuccessfulSignInDateTime) are older than that.
    An account created within the period is not inactive; one whose age is unknown is not called inactive."""
    cutoff = as_utc(now) - timedelta(days=days)
    if user.last_sign_in is not None:
        return as_utc(user.last_sign_in) < cutoff
    if user.created is None:
        return False
    known = max(as_utc(user.created), as_utc(user.sign_ins_since)) if user.sign_ins_since else as_utc(user.created)
    return known < cutoff


def _since(user: User) -> str:
    if user.last_sign_in is not None:
        return f"last signed in {as_utc(user.last_sign_in):%Y-%m-%d}"
    if user.sign_ins_since is not None and (user.created is None or as_utc(user.created) < user.sign_ins_since):
        return f"not signed in successfully since {user.sign_ins_since:%Y-%m-%d}"
    return "never signed in"


def holds(user: User, sku_id: str) -> bool:
    """Whether the user holds a seat of the SKU from any source (direct or a group).

    A state ``Error`` holds no seat (a user holding it only in an error state still needs one); Active and
    ActiveWithError do (https://learn.microsoft.com/graph/api/resources/licenseassignmentstate). Without states for
    the SKU, ``assignedLicenses`` decides.
    """
    states = [a for a in user.assignments if a.sku_id == sku_id]
    if states:
        return any(a.state.casefold() in _SEAT_STATES for a in states)
    return sku_id in user.assigned_sku_ids


def direct_adds_nothing(direct: LicenseAssignment, inherited: list[LicenseAssignment]) -> bool:
    """Whether removing the direct assignment loses no service plan: every plan it enables, some group's enables.

    A plan is enabled unless the assignment lists it in ``disabledPlans``; so the direct one adds nothing exactly
    when the plans all groups disable are disabled by the direct one too (Microsoft's migration guidance: compare
    the assignments before removing the direct one, https://learn.microsoft.com/entra/identity/users/licensing-groups-migrate-users).
    """
    return plans_lost(direct, inherited) == frozenset()


def plans_lost(direct: LicenseAssignment, inherited: list[LicenseAssignment]) -> frozenset[str] | None:
    """The servicePlanIds the direct assignment enables and no inherited one does (what removing it loses); None
    when nothing is inherited (everything would go). ``licensing-audit migrate`` names them."""
    if not inherited:
        return None
    off_everywhere = set(inherited[0].disabled_plans).intersection(*(a.disabled_plans for a in inherited[1:]))
    return frozenset(off_everywhere - set(direct.disabled_plans))


def redundant_is_safe(user: User, sku_id: str) -> bool:
    direct = [a for a in user.assignments if a.sku_id == sku_id and a.assigned_by_group is None]
    inherited = [
        a
        for a in user.assignments
        if a.sku_id == sku_id and a.assigned_by_group is not None and a.state.casefold() == "active"
    ]
    return bool(direct) and direct_adds_nothing(direct[0], inherited)


@dataclass(frozen=True, slots=True)
class Reclaim:
    """Holders of one SKU whose seat could be freed, each counted once (disabled first, then inactive)."""

    disabled: int = 0
    inactive: int = 0
    redundant: int = 0  # users whose direct assignment can go (their seat stays, held by the group's)
    inactive_known: bool = True  # sign-in activity was read

    @property
    def seats(self) -> int:
        """Seats freed by removing the disabled and inactive holders (a redundant direct assignment frees no seat:
        the user keeps the group's, but it is the first thing Microsoft's migration guidance says to clean)."""
        return self.disabled + self.inactive

    def text(self) -> str:
        parts = [f"{self.disabled} disabled", f"{self.inactive} inactive" if self.inactive_known else ""]
        if self.redundant:
            parts.append(f"{self.redundant} redundant direct {'assignment' if self.redundant == 1 else 'assignments'}")
        shown = ", ".join(p for p in parts if p)
        unknown = "" if self.inactive_known else "; sign-ins not read"
        return f"{shown}{unknown}"


def reclaimable(facts: Facts, ctx: RuleContext, sku_id: str) -> Reclaim | None:
    """What could be reclaimed of ``sku_id``; None when the users were not read (then nothing is claimed)."""
    if facts.users_unreadable:
        return None
    snap = facts.snapshot
    disabled = inactive = redundant = 0
    redundant_users = {uid for uid, s, _groups in facts.redundant if s == sku_id}
    for uid, user in snap.users.items():
        if not holds(user, sku_id):
            continue
        if user.account_enabled is False:
            disabled += 1
        elif snap.sign_ins_read and is_inactive(user, ctx.now, ctx.inactive_days):
            inactive += 1
        if uid in redundant_users and redundant_is_safe(user, sku_id):
            redundant += 1
    return Reclaim(disabled, inactive, redundant, inactive_known=snap.sign_ins_read)


def evaluate_inactive_user_licensed(facts: Facts, ctx: RuleContext) -> RuleResult:
    """A member of a licensed group holding its licenses who has not signed in for INACTIVE_DAYS."""
    result = RuleResult()
    snap = facts.snapshot
    if not snap.sign_ins_read:
        # Optional data (AuditLog.Read.All and Entra ID P1): not evaluated, said why, never a pass.
        result.not_applicable = snap.sign_ins_note or "sign-in activity was not read"
        return result
    if facts.users_unreadable:
        result.blocked = f"users could not be read: {facts.users_unreadable}"
        return result
    for group in facts.groups:
        if group.id in facts.unreadable_members:
            continue  # the group rules already report it not evaluated
        name = quote(facts.group_name(group.id))
        for uid in group.user_ids:
            user = facts.users.get(uid)
            if user is None or user.account_enabled is False:
                continue  # disabled accounts are disabled_user_licensed
            held = any(a.assigned_by_group == group.id and a.state.casefold() in _SEAT_STATES for a in user.assignments)
            if not held or not is_inactive(user, ctx.now, ctx.inactive_days):
                continue
            since = _since(user)
            message = (
                f"{facts.user_label(uid)} holds licenses from group {name} and has {since} "
                f"(more than {plural(ctx.inactive_days, 'day')}): a seat to reclaim if the account is not needed"
            )
            result.findings.append(
                make_finding(FindingKind.INACTIVE_USER_LICENSED, message, facts, group_id=group.id, user_id=uid)
            )
    return result
