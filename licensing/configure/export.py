"""``licensing-audit export``: today's group assignments as a ``licensing-desired/1`` file, plan names resolved, so
that ``apply`` of an unedited export changes nothing (a faithful baseline)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from licensing.configure.desired import dump_desired
from licensing.configure.tenant import licensed_groups, read_skus, read_tenant_id
from licensing.errors import BadRequestError
from licensing.graph.client import GraphClient

__all__ = ["export_desired"]


async def export_desired(graph: GraphClient, only: Sequence[str], now: datetime) -> str:
    """The YAML text; BadRequestError naming every ``only`` group the tenant lacks."""
    wanted = [g.strip().lower() for g in only]
    tenant_id = await read_tenant_id(graph)
    skus = await read_skus(graph)
    groups = await licensed_groups(graph, wanted)
    missing = sorted(set(wanted) - {g.id for g in groups})
    if missing:
        raise BadRequestError("--group: the tenant has no group " + ", ".join(missing))
    rows = []
    for g in groups:
        licenses = []
        for p in g.products:
            sku = skus.get(p.sku_id)
            # A SKU the tenant no longer lists keeps its id: apply then names it as unknown (line and all).
            part = sku.part_number if sku else p.sku_id
            plans = [sku.plan_name(d) if sku else d for d in p.disabled_plans]
            licenses.append((part, sorted(plans)))
        rows.append((g.id, g.name, licenses))
    header = (
        f"Exported by licensing-audit export at {now.isoformat(timespec='seconds')} ({len(rows)} groups).",
        "A group that is not listed is unmanaged and never touched; licenses: [] removes every licence of a group.",
        "Review, edit, then: licensing-audit apply FILE (a dry run), and apply FILE --confirm.",
    )
    return dump_desired(tenant_id, rows, header=header)
