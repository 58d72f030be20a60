"""``licensing-audit plan``: may this group be licensed with these SKUs? Read, assess, write (docs/plan.md)."""

from __future__ import annotations

from collections.abc import Sequence

from licensing.graph.candidates import read_candidate
from licensing.graph.client import GraphClient
from licensing.plan.assess import Blocker, Plan, PlanGroup, PlanSku, Reason, Verdict, Warning, assess
from licensing.plan.output import PLAN_SCHEMA, plan_to_json_bytes, plan_to_plain, render_plan, summary_lines

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
    "plan_group",
    "plan_to_json_bytes",
    "plan_to_plain",
    "render_plan",
    "summary_lines",
]


async def plan_group(graph: GraphClient, group_id: str, skus: Sequence[str]) -> Plan:
    """Read the group, its members and the SKUs, and assess them (BadRequestError for what the tenant lacks)."""
    return assess(await read_candidate(graph, group_id, skus))
