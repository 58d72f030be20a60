"""A migration as an admin reads it (terminal lines) and as ``licensing-migrate/1`` JSON
(licensing/data/migrate.schema.json)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from licensing.configure.migrate import MIGRATE_SCHEMA, Migration, Verdict
from licensing.configure.migrate_confirm import Done
from licensing.text import one_line

__all__ = ["migrate_json_bytes", "migrate_lines", "migrate_result_lines"]


def _waves(run: Migration) -> dict[str, int]:
    return {uid: n for n, users in enumerate(run.wave_users(), start=1) for uid in users}


def migrate_document(run: Migration, done: Sequence[Done] | None = None, stopped: str = "") -> dict[str, Any]:
    waves = _waves(run)
    outcomes = {d.user_id: d for d in done or ()}
    users = []
    for r in run.removals:
        d = outcomes.get(r.user_id)
        sku = run.skus.get(r.sku_id)
        users.append(
            {
                "user_id": r.user_id,
                "label": r.label,
                "account_enabled": r.account_enabled,
                "sku_id": r.sku_id,
                "sku_part_number": r.part_number,
                "verdict": r.verdict.value,
                "remove": r.remove,
                "reason": r.reason,
                "direct_disabled_plans": [sku.plan_name(p) if sku else p for p in r.disabled_plans],
                "lost_plans": list(r.lost),
                "warnings": [{"kind": k, "message": m} for k, m in r.warnings],
                "wave": waves.get(r.user_id) if r.remove else None,
                "outcome": d.outcome.value if d and r.remove else None,
                "change_id": d.change_id if d and r.remove else None,
            }
        )
    return {
        "schema": MIGRATE_SCHEMA,
        "migration_id": run.id,
        "tenant_id": run.tenant_id,
        "group_id": run.group.id,
        "group_name": run.group.name,
        "created": run.created.isoformat(),
        "accept_loss": run.accept_loss,
        "waves": [len(w) for w in run.wave_users()],
        "status": run.status.value,
        "confirmed": done is not None,
        "stopped": stopped or None,
        "notes": list(run.notes),
        "users": users,
    }


def migrate_json_bytes(run: Migration, done: Sequence[Done] | None = None, stopped: str = "") -> bytes:
    return orjson.dumps(migrate_document(run, done, stopped), option=orjson.OPT_INDENT_2)


_TITLES = {
    Verdict.SAFE: "safe to remove",
    Verdict.WOULD_LOSE: "WOULD LOSE",
    Verdict.NOT_YET: "not yet inherited",
    Verdict.KEPT: "kept on purpose",
}


def migrate_lines(run: Migration, *, confirming: bool = False) -> list[str]:
    g = run.group
    lines = [f"migration {run.id} of {one_line(g.name) or g.id} ({g.id}) on tenant {run.tenant_id}"]
    waves = _waves(run)
    for verdict in Verdict:
        rs = [r for r in run.removals if r.verdict is verdict]
        if not rs:
            continue
        lines.append(f"  {_TITLES[verdict]}: {len(rs)}")
        for r in rs:
            wave = f" [wave {waves[r.user_id]}]" if r.remove else ""
            lines.append(f"    {r.label} ({r.user_id}) {r.part_number}: {one_line(r.reason)}{wave}")
            for kind, message in r.warnings:
                lines.append(f"      warning {kind}: {message}")
    for note in run.notes:
        lines.append(f"  note: {note}")
    sizes = ", ".join(str(len(w)) for w in run.wave_users())
    status = run.status.value.replace("_", " ")
    if confirming and run.to_remove:
        lines.append(f"{status}: removing them in waves of {sizes}")
    else:
        tail = f" (waves of {sizes}; migrate … --confirm to remove them)" if run.to_remove else ""
        lines.append(f"{status}; nothing was written{tail}")
    return lines


def migrate_result_lines(done: Sequence[Done], stopped: str, migration_id: str) -> list[str]:
    lines = [f"{d.outcome.value:9} wave {d.wave} {d.label} [change {d.change_id}]" for d in done]
    if stopped:
        lines.append(f"STOPPED: {stopped}")
    lines.append(f"migration {migration_id}: rollback {migration_id} --confirm re-adds what it removed")
    return lines
