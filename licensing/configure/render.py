"""The dry run and the apply as an admin reads them (terminal lines) and as ``licensing-apply/1`` JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import orjson

from licensing.changes import Product
from licensing.configure.diff import ChangeKind, GroupPlan
from licensing.configure.dryrun import DryRun
from licensing.configure.tenant import TenantSku
from licensing.configure.writer import ApplyResult
from licensing.text import one_line

__all__ = ["APPLY_SCHEMA", "apply_document", "apply_json_bytes", "dry_run_lines", "result_lines"]

APPLY_SCHEMA: Final = "licensing-apply/1"
SHOWN_USERS: Final = 5  # without --show-users, the users losing a service are counted, these many named


def _products(products: Sequence[Product], skus: Mapping[str, TenantSku]) -> list[dict[str, Any]]:
    out = []
    for p in products:
        sku = skus.get(p.sku_id)
        out.append(
            {
                "sku_id": p.sku_id,
                "sku_part_number": sku.part_number if sku else p.sku_id,
                "disabled_plans": [sku.plan_name(d) if sku else d for d in p.disabled_plans],
            }
        )
    return out


def _group_status(g: GroupPlan) -> str:
    return "blocked" if g.changed and g.blockers else "change" if g.changed else "unchanged"


def apply_document(run: DryRun, result: ApplyResult | None = None) -> dict[str, Any]:
    """The dry run (and, after --confirm, what happened) as ``licensing-apply/1`` (licensing/data/apply.schema.json)."""
    outcomes = {r.group_id: r for r in result.groups} if result else {}
    groups = []
    for g in run.groups:
        r = outcomes.get(g.group_id)
        groups.append(
            {
                "id": g.group_id,
                "name": g.name,
                "status": _group_status(g),
                "before": _products(g.before, run.skus),
                "after": _products(g.after, run.skus),
                "changes": [
                    {
                        "kind": c.kind.value,
                        "sku_id": c.sku_id,
                        "sku_part_number": c.part_number,
                        "enable_plans": list(c.enable),
                        "disable_plans": list(c.disable),
                    }
                    for c in g.changes
                ],
                "seats": [
                    {"sku_id": s.sku_id, "sku_part_number": s.part_number, "needed": s.needed, "free": s.free}
                    for s in g.seats
                ],
                "gains": [{"plan": p, "users": len(u)} for p, u in g.gains.items()],
                "losses": [{"plan": p, "users": len(u), "user_ids": list(u)} for p, u in g.losses.items()],
                "users_losing_service": len(g.users_losing),
                "blockers": [{"kind": i.kind, "message": i.message, "user_id": i.user_id} for i in g.blockers],
                "warnings": [{"kind": i.kind, "message": i.message, "user_id": i.user_id} for i in g.warnings],
                "outcome": r.outcome.value if r and r.outcome else None,
                "change_id": r.change_id if r else None,
                "error_users": list(r.error_users) if r else [],
            }
        )
    return {
        "schema": APPLY_SCHEMA,
        "dry_run_id": run.id,
        "tenant_id": run.tenant_id,
        "source": run.source,
        "created": run.created.isoformat(),
        "max_loss": run.max_loss,
        "status": run.status.value,
        "confirmed": result is not None,
        "groups": groups,
    }


def apply_json_bytes(run: DryRun, result: ApplyResult | None = None) -> bytes:
    return orjson.dumps(apply_document(run, result), option=orjson.OPT_INDENT_2)


def _users(ids: Sequence[str], labels: Mapping[str, str], show_all: bool) -> str:
    shown = ids if show_all else ids[:SHOWN_USERS]
    text = ", ".join(labels.get(u, u) for u in shown)
    rest = len(ids) - len(shown)
    return text + (f" and {rest} more (--show-users)" if rest else "")


def dry_run_lines(run: DryRun, *, show_users: bool = False) -> list[str]:
    lines = [f"dry run {run.id} of {run.source} on tenant {run.tenant_id}"]
    for g in run.groups:
        label = f"{one_line(g.name) or g.group_id} ({g.group_id})"
        if not g.changed:
            lines.append(f"  {label}: nothing to change")
            continue
        lines.append(f"  {label}: {'BLOCKED' if g.blockers else 'changes'}")
        for c in g.changes:
            if c.kind is ChangeKind.PLANS:
                detail = "; ".join(
                    x
                    for x in (
                        f"turn on {', '.join(c.enable)}" if c.enable else "",
                        f"turn off {', '.join(c.disable)}" if c.disable else "",
                    )
                    if x
                )
                lines.append(f"    ~ {c.part_number}: disabled plans change ({detail})")
            else:
                lines.append(f"    {'+' if c.kind is ChangeKind.ADD else '-'} {c.part_number}")
        for s in g.seats:
            short = f", {s.short} SHORT" if s.short else ""
            lines.append(f"    seats {s.part_number}: {s.needed} needed, {max(s.free, 0)} free{short}")
        for plan, users in g.gains.items():
            lines.append(f"    {len(users)} gain {plan}")
        for plan, users in g.losses.items():
            lines.append(f"    {len(users)} LOSE {plan}: {_users(users, g.labels, show_users)}")
        for issue in g.blockers:
            lines.append(f"    blocker {issue.kind}: {issue.message}")
        for issue in g.warnings:
            lines.append(f"    warning {issue.kind}: {issue.message}")
    status = run.status.value.replace("_", " ")
    lines.append(
        f"{status}; nothing was written"
        + ("" if run.status.value != "changes_pending" else " (apply FILE --confirm to apply)")
    )
    return lines


def result_lines(result: ApplyResult, labels: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
    lines = []
    for r in result.groups:
        outcome = r.outcome.value if r.outcome else "not sent"
        lines.append(f"{outcome:9} {r.message}" + (f" [change {r.change_id}]" if r.change_id else ""))
        names = (labels or {}).get(r.group_id, {})
        for e in r.error_users:
            uid, _, rest = e.partition(" ")
            lines.append(f"          {names.get(uid, uid)} {rest}")
    return lines
