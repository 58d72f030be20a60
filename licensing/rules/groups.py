"""Group rules: B2B members, nested groups, license errors, processing state, disabled users, empty groups,
and redundant direct assignments (the only user-subject rule)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Final

from licensing.model import FindingKind, LicensedGroup, Severity
from licensing.rules.base import (
    COUNT_VIOLATION,
    Facts,
    RuleContext,
    RuleResult,
    as_utc,
    make_finding,
    plural,
    quote,
)
from licensing.rules.reclaim import redundant_is_safe

__all__ = [
    "ERROR_EXPLANATIONS",
    "evaluate_b2b_member",
    "evaluate_disabled_user_licensed",
    "evaluate_empty_licensed_group",
    "evaluate_license_error",
    "evaluate_nested_group",
    "evaluate_processing_incomplete",
    "evaluate_redundant_direct_assignment",
]

# licenseAssignmentState.error values (https://learn.microsoft.com/graph/api/resources/licenseassignmentstate),
# explained as https://learn.microsoft.com/entra/identity/users/licensing-groups-resolve-problems does.
ERROR_EXPLANATIONS: Final = {
    COUNT_VIOLATION: "no seat is left",
    "MutuallyExclusiveViolation": "one of its service plans conflicts with a license the user already has",
    # Raised when Entra ID tries to *remove* a plan another product of the user needs (e.g. on leaving the group).
    "DependencyViolation": "another product the user has depends on one of its service plans",
    "ProhibitedInUsageLocationViolation": "it is not available in the user's usage location",
    "UniquenessViolation": "the user's proxy address is already used by another object (duplicate proxy address)",
    "Other": "Microsoft reported an unspecified error",
}
PROCESSING_COMPLETE: Final = "ProcessingComplete"


def _readable_groups(facts: Facts, result: RuleResult, *, needs_users: bool) -> Iterator[LicensedGroup]:
    """The groups in scope whose members were read; the others are recorded as not evaluated."""
    if facts.groups_unreadable:
        result.blocked = f"groups could not be read: {facts.groups_unreadable}"
        return
    if needs_users and facts.users_unreadable:
        result.blocked = f"users could not be read: {facts.users_unreadable}"
        return
    scoped = facts.scope_group_id
    if scoped is not None and not facts.groups and scoped in facts.unreadable_members:
        # A group-scoped audit whose group could not be read (deleted mid-run, 403): nothing was evaluated.
        result.skipped.append(f"{scoped}: {facts.unreadable_members[scoped]}")
    for group in facts.groups:
        reason = facts.unreadable_members.get(group.id)
        if reason is not None:
            result.skipped.append(f"{quote(facts.group_name(group.id))} ({group.id}): {reason}")
            continue
        yield group


def _unscanned_note(facts: Facts) -> str | None:
    if not facts.unscanned_users:
        return None
    return f"{plural(len(facts.unscanned_users), 'member')} not checked: not returned by the users scan"


def evaluate_b2b_member(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult(note=_unscanned_note(facts))
    for group in _readable_groups(facts, result, needs_users=True):
        name = quote(facts.group_name(group.id))
        for uid in group.user_ids:
            if uid in facts.b2b:
                message = (
                    f"Group {name} licenses the B2B account {facts.user_label(uid)}: "
                    "groups used for licensing must not contain guests"
                )
                result.findings.append(
                    make_finding(FindingKind.B2B_MEMBER, message, facts, group_id=group.id, user_id=uid)
                )
    return result


def evaluate_nested_group(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult()
    for group in _readable_groups(facts, result, needs_users=False):
        name = quote(facts.group_name(group.id))
        for ref in group.member_groups:
            message = (
                f"Group {name} contains the group {quote(ref.display_name or ref.id)}: "
                "members of a nested group do not get the licenses"
            )
            result.findings.append(
                make_finding(
                    FindingKind.NESTED_GROUP,
                    message,
                    facts,
                    group_id=group.id,
                    member_group_id=ref.id,
                )
            )
    return result


def evaluate_license_error(facts: Facts, ctx: RuleContext) -> RuleResult:
    """Every error state a licensed group left on a user: members, and users who left the group but still hold
    its seat because removing the license failed (DependencyViolation, a proxy-address conflict)."""
    result = RuleResult()
    for group in _readable_groups(facts, result, needs_users=True):
        errors = facts.errors_by_group.get(group.id)
        if not errors:
            continue
        members = set(group.user_ids)  # built only for groups with errors: no O(groups x users)
        name = quote(facts.group_name(group.id))
        seen: set[tuple[str, str, str]] = set()
        for uid, sku_id, error in errors:
            if not facts.sku_in_scope(sku_id) or (uid, sku_id, error) in seen:
                continue
            seen.add((uid, sku_id, error))
            why = ERROR_EXPLANATIONS.get(error, f"error {error}")
            cause = facts.blocked_by.get((uid, group.id, sku_id))
            if cause is not None:
                why = (
                    f"the group's licenses are assigned all or nothing and {facts.product(cause)} has no seat left "
                    f"({facts.product(sku_id)} has seats)"
                )
            if error == "ProhibitedInUsageLocationViolation":
                user = facts.users.get(uid)
                if user is not None and user.usage_location:
                    why += f" ({user.usage_location})"
            since = _state_since(facts, uid, group.id, sku_id)
            why += _waiting(since, ctx)
            if uid in members:
                message = f"{facts.user_label(uid)} did not get {facts.product(sku_id)} from group {name}: {why}"
                if error == COUNT_VIOLATION:  # the exact command that fixes it once a seat is free (docs/configure.md)
                    message += f"; once seats are free: licensing-audit reprocess --group {group.id} --error {error}"
            else:
                message = (
                    f"{facts.user_label(uid)} is no longer a member of group {name} but still holds "
                    f"{facts.product(sku_id)} from it in an error state: {why}"
                )
            severity = Severity.CRITICAL if error == COUNT_VIOLATION else Severity.WARNING
            result.findings.append(
                make_finding(
                    FindingKind.LICENSE_ERROR,
                    message,
                    facts,
                    severity=severity,
                    group_id=group.id,
                    user_id=uid,
                    sku_id=sku_id,
                    error=error,
                    since=since,
                )
            )
    return result


def _state_since(facts: Facts, user_id: str, group_id: str, sku_id: str) -> datetime | None:
    """lastUpdatedDateTime of the user's state for (group, SKU): "the timestamp when the state of the license
    assignment was last updated" (https://learn.microsoft.com/graph/api/resources/licenseassignmentstate)."""
    user = facts.users.get(user_id)
    if user is None:
        return None
    for a in user.assignments:
        if a.sku_id == sku_id and a.assigned_by_group == group_id and a.last_updated is not None:
            return as_utc(a.last_updated)
    return None


def _waiting(since: datetime | None, ctx: RuleContext) -> str:
    """ "; waiting since 2026-11-28 (4 days)", or "" when Graph did not say (or said a time ahead of ours)."""
    now = as_utc(ctx.now)
    if since is None or since > now:
        return ""
    hours = int((now - since).total_seconds() // 3600)
    span = plural(hours // 24, "day") if hours >= 48 else plural(hours, "hour") if hours >= 1 else "under an hour"
    return f"; waiting since {since:%Y-%m-%d} ({span})"


def evaluate_processing_incomplete(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult()
    stuck_after = timedelta(hours=ctx.processing_stuck_hours)
    now = as_utc(ctx.now)
    for group in _readable_groups(facts, result, needs_users=False):
        state = group.processing_state
        if not state or state == PROCESSING_COMPLETE:
            continue
        name = quote(facts.group_name(group.id))
        since = ctx.processing_since.get(group.id)
        if since is not None and now - as_utc(since) > stuck_after:
            hours = int((now - as_utc(since)).total_seconds() // 3600)
            message = (
                f"Group {name}: license processing has been '{state}' for {hours} hours "
                f"(more than {ctx.processing_stuck_hours}): changes to its members or licenses are not applied"
            )
            severity = Severity.WARNING
        else:
            message = f"Group {name}: license processing is '{state}', not complete yet"
            severity = Severity.INFO
        result.findings.append(
            make_finding(FindingKind.PROCESSING_INCOMPLETE, message, facts, severity=severity, group_id=group.id)
        )
    return result


def evaluate_disabled_user_licensed(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult(note=_unscanned_note(facts))
    for group in _readable_groups(facts, result, needs_users=True):
        holders = facts.disabled_by_group.get(group.id)
        if not holders:
            continue
        members = set(group.user_ids)
        name = quote(facts.group_name(group.id))
        for uid in holders:
            if uid not in members:
                continue
            message = f"The disabled account {facts.user_label(uid)} holds licenses through group {name}"
            result.findings.append(
                make_finding(FindingKind.DISABLED_USER_LICENSED, message, facts, group_id=group.id, user_id=uid)
            )
    return result


def evaluate_redundant_direct_assignment(facts: Facts, ctx: RuleContext) -> RuleResult:
    if facts.users_unreadable:
        return RuleResult(blocked=f"users could not be read: {facts.users_unreadable}")
    result = RuleResult()
    if facts.unreadable_members:
        result.note = f"members of {plural(len(facts.unreadable_members), 'group')} could not be read"
    for uid, sku_id, group_ids in facts.redundant:
        names = ", ".join(quote(facts.group_name(g)) for g in group_ids)
        user = facts.users.get(uid)
        # Only when the direct assignment enables no service plan the group's leaves off (disabledPlans) is it
        # safe to remove: Microsoft's migration guidance checks that the two "enable exactly the same services".
        if user is not None and redundant_is_safe(user, sku_id):
            verdict = "the direct assignment adds no service plan and is safe to remove"
        else:
            verdict = (
                "the direct assignment enables service plans the group's leaves off (disabledPlans): compare them "
                "before removing it"
            )
        message = (
            f"{facts.user_label(uid)} has {facts.product(sku_id)} both directly and through "
            f"{'group' if len(group_ids) == 1 else 'groups'} {names}: {verdict}"
        )
        result.findings.append(
            make_finding(FindingKind.REDUNDANT_DIRECT_ASSIGNMENT, message, facts, user_id=uid, sku_id=sku_id)
        )
    return result


def evaluate_empty_licensed_group(facts: Facts, ctx: RuleContext) -> RuleResult:
    result = RuleResult()
    for group in _readable_groups(facts, result, needs_users=False):
        if group.member_count:
            continue
        products = ", ".join(facts.product(s) for s in group.sku_ids) or "licenses"
        message = f"Group {quote(facts.group_name(group.id))} assigns {products} but has no members"
        result.findings.append(make_finding(FindingKind.EMPTY_LICENSED_GROUP, message, facts, group_id=group.id))
    return result
