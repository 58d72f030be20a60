"""A plan as the ``licensing-audit-plan/1`` JSON document and as the terminal's few lines (docs/plan.md)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import orjson

from licensing.graph.candidates import Candidates
from licensing.plan.assess import Blocker, Plan, Reason

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "PLAN_SCHEMA",
    "candidates_document",
    "fitness",
    "fits",
    "plan_to_json_bytes",
    "plan_to_plain",
    "render_plan",
    "summary_lines",
]

PLAN_SCHEMA: Final = "licensing-audit-plan/1"
SHOWN_PER_KIND: Final = 5  # the terminal, the card and the mail name this many of each kind, then count the rest


def _capped(reasons: Sequence[Reason], per_kind: int | None) -> tuple[list[Reason], int]:
    if per_kind is None:
        return list(reasons), 0
    kept: list[Reason] = []
    seen: dict[str, int] = {}
    for r in reasons:
        seen[r.kind.value] = seen.get(r.kind.value, 0) + 1
        if seen[r.kind.value] <= per_kind:
            kept.append(r)
    return kept, len(reasons) - len(kept)


def plan_to_plain(plan: Plan, *, per_kind: int | None = None) -> dict[str, Any]:
    """The document of docs/plan.md, key for key. ``per_kind`` keeps that many reasons of each kind (the copy
    stored with a queued plan's run) and says how many were left out in ``omitted``."""
    g = plan.group
    blockers, blockers_left = _capped(plan.blockers, per_kind)
    warnings, warnings_left = _capped(plan.warnings, per_kind)
    document = {
        "schema": PLAN_SCHEMA,
        "group": {
            "id": g.id,
            "display_name": g.display_name,
            "security_enabled": g.security_enabled,
            "dynamic": g.dynamic,
            "membership_rule": g.membership_rule,
            "members": g.members,
            "users": g.users,
        },
        "verdict": plan.verdict.value,
        "skus": [
            {
                "sku_id": s.sku_id,
                "sku_part_number": s.sku_part_number,
                "free": s.free,
                "needed": s.needed,
                "already_licensed": s.already_licensed,
            }
            for s in plan.skus
        ],
        "blockers": [
            {
                "kind": r.kind.value,
                "message": r.message,
                "user_id": r.user_id,
                "member_group_id": r.member_group_id,
                "sku_id": r.sku_id,
            }
            for r in blockers
        ],
        "warnings": [
            {"kind": r.kind.value, "message": r.message, "user_id": r.user_id, "sku_id": r.sku_id} for r in warnings
        ],
    }
    if blockers_left or warnings_left:
        document["omitted"] = {"blockers": blockers_left, "warnings": warnings_left}
    return document


def plan_to_json_bytes(plan: Plan) -> bytes:
    return orjson.dumps(plan_to_plain(plan), option=orjson.OPT_INDENT_2) + b"\n"


def _grouped(reasons: Sequence[Reason]) -> list[tuple[str, list[Reason]]]:
    out: dict[str, list[Reason]] = {}
    for r in reasons:
        out.setdefault(r.kind.value, []).append(r)
    return list(out.items())


def summary_lines(plan: Plan) -> list[str]:
    """The verdict, the seats per SKU and each kind of reason with its first few messages (terminal, card, mail)."""
    g = plan.group
    kind = "dynamic group" if g.dynamic else "group"
    lines = [f"{g.display_name or g.id} ({kind}, {g.users} users, {g.members} members): {plan.verdict.value.upper()}"]
    # A SKU that applies to the company is not counted in seats: no seat arithmetic makes it fit (sku_not_assignable).
    company = {b.sku_id for b in plan.blockers if b.kind is Blocker.SKU_NOT_ASSIGNABLE}
    for s in plan.skus:
        if s.sku_id in company:
            lines.append(f"  {s.product} ({s.sku_part_number}): not assignable to a group, no seats counted")
            continue
        lines.append(
            f"  {s.product} ({s.sku_part_number}): {s.needed} {'needs' if s.needed == 1 else 'need'} a seat, "
            f"{s.free} free, {s.already_licensed} already licensed"
        )
        if s.already_licensed:
            # Those holding it directly keep a direct assignment once the group has it: the command that moves
            # them (docs/configure.md, "migrate").
            lines.append(
                f"    once the group holds it, direct holders move to it with: licensing-audit migrate --group {g.id} "
                f"--sku {s.sku_part_number or s.sku_id}"
            )
    for title, reasons in (("Blockers", plan.blockers), ("Warnings", plan.warnings)):
        if not reasons:
            continue
        lines.append(f"{title}:")
        for kind_value, items in _grouped(reasons):
            lines.append(f"  {kind_value} ({len(items)}):")
            lines.extend(f"    - {r.message}" for r in items[:SHOWN_PER_KIND])
            if len(items) > SHOWN_PER_KIND:
                lines.append(f"    - and {len(items) - SHOWN_PER_KIND} more (see --json)")
    if not plan.blockers:
        lines.append("Nothing stops licensing this group" + (" (read the warnings first)." if plan.warnings else "."))
    return lines


def render_plan(plan: Plan, console: Console) -> None:
    for line in summary_lines(plan):
        console.print(line, markup=False, soft_wrap=True, highlight=False)


def fits(plan: Plan) -> list[str]:
    """The SKUs the group could be licensed with, each on its own: none when a blocker other than seats stands,
    else those with a seat for every member who needs one."""
    if any(b.kind is not Blocker.SEATS_SHORT for b in plan.blockers):
        return []
    return [s.sku_part_number or s.sku_id for s in plan.skus if s.needed <= max(s.free, 0)]


def fitness(plan: Plan) -> tuple[bool, int, int, int, int, str]:
    """Fittest first: no blocker but seats, then fits more SKUs, fewer kinds of blocker, fewer warnings, more
    users, by name."""
    others = {b.kind for b in plan.blockers if b.kind is not Blocker.SEATS_SHORT}
    return (
        bool(others),
        -len(fits(plan)),
        len(others),
        len(plan.warnings),
        -plan.group.users,
        plan.group.display_name.casefold(),
    )


def candidates_document(plans: Sequence[Plan], found: Candidates, unassessed: int = 0) -> dict[str, Any]:
    """What the HTML report's Candidates section shows: plain data, so the report needs nothing of this package.

    ``{"skus": [part numbers], "missing_skus": [...], "total": N, "unassessed": M, "groups": [...]}``, each group a
    licensing-audit-plan/1 document (at most 5 reasons of each kind) plus ``"fits"``: the SKUs it could be licensed
    with one at a time (seats are counted per SKU; the expected SKUs are alternatives, not a bundle). Fittest first.
    """
    groups = []
    for plan in sorted(plans, key=fitness):
        document = plan_to_plain(plan, per_kind=SHOWN_PER_KIND)
        document["fits"] = fits(plan)
        groups.append(document)
    return {
        "skus": [s.sku_part_number or s.sku_id for s in found.skus],
        "missing_skus": list(found.missing_skus),
        "total": found.total,
        "unassessed": unassessed,
        "groups": groups,
    }
