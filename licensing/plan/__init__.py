"""``licensing-audit plan``: may this group be licensed with these SKUs? Read, assess, write (docs/plan.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from licensing.errors import AuditError
from licensing.graph.candidates import read_candidate, read_candidates
from licensing.graph.client import GraphClient
from licensing.model import Sku
from licensing.plan.assess import Blocker, Plan, PlanGroup, PlanSku, Reason, Verdict, Warning, assess
from licensing.plan.output import (
    PLAN_SCHEMA,
    candidates_document,
    plan_to_json_bytes,
    plan_to_plain,
    render_plan,
    summary_lines,
)
from licensing.rules.dynamic import group_licensing_seats

__all__ = [
    "PLAN_SCHEMA",
    "Blocker",
    "Plan",
    "PlanGroup",
    "PlanSku",
    "Reason",
    "Verdict",
    "Warning",
    "assess",
    "candidates_document",
    "plan_candidates",
    "plan_group",
    "plan_to_json_bytes",
    "plan_to_plain",
    "render_plan",
    "summary_lines",
]


async def plan_group(graph: GraphClient, group_id: str, skus: Sequence[str]) -> Plan:
    """Read the group, its members and the SKUs, and assess them (BadRequestError for what the tenant lacks)."""
    return assess(await read_candidate(graph, group_id, skus, p1_seats=_p1_seats))


def _p1_seats(skus: Sequence[Sku]) -> int:
    """The seats that license group-based licensing (what ``p1_not_covered`` compares with)."""
    return group_licensing_seats(skus)[0]


async def plan_candidates(graph: GraphClient, skus: Sequence[str]) -> dict[str, Any]:
    """The report's Candidates section: every unlicensed security group (up to the reader's limit) assessed for
    ``skus`` by the same code as ``plan``, fittest first, as :func:`candidates_document` describes."""
    found = await read_candidates(graph, skus)
    plans: list[Plan] = []
    unassessed = 0
    for candidate in found.groups:
        try:
            plans.append(assess(candidate))
        except AuditError:  # its members could not be read: left out, and counted
            unassessed += 1
    return candidates_document(plans, found, unassessed)
