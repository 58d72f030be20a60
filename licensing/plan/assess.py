"""Whether a group is fit for group-based licensing with the SKUs asked for: a pure verdict over a read group.

Microsoft 365 Enterprise's "Set up automatic licensing" step and the Entra licensing articles say what makes a
group fit: seats for every member who needs them, no B2B accounts, security-enabled, direct members only (nested
groups get nothing), and, for dynamic groups, a rule that keeps guests out. Each reason is a blocker or a warning
of docs/plan.md; the verdict is ``unsuitable`` when any blocker stands.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from licensing.errors import AuditError
from licensing.graph.candidates import GroupCandidate
from licensing.model import Part, User
from licensing.rules.base import plural
from licensing.rules.dynamic import group_licensing_seats
from licensing.rules.membership import rule_admits_guests
from licensing.rules.reclaim import holds
from licensing.skus import product_name

__all__ = [
    "LARGE_GROUP_USERS",
    "Blocker",
    "Plan",
    "PlanGroup",
    "PlanSku",
    "Reason",
    "Verdict",
    "Warning",
    "assess",
]

# "If you see your changes take more than 24 hours to process group size of 60 K users or less, please open a
# support ticket"; "When licenses are assigned or modified for a large group (for example, 100,000 users), it could
# affect performance" (https://learn.microsoft.com/entra/identity/users/licensing-group-advanced, "Limitations").
LARGE_GROUP_USERS: Final = 60_000


class Verdict(StrEnum):
    SUITABLE = "suitable"
    UNSUITABLE = "unsuitable"


class Blocker(StrEnum):
    """A reason the group must not be licensed as it is."""

    SEATS_SHORT = "seats_short"
    B2B_MEMBER = "b2b_member"
    NESTED_GROUP = "nested_group"
    NOT_SECURITY_ENABLED = "not_security_enabled"
    DYNAMIC_RULE_ADMITS_GUESTS = "dynamic_rule_admits_guests"
    SKU_NOT_ASSIGNABLE = "sku_not_assignable"


class Warning(StrEnum):
    """Something to fix or accept before licensing the group."""

    USAGE_LOCATION_MISSING = "usage_location_missing"
    MUTUALLY_EXCLUSIVE = "mutually_exclusive"
    DISABLED_MEMBERS = "disabled_members"
    P1_NOT_COVERED = "p1_not_covered"
    LARGE_GROUP = "large_group"
    DYNAMIC_RULE_PAUSED = "dynamic_rule_paused"


@dataclass(frozen=True, slots=True)
class PlanGroup:
    id: str
    display_name: str
    security_enabled: bool | None
    dynamic: bool
    membership_rule: str | None
    members: int
    users: int


@dataclass(frozen=True, slots=True)
class PlanSku:
    sku_id: str
    sku_part_number: str
    free: int  # enabled - consumed as the audit counts seats, never below 0 (over-consumed or suspended: none free)
    needed: int  # direct user members who do not hold it yet
    already_licensed: int

    @property
    def product(self) -> str:
        return product_name(self.sku_part_number, self.sku_id)


@dataclass(frozen=True, slots=True)
class Reason:
    kind: Blocker | Warning
    message: str
    user_id: str | None = None
    member_group_id: str | None = None
    sku_id: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    tenant_id: str
    group: PlanGroup
    skus: tuple[PlanSku, ...]
    blockers: tuple[Reason, ...]
    warnings: tuple[Reason, ...]
    tenant_name: str = ""

    @property
    def verdict(self) -> Verdict:
        return Verdict.UNSUITABLE if self.blockers else Verdict.SUITABLE


def _label(user: User) -> str:
    name, upn = user.display_name.strip(), user.user_principal_name.strip()
    if name and upn and name != upn:
        return f"{name} ({upn})"
    return name or upn or user.id


def assess(candidate: GroupCandidate) -> Plan:
    """The verdict and its reasons. Raises AuditError when the members or the users could not be read: no verdict
    then, never "suitable"."""
    missing = [u for u in candidate.unreadable if u.what in (Part.MEMBERS, Part.USERS, Part.USER)]
    if missing or not candidate.group.members_read:
        reasons = "; ".join(f"{u.what}: {u.reason}" for u in missing) or "the members were not read"
        raise AuditError(f"cannot assess group {candidate.group.id}: {reasons}")
    group = candidate.group
    users = [candidate.members[uid] for uid in group.user_ids if uid in candidate.members]
    blockers: list[Reason] = []
    warnings: list[Reason] = []

    skus: list[PlanSku] = []
    for sku in candidate.skus:
        have = sum(holds(u, sku.sku_id) for u in users)
        row = PlanSku(sku.sku_id, sku.sku_part_number, max(sku.available, 0), len(users) - have, have)
        skus.append(row)
        if sku.applies_to != "User":
            # subscribedSku.appliesTo: "Only SKUs with target class User are assignable" (User, Company;
            # https://learn.microsoft.com/graph/api/resources/subscribedsku): no seat count makes it fit.
            blockers.append(
                Reason(
                    Blocker.SKU_NOT_ASSIGNABLE,
                    f"{row.product} applies to the {sku.applies_to or 'unknown'} (appliesTo), not to users: only SKUs "
                    "with target class User can be assigned to a group",
                    sku_id=sku.sku_id,
                )
            )
        elif row.needed > row.free:
            lifecycle = " (no active units: renew or reactivate it first)" if sku.in_lifecycle_only else ""
            blockers.append(
                Reason(
                    Blocker.SEATS_SHORT,
                    f"{row.product} needs {plural(row.needed, 'seat')} for the members who do not hold it, "
                    f"{row.free} {'is' if row.free == 1 else 'are'} free{lifecycle}: buy {row.needed - row.free} "
                    "or reclaim them",
                    sku_id=sku.sku_id,
                )
            )
    for user in users:
        if user.is_b2b:
            blockers.append(
                Reason(
                    Blocker.B2B_MEMBER,
                    f"{_label(user)} is a B2B account: do not use group-based licensing for groups that contain B2B "
                    "accounts",
                    user_id=user.id,
                )
            )
    for ref in group.member_groups:
        blockers.append(
            Reason(
                Blocker.NESTED_GROUP,
                f"the group contains the group {ref.display_name or ref.id}: its members would get nothing "
                "(group-based licensing serves direct members only)",
                member_group_id=ref.id,
            )
        )
    if group.security_enabled is False:
        blockers.append(
            Reason(
                Blocker.NOT_SECURITY_ENABLED,
                "the group is not security-enabled: licenses can be assigned only to security groups and to "
                "Microsoft 365 groups with securityEnabled true",
            )
        )
    if group.dynamic and rule_admits_guests(group.membership_rule):
        blockers.append(
            Reason(
                Blocker.DYNAMIC_RULE_ADMITS_GUESTS,
                f"the dynamic rule {group.membership_rule or '(none)'!s} does not keep guests out: add "
                '(user.userType -eq "Member") with -and',
            )
        )

    if group.dynamic and (group.rule_processing or "").casefold() == "paused":
        # The audit's dynamic_group_paused: "Paused" means the membership is frozen (membershipRuleProcessingState,
        # https://learn.microsoft.com/graph/api/resources/group): the members counted here are the ones licensed, and
        # nobody joins or leaves, so a licence follows the rule only once processing is resumed.
        warnings.append(
            Reason(
                Warning.DYNAMIC_RULE_PAUSED,
                "the group's dynamic membership processing is paused: its members are frozen, so the licences would "
                "go to today's members and not follow the rule until processing is resumed",
            )
        )
    for user in users:
        if not (user.usage_location or "").strip():
            warnings.append(
                Reason(
                    Warning.USAGE_LOCATION_MISSING,
                    f"{_label(user)} has no usage location: it inherits the tenant's, and products not offered there "
                    "fail with ProhibitedInUsageLocationViolation",
                    user_id=user.id,
                )
            )
    for user in users:
        conflicts = sorted({a.sku_id for a in user.assignments if a.error == "MutuallyExclusiveViolation"})
        for sku_id in conflicts:
            warnings.append(
                Reason(
                    Warning.MUTUALLY_EXCLUSIVE,
                    f"{_label(user)} already has a license whose service plans conflict "
                    f"({product_name(None, sku_id)} is in MutuallyExclusiveViolation): "
                    "the new one may fail the same way",
                    user_id=user.id,
                    sku_id=sku_id,
                )
            )
    for user in users:
        if user.account_enabled is False:
            warnings.append(
                Reason(
                    Warning.DISABLED_MEMBERS,
                    f"{_label(user)} is disabled and would take a seat",
                    user_id=user.id,
                )
            )
    benefit = len(candidate.group_licensed_users | {u.id for u in users})
    p1, _products = group_licensing_seats(candidate.tenant_skus)
    if benefit > p1:
        warnings.append(
            Reason(
                Warning.P1_NOT_COVERED,
                f"{benefit} users would benefit from group-based licensing, and the tenant has {p1} seats that license "
                "it (Entra ID P1/P2, or Office 365 E3 and above): Microsoft requires one for every user who benefits",
            )
        )
    if len(users) > LARGE_GROUP_USERS:
        warnings.append(
            Reason(
                Warning.LARGE_GROUP,
                f"{len(users)} users: Microsoft warns that licensing groups this large can take more than a day to "
                "process and slow directory synchronization; consider smaller groups",
            )
        )
    return Plan(
        tenant_id=candidate.tenant_id,
        group=PlanGroup(
            id=group.id,
            display_name=group.display_name,
            security_enabled=group.security_enabled,
            dynamic=group.dynamic,
            membership_rule=group.membership_rule,
            members=group.member_count,
            users=len(users),
        ),
        skus=tuple(skus),
        blockers=tuple(blockers),
        warnings=tuple(warnings),
        tenant_name=candidate.tenant_name,
    )
