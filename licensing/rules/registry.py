"""The registry of rules (one per finding kind) and :func:`evaluate`: snapshot -> findings, outcomes, summaries."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from licensing.kinds import CATALOGUE, KIND_ORDER
from licensing.model import (
    Finding,
    FindingKind,
    GroupSummary,
    OutcomeStatus,
    RuleOutcome,
    Scope,
    Severity,
    SkuSummary,
    TenantSnapshot,
)
from licensing.rules import drift, dynamic, groups, lifecycle, reclaim, seats
from licensing.rules.base import Facts, Rule, RuleContext, RuleResult, build_facts, plural, subject_of

__all__ = ["RULES", "Evaluation", "evaluate", "sort_findings"]


# The evaluator of every kind; title, severity and remediation come from the catalogue (licensing/kinds.py).
_EVALUATORS: Final[Mapping[str, Callable[[Facts, RuleContext], RuleResult]]] = MappingProxyType(
    {
        FindingKind.SEAT_SHORTAGE: seats.evaluate_seat_shortage,
        FindingKind.SEAT_LOW: seats.evaluate_seat_low,
        FindingKind.SEAT_FORECAST: seats.evaluate_seat_forecast,
        FindingKind.UNITS_EXPIRING: seats.evaluate_units_expiring,
        FindingKind.B2B_MEMBER: groups.evaluate_b2b_member,
        FindingKind.NESTED_GROUP: groups.evaluate_nested_group,
        FindingKind.LICENSE_ERROR: groups.evaluate_license_error,
        FindingKind.PROCESSING_INCOMPLETE: groups.evaluate_processing_incomplete,
        FindingKind.DISABLED_USER_LICENSED: groups.evaluate_disabled_user_licensed,
        FindingKind.REDUNDANT_DIRECT_ASSIGNMENT: groups.evaluate_redundant_direct_assignment,
        FindingKind.EMPTY_LICENSED_GROUP: groups.evaluate_empty_licensed_group,
        FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED: seats.evaluate_expected_sku,
        FindingKind.DYNAMIC_GROUP_PAUSED: dynamic.evaluate_dynamic_group_paused,
        FindingKind.DYNAMIC_RULE_ADMITS_GUESTS: dynamic.evaluate_dynamic_rule_admits_guests,
        FindingKind.LICENSED_GROUP_SHRANK: dynamic.evaluate_licensed_group_shrank,
        FindingKind.P1_COVERAGE_SHORT: dynamic.evaluate_p1_coverage_short,
        FindingKind.SUBSCRIPTION_RENEWAL: lifecycle.evaluate_subscription_renewal,
        FindingKind.INACTIVE_USER_LICENSED: reclaim.evaluate_inactive_user_licensed,
        FindingKind.LICENSE_DRIFT: drift.evaluate_license_drift,
    }
)
RULES: Final[Mapping[str, Rule]] = MappingProxyType(
    {kind: Rule(spec=CATALOGUE[kind], evaluate=_EVALUATORS[kind]) for kind in CATALOGUE}
)


@dataclass(frozen=True, slots=True)
class Evaluation:
    findings: tuple[Finding, ...]
    outcomes: tuple[RuleOutcome, ...]
    skus: tuple[SkuSummary, ...]
    groups: tuple[GroupSummary, ...]
    errors: tuple[str, ...]  # rules (or parts of them) that could not be evaluated because data was not read


def sort_findings(findings: list[Finding]) -> tuple[Finding, ...]:
    """Severity (critical first), then kind in catalogue order, then subject ids: stable across runs."""
    return tuple(
        sorted(findings, key=lambda f: (-Severity(f.severity).rank, KIND_ORDER.get(f.kind, 99), subject_of(f)))
    )


def _outcome(rule: Rule, result: RuleResult) -> tuple[RuleOutcome, str | None]:
    count = len(result.findings)
    if result.blocked:
        return RuleOutcome(
            rule.id, OutcomeStatus.NOT_EVALUATED, 0, result.blocked
        ), f"{rule.id} not evaluated: {result.blocked}"
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
        status = OutcomeStatus.FAILED
    elif result.skipped or result.not_applicable:
        status = OutcomeStatus.NOT_EVALUATED
    else:
        status = OutcomeStatus.PASSED
    return RuleOutcome(rule.id, status, count, reason), error


def _sku_summaries(facts: Facts, ctx: RuleContext) -> tuple[SkuSummary, ...]:
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
            reclaimable=(found.seats if (found := reclaim.reclaimable(facts, ctx, sku.sku_id)) else 0),
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


def _unlicensed_group(facts: Facts) -> str | None:
    """Why a group-scoped audit has nothing to judge: its group was read and assigns no license (the reader keeps
    only groups that assign one), or None."""
    gid = facts.scope_group_id
    if facts.scope is not Scope.GROUP or gid is None or facts.groups or gid in facts.unreadable_members:
        return None
    return f"group {gid} assigns no license: nothing of group-based licensing to audit (is it fit? see plan)"


def evaluate(snapshot: TenantSnapshot, ctx: RuleContext) -> Evaluation:
    """Run every rule on the snapshot (within its scope). Pure: no I/O, deterministic output order."""
    facts = build_facts(snapshot)
    findings: list[Finding] = []
    outcomes: list[RuleOutcome] = []
    errors: list[str] = []
    unlicensed = _unlicensed_group(facts)
    if unlicensed:
        # Nothing of group-based licensing to audit: every rule says so, none passes, no alert state moves.
        outcomes = [RuleOutcome(rule.id, OutcomeStatus.NOT_EVALUATED, 0, unlicensed) for rule in RULES.values()]
        return Evaluation(findings=(), outcomes=tuple(outcomes), skus=(), groups=(), errors=())
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
        skus=_sku_summaries(facts, ctx),
        groups=_group_summaries(facts, findings),
        errors=tuple(errors),
    )
