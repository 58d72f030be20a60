"""The registry of rules (one per finding kind) and :func:`evaluate`: snapshot -> findings, outcomes, summaries."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from licensing.model import (
    Finding,
    FindingKind,
    GroupSummary,
    RuleOutcome,
    Severity,
    SkuSummary,
    TenantSnapshot,
)
from licensing.rules import groups, seats
from licensing.rules.base import Facts, Rule, RuleContext, RuleResult, build_facts, plural, subject_of

__all__ = ["RULES", "Evaluation", "evaluate", "sort_findings"]


def _rule(
    kind: FindingKind, title: str, severity: Severity, remediation: str, fn: Callable[[Facts, RuleContext], RuleResult]
) -> tuple[str, Rule]:
    return kind.value, Rule(id=kind.value, title=title, severity=severity, remediation=remediation, evaluate=fn)


RULES: Final[Mapping[str, Rule]] = MappingProxyType(
    dict(
        [
            _rule(
                FindingKind.SEAT_SHORTAGE,
                "Users are waiting for seats",
                Severity.CRITICAL,
                "Buy more seats (Microsoft 365 admin center > Billing > Your products > the product > Buy licenses), "
                "or free seats by removing users who no longer need the product; then reprocess the users in error "
                "(Microsoft 365 admin center > Billing > Licenses > the product > Groups, or Graph "
                "POST /users/{id}/reprocessLicenseAssignment).",
                seats.evaluate_seat_shortage,
            ),
            _rule(
                FindingKind.SEAT_LOW,
                "Few free seats left",
                Severity.WARNING,
                "Buy seats before new members of licensed groups stop getting licenses "
                "(Microsoft 365 admin center > Billing > Your products), or reclaim unused ones.",
                seats.evaluate_seat_low,
            ),
            _rule(
                FindingKind.SEAT_FORECAST,
                "Seats will run out at the current trend",
                Severity.WARNING,
                "Plan a purchase: at the current growth the seats run out within the forecast period "
                "(Microsoft 365 admin center > Billing > Your products).",
                seats.evaluate_seat_forecast,
            ),
            _rule(
                FindingKind.UNITS_EXPIRING,
                "Seats in grace period, suspended or locked out",
                Severity.WARNING,
                "Renew or reactivate the subscription (Microsoft 365 admin center > Billing > Your products); "
                "users lose access to suspended seats. Buying more seats of it does not help.",
                seats.evaluate_units_expiring,
            ),
            _rule(
                FindingKind.B2B_MEMBER,
                "B2B account in a licensing group",
                Severity.WARNING,
                "Remove the guest from the group (Entra admin center > Groups > the group > Members) and license "
                "it directly only if it really needs the product; keep guests out of licensing groups.",
                groups.evaluate_b2b_member,
            ),
            _rule(
                FindingKind.NESTED_GROUP,
                "Nested group in a licensing group",
                Severity.WARNING,
                "Group-based licensing ignores nested groups: add the users directly, or assign the licenses to the "
                "nested group itself (Microsoft 365 admin center > Billing > Licenses > the product > Groups > "
                "Assign licenses).",
                groups.evaluate_nested_group,
            ),
            _rule(
                FindingKind.LICENSE_ERROR,
                "Group license assignment in error",
                Severity.WARNING,
                "Fix the cause (seats, conflicting or dependent licenses, usage location, duplicate proxy address), "
                "then reprocess (Microsoft 365 admin center > Billing > Licenses > the product > Groups, or Graph "
                "POST /users/{id}/reprocessLicenseAssignment). A user who left the group keeps the seat until the "
                "dependent license is removed or the proxy address conflict is resolved.",
                groups.evaluate_license_error,
            ),
            _rule(
                FindingKind.PROCESSING_INCOMPLETE,
                "Group license processing not complete",
                Severity.INFO,
                "Wait for processing to finish; if it stays incomplete, reprocess the group's users "
                "(Microsoft 365 admin center > Billing > Licenses > the product > Groups, or Graph "
                "POST /users/{id}/reprocessLicenseAssignment).",
                groups.evaluate_processing_incomplete,
            ),
            _rule(
                FindingKind.DISABLED_USER_LICENSED,
                "Disabled account holds licenses",
                Severity.INFO,
                "Remove the disabled account from the group (Entra admin center > Groups > the group > Members) "
                "to free its seats, if it is not coming back.",
                groups.evaluate_disabled_user_licensed,
            ),
            _rule(
                FindingKind.REDUNDANT_DIRECT_ASSIGNMENT,
                "Direct assignment duplicates a group assignment",
                Severity.INFO,
                "Remove the direct assignment (Microsoft 365 admin center > Users > the user > Licenses and apps, "
                "or Graph POST /users/{id}/assignLicense with removeLicenses); the group keeps the user licensed.",
                groups.evaluate_redundant_direct_assignment,
            ),
            _rule(
                FindingKind.EMPTY_LICENSED_GROUP,
                "Licensing group has no members",
                Severity.INFO,
                "Add the intended members, or remove the license assignment from the group "
                "(Microsoft 365 admin center > Billing > Licenses > the product > Groups).",
                groups.evaluate_empty_licensed_group,
            ),
            _rule(
                FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED,
                "Product expected to be group-assigned is not",
                Severity.WARNING,
                "Assign the product to a security group (Microsoft 365 admin center > Billing > Licenses > "
                "the product > Groups > Assign licenses), move its users into the group, then remove their direct "
                "assignments.",
                seats.evaluate_expected_sku,
            ),
        ]
    )
)

_KIND_ORDER: Final = {kind.value: i for i, kind in enumerate(FindingKind)}


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    outcomes: tuple[RuleOutcome, ...]
    skus: tuple[SkuSummary, ...]
    groups: tuple[GroupSummary, ...]
    errors: tuple[str, ...]  # rules (or parts of them) that could not be evaluated because data was not read


def sort_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """Severity (critical first), then kind in docs/design.md order, then subject ids: stable across runs."""
    return tuple(
        sorted(findings, key=lambda f: (-Severity(f.severity).rank, _KIND_ORDER.get(f.kind, 99), subject_of(f)))
    )


def _outcome(rule: Rule, result: RuleResult) -> tuple[RuleOutcome, str | None]:
    count = len(result.findings)
    if result.blocked:
        return RuleOutcome(rule.id, "not_evaluated", 0, result.blocked), f"{rule.id} not evaluated: {result.blocked}"
    error: str | None = None
    reasons: list[str] = []
    if result.skipped:
        shown = "; ".join(result.skipped[:5]) + (
            f"; and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        )
        reasons.append(f"not evaluated for {plural(len(result.skipped), 'group')}: {shown}")
        error = f"{rule.id} " + reasons[-1]
    if result.not_applicable and not count:
        reasons.append(result.not_applicable)
    if result.note:
        reasons.append(result.note)
    reason = "; ".join(reasons) or None
    if count:
        status = "failed"
    elif result.skipped or result.not_applicable:
        status = "not_evaluated"
    else:
        status = "passed"
    return RuleOutcome(rule.id, status, count, reason), error


def _sku_summaries(facts: Facts) -> tuple[SkuSummary, ...]:
    by_sku: dict[str, list[str]] = {}
    for group in facts.groups:
        for sku_id in group.sku_ids:
            by_sku.setdefault(sku_id, []).append(group.id)
    rows = [
        SkuSummary(
            sku_id=sku.sku_id,
            sku_part_number=sku.sku_part_number,
            product_name=facts.product(sku.sku_id),
            enabled=sku.enabled,
            consumed=sku.consumed,
            available=sku.available,
            warning=sku.warning,
            suspended=sku.suspended,
            locked_out=sku.locked_out,
            group_assigned_users=len(facts.group_assigned.get(sku.sku_id, ())),
            waiting_users=len(facts.waiting.get(sku.sku_id, ())),
            assigned_by_groups=tuple(sorted(set(by_sku.get(sku.sku_id, ())))),
        )
        for sku in facts.skus
    ]
    return tuple(sorted(rows, key=lambda s: (s.product_name.casefold(), s.sku_id)))


def _group_summaries(facts: Facts, findings: list[Finding]) -> tuple[GroupSummary, ...]:
    errors: dict[str, int] = {}
    for f in findings:
        if f.kind == FindingKind.LICENSE_ERROR.value and f.group_id:
            errors[f.group_id] = errors.get(f.group_id, 0) + 1
    rows = [
        GroupSummary(
            id=g.id,
            display_name=g.display_name,
            sku_ids=tuple(g.sku_ids),
            processing_state=g.processing_state,
            members=g.member_count,
            users=len(g.user_ids),
            b2b_users=sum(1 for uid in g.user_ids if uid in facts.b2b),
            nested_groups=len(g.member_groups),
            license_errors=errors.get(g.id, 0),
        )
        for g in facts.groups
    ]
    return tuple(sorted(rows, key=lambda g: (g.display_name.casefold(), g.id)))


def evaluate(snapshot: TenantSnapshot, ctx: RuleContext) -> Evaluation:
    """Run every rule on the snapshot (within its scope). Pure: no I/O, deterministic output order."""
    facts = build_facts(snapshot)
    findings: list[Finding] = []
    outcomes: list[RuleOutcome] = []
    errors: list[str] = []
    for rule in RULES.values():
        result = rule.evaluate(facts, ctx)
        findings.extend(result.findings)
        outcome, error = _outcome(rule, result)
        outcomes.append(outcome)
        if error:
            errors.append(error)
    return Evaluation(
        findings=sort_findings(findings),
        outcomes=tuple(outcomes),
        skus=_sku_summaries(facts),
        groups=_group_summaries(facts, findings),
        errors=tuple(errors),
    )
