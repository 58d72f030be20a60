"""What was read, checked against itself before anything is concluded from it; and what a partial run may not say.

Graph can answer 200 with less than there is (an empty licensed-group list once, a page of objects that are not
groups, an empty or short users scan) and nothing in the answer says so. Issue 27, item 2: such an answer gave a
``succeeded`` run that resolved 49 open alerts. The parts of one snapshot tell on each other:

- the users scan names the groups that assign each licence (``licenseAssignmentStates.assignedByGroup``): a
  licensed-group list that lacks groups the scan shows assigning, and is empty, holds items that are not licensed
  groups, lacks at least half of the groups evidently there, or shrank by half or more since the last tenant run,
  is not the list: the groups are unreadable;
- the SKUs count consumed units: a users scan in which fewer users hold licences than half the units consumed (none
  at all, for an empty scan) is not the scan: the users are unreadable.

Then (item 7) a finding kind whose inputs were not read is "not evaluated": its findings are not raised and, its
rule not having run, nothing of it is resolved (:class:`licensing.alerts.EvaluatedScope` resolves only kinds that
passed or failed).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from licensing.model import FindingKind, OutcomeStatus, Part, RuleOutcome, Scope, TenantSnapshot, Unreadable

if TYPE_CHECKING:
    from licensing.rules import Evaluation

__all__ = ["KIND_INPUTS", "ScanSummary", "cross_check", "not_evaluated"]

K = FindingKind
# The whole parts of the tenant each kind is computed from. Unreadable members of one group are handled per group
# by the rules themselves (the other groups' findings stand); an unreadable whole part makes the kind not evaluated.
KIND_INPUTS: Final[Mapping[str, frozenset[Part]]] = {
    # Waiting users come from the users scan, of which the reader keeps those the licensed groups read concern.
    K.SEAT_SHORTAGE: frozenset({Part.SKUS, Part.USERS, Part.GROUPS}),
    K.SEAT_LOW: frozenset({Part.SKUS, Part.USERS, Part.GROUPS}),
    K.SEAT_FORECAST: frozenset({Part.SKUS}),
    K.UNITS_EXPIRING: frozenset({Part.SKUS}),
    K.SUBSCRIPTION_RENEWAL: frozenset({Part.SKUS, Part.SUBSCRIPTIONS}),
    K.EXPECTED_SKU_NOT_GROUP_ASSIGNED: frozenset({Part.SKUS, Part.GROUPS}),
    K.P1_COVERAGE_SHORT: frozenset({Part.SKUS, Part.GROUPS}),
    K.B2B_MEMBER: frozenset({Part.GROUPS}),
    K.NESTED_GROUP: frozenset({Part.GROUPS}),
    K.LICENSE_ERROR: frozenset({Part.GROUPS, Part.USERS}),
    K.PROCESSING_INCOMPLETE: frozenset({Part.GROUPS}),
    K.DISABLED_USER_LICENSED: frozenset({Part.GROUPS, Part.USERS}),
    K.REDUNDANT_DIRECT_ASSIGNMENT: frozenset({Part.GROUPS, Part.USERS}),
    K.EMPTY_LICENSED_GROUP: frozenset({Part.GROUPS}),
    K.DYNAMIC_GROUP_PAUSED: frozenset({Part.GROUPS}),
    K.DYNAMIC_RULE_ADMITS_GUESTS: frozenset({Part.GROUPS}),
    K.LICENSED_GROUP_SHRANK: frozenset({Part.GROUPS}),
    K.INACTIVE_USER_LICENSED: frozenset({Part.GROUPS, Part.USERS}),
}
_WHOLE: Final = frozenset({Part.SKUS, Part.SUBSCRIPTIONS, Part.GROUPS, Part.USERS})
SHRINK: Final = 0.5  # a list that lost half of the last tenant run's groups, or lacks half of those evidently there


def _unread(snapshot: TenantSnapshot) -> set[Part]:
    return {Part(u.what) for u in snapshot.unreadable if u.what in _WHOLE and not u.subject_id}


@dataclass(frozen=True, slots=True)
class ScanSummary:
    """What the users scan said before the reader kept only the users the rules need: the groups it shows
    assigning licences, and how many users hold one."""

    assigning: frozenset[str]
    holders: int

    @classmethod
    def of(cls, parts: Sequence[TenantSnapshot]) -> ScanSummary:
        users = {uid: user for part in parts for uid, user in part.users.items()}
        assigning = frozenset(
            a.assigned_by_group.lower() for user in users.values() for a in user.assignments if a.assigned_by_group
        )
        return cls(assigning, sum(1 for u in users.values() if u.assignments or u.assigned_sku_ids))


def _groups_check(snapshot: TenantSnapshot, scan: ScanSummary, previous_groups: int | None) -> Unreadable | None:
    listed = {g.id for g in snapshot.groups}
    missing = sorted(scan.assigning - listed)
    if not missing:
        return None
    not_groups = [g.id for g in snapshot.groups if not g.sku_ids]
    evident = len(listed | scan.assigning)
    why = (
        "it is empty"
        if not listed
        else f"{len(not_groups)} of its items assign no licence (not licensed groups)"
        if not_groups
        else f"it lacks {len(missing)} of {evident} groups"
        if len(missing) >= SHRINK * evident
        else f"it shrank from {previous_groups} groups at the last tenant run to {len(listed)}"
        if previous_groups and len(listed) <= (1 - SHRINK) * previous_groups
        else None
    )
    if why is None:
        return None  # a group licensed while we read: one missing among many is not a broken list
    return Unreadable(
        Part.GROUPS,
        None,
        f"the licensed-group list is not trusted: {why}, while the users scan shows licences assigned by "
        f"{len(missing)} groups it lacks (e.g. {missing[0]})",
    )


def _users_check(snapshot: TenantSnapshot, scan: ScanSummary) -> Unreadable | None:
    consumed = sum(max(s.consumed, 0) for s in snapshot.skus)
    if consumed <= 0 or scan.holders * 2 >= consumed:
        return None
    return Unreadable(
        Part.USERS,
        None,
        f"the users scan is not trusted: {scan.holders} users hold licences while the SKUs show {consumed} units "
        "consumed",
    )


def cross_check(
    snapshot: TenantSnapshot, scan: ScanSummary | None, previous_groups: int | None = None
) -> TenantSnapshot:
    """``snapshot`` with the parts that contradict the others marked unreadable (a tenant-wide read with its scan
    summary only: a scoped read sees part of the tenant by design). ``previous_groups``: the licensed groups of
    the last tenant run."""
    if snapshot.scope is not Scope.TENANT or scan is None:
        return snapshot
    unread = _unread(snapshot)
    if Part.USERS in unread or Part.GROUPS in unread:
        return snapshot
    found = _users_check(snapshot, scan) if Part.SKUS not in unread else None
    if found is None:  # the group check trusts the scan's assignedByGroup: only when the scan itself is trusted
        found = _groups_check(snapshot, scan, previous_groups)
    return replace(snapshot, unreadable=(*snapshot.unreadable, found)) if found is not None else snapshot


def not_evaluated(evaluation: Evaluation, snapshot: TenantSnapshot) -> Evaluation:
    """The evaluation with every kind whose inputs were not (fully) read turned "not evaluated": no finding raised
    from what was not read, and nothing of it resolved."""
    unread = _unread(snapshot)
    if not unread:
        return evaluation
    blind = {kind for kind, parts in KIND_INPUTS.items() if parts & unread}
    if not blind:
        return evaluation
    reasons = "; ".join(sorted(f"{u.what}: {u.reason}" for u in snapshot.unreadable if Part(u.what) in unread))
    outcomes = tuple(
        RuleOutcome(o.rule_id, OutcomeStatus.NOT_EVALUATED, 0, f"its inputs were not read ({reasons})"[:500])
        if o.rule_id in blind and o.status is not OutcomeStatus.NOT_EVALUATED
        else o
        for o in evaluation.outcomes
    )
    findings = tuple(f for f in evaluation.findings if f.kind not in blind)
    return replace(evaluation, findings=findings, outcomes=outcomes)
