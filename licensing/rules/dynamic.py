"""Rules on how licensed groups get their members: paused or guest-admitting dynamic rules, groups that shrank,
and whether the tenant has Entra ID P1 for everyone who benefits from group-based licensing."""

from __future__ import annotations

from collections.abc import Iterable

from licensing.model import FindingKind, Sku
from licensing.rules.base import Facts, RuleContext, RuleResult, make_finding, plural, quote
from licensing.rules.membership import rule_admits_guests
from licensing.skus import qualifies_for_group_licensing

__all__ = [
    "evaluate_dynamic_group_paused",
    "evaluate_dynamic_rule_admits_guests",
    "evaluate_licensed_group_shrank",
    "evaluate_p1_coverage_short",
    "group_licensing_seats",
]


def _groups_or_blocked(facts: Facts, result: RuleResult) -> bool:
    if facts.groups_unreadable:
        result.blocked = f"groups could not be read: {facts.groups_unreadable}"
        return False
    return True


def evaluate_dynamic_group_paused(facts: Facts, ctx: RuleContext) -> RuleResult:
    """membershipRuleProcessingState "Paused": "Indicates whether the dynamic membership processing is on or paused"
    (https://learn.microsoft.com/graph/api/resources/group). Paused, nobody joins or leaves, while the group keeps
    assigning its licenses to whoever was in it."""
    result = RuleResult()
    if not _groups_or_blocked(facts, result):
        return result
    for group in facts.groups:
        if group.dynamic and (group.rule_processing or "").casefold() == "paused":
            message = (
                f"Dynamic group {quote(facts.group_name(group.id))} has its membership processing paused: "
                "people who join or leave are not added or removed, and its licenses stay with the members it had"
            )
            result.findings.append(make_finding(FindingKind.DYNAMIC_GROUP_PAUSED, message, facts, group_id=group.id))
    return result


def evaluate_dynamic_rule_admits_guests(facts: Facts, ctx: RuleContext) -> RuleResult:
    """A licensed dynamic group whose rule does not restrict user.userType: the next guest who matches is
    licensed (docs/findings.md; the reading of the rule is licensing.rules.membership)."""
    result = RuleResult()
    if not _groups_or_blocked(facts, result):
        return result
    for group in facts.groups:
        if group.dynamic and rule_admits_guests(group.membership_rule):
            message = (
                f"Dynamic group {quote(facts.group_name(group.id))} licenses whoever its rule matches, and the rule "
                f"does not exclude guests ({group.membership_rule or 'no rule'}): add "
                '(user.userType -eq "Member") to it'
            )
            result.findings.append(
                make_finding(FindingKind.DYNAMIC_RULE_ADMITS_GUESTS, message, facts, group_id=group.id)
            )
    return result


def evaluate_licensed_group_shrank(facts: Facts, ctx: RuleContext) -> RuleResult:
    """More than GROUP_DROP_PCT of a licensed group's members gone since the last tenant run: "Users who no longer
    match the new rule are removed ... which could result in loss of service, or in some cases, loss of data"
    (https://learn.microsoft.com/entra/identity/users/licensing-group-advanced)."""
    result = RuleResult()
    if ctx.previous_members is None:
        result.not_applicable = "needs the previous run's member counts from the store (no store)"
        return result
    if not _groups_or_blocked(facts, result):
        return result
    if not ctx.previous_members:
        result.note = "no earlier tenant run in the store to compare with"
        return result
    for group in facts.groups:
        reason = facts.unreadable_members.get(group.id)
        if reason is not None:
            result.skipped.append(f"{quote(facts.group_name(group.id))} ({group.id}): {reason}")
            continue
        before = ctx.previous_members.get(group.id)
        now = group.member_count
        if not before or now >= before:
            continue
        lost = before - now
        if lost * 100 > ctx.group_drop_pct * before:
            message = (
                f"Group {quote(facts.group_name(group.id))} lost {plural(lost, 'member')} since the last run "
                f"({before} -> {now}, {lost * 100 / before:.0f} %): they lose its licenses; check that its "
                "membership or rule changed on purpose"
            )
            result.findings.append(make_finding(FindingKind.LICENSED_GROUP_SHRANK, message, facts, group_id=group.id))
    return result


def group_licensing_seats(skus: Iterable[Sku]) -> tuple[int, list[str]]:
    """Enabled seats of the User SKUs that license group-based licensing (Entra ID P1/P2, Office 365 E3 and
    above: licensing.skus.qualifies_for_group_licensing), and those SKUs' part numbers (rule and plan alike)."""
    seats = 0
    names: list[str] = []
    for sku in skus:
        if sku.applies_to.casefold() == "user" and qualifies_for_group_licensing(
            sku.sku_id, sku.service_plans, sku.sku_part_number
        ):
            seats += max(sku.enabled, 0)
            names.append(sku.sku_part_number or sku.sku_id)
    return seats, names


def evaluate_p1_coverage_short(facts: Facts, ctx: RuleContext) -> RuleResult:
    """ "Microsoft Entra ID P1 ... for every user who benefits from group-based licensing"
    (https://learn.microsoft.com/entra/fundamentals/concept-group-based-licensing): the unique direct user members
    of the licensed groups against the seats of the SKUs whose service plans include Entra ID P1 or P2."""
    result = RuleResult()
    if facts.scope.value != "tenant":
        result.not_applicable = "a tenant-wide count: evaluated by tenant audits only"
        return result
    if facts.skus_unreadable:
        result.blocked = f"SKUs could not be read: {facts.skus_unreadable}"
        return result
    if not _groups_or_blocked(facts, result):
        return result
    if not facts.snapshot.skus:
        # The reader never yields this beside licensed groups (it marks such an answer unreadable): nothing to count.
        result.not_applicable = "no subscribed SKUs to count Entra ID P1 seats in"
        return result
    unread = [g.id for g in facts.groups if g.id in facts.unreadable_members]
    if unread:
        # A count of unique members needs every group's: the reasons are the groups' own (as the other rules say).
        shown = "; ".join(f"{quote(facts.group_name(g))} ({g}): {facts.unreadable_members[g]}" for g in unread[:3])
        more = f"; and {len(unread) - 3} more" if len(unread) > 3 else ""
        result.blocked = f"members of {plural(len(unread), 'licensed group')} not read: {shown}{more}"
        return result
    users = {uid for g in facts.groups for uid in g.user_ids}
    seats, names = group_licensing_seats(facts.snapshot.skus)
    if len(users) > seats:
        short = len(users) - seats
        covered = ", ".join(names) if names else "none"
        message = (
            f"{plural(len(users), 'user')} benefit from group-based licensing, but the tenant has {seats} seats "
            f"that license it (Entra ID P1/P2 or Office 365 E3 and above: {covered}): {short} short of what "
            "Microsoft's licensing terms require"
        )
        result.findings.append(make_finding(FindingKind.P1_COVERAGE_SHORT, message, facts))
    return result
