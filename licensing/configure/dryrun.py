"""The dry run of a desired state: resolve it against the tenant (every unknown reported at once), read each group
that would change, and plan it (licensing.configure.diff), with the ``--max-loss`` guard. Nothing is written."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from licensing.changes import Product
from licensing.configure.desired import DesiredState, DesiredStateError
from licensing.configure.diff import GroupPlan, Issue, plan_group_change
from licensing.configure.tenant import CurrentGroup, TenantSku, match_sku, read_group, read_skus, read_tenant_id
from licensing.graph.candidates import read_candidate
from licensing.graph.client import GraphClient

__all__ = ["DryRun", "DryRunStatus", "dry_run", "resolve"]


class DryRunStatus(StrEnum):
    NOTHING_TO_CHANGE = "nothing_to_change"
    CHANGES_PENDING = "changes_pending"
    BLOCKED = "blocked"


@dataclass(frozen=True, slots=True)
class DryRun:
    id: str
    tenant_id: str
    source: str
    created: datetime
    max_loss: int
    groups: tuple[GroupPlan, ...]
    skus: dict[str, TenantSku]

    @property
    def status(self) -> DryRunStatus:
        if any(g.blockers for g in self.groups if g.changed):
            return DryRunStatus.BLOCKED
        if any(g.changed for g in self.groups):
            return DryRunStatus.CHANGES_PENDING
        return DryRunStatus.NOTHING_TO_CHANGE


def resolve(
    desired: DesiredState, tenant_id: str, skus: dict[str, TenantSku], current: dict[str, CurrentGroup | None]
) -> dict[str, tuple[Product, ...]]:
    """Each managed group's products as ids; DesiredStateError naming every unknown tenant, group, SKU and plan."""
    src = desired.source
    problems: list[str] = []
    if desired.tenant != tenant_id:
        problems.append(
            f"{src}:{desired.tenant_line}: tenant {desired.tenant} is not the tenant signed in to ({tenant_id})"
        )
    out: dict[str, tuple[Product, ...]] = {}
    for group in desired.groups:
        if current.get(group.id) is None:
            problems.append(
                f"{src}:{group.line}: the tenant has no group {group.id}" + (f" ({group.name})" if group.name else "")
            )
        products: list[Product] = []
        for lic in group.licenses:
            sku = match_sku(skus, lic.sku)
            if sku is None:
                problems.append(f"{src}:{lic.line}: unknown SKU {lic.sku!r}: the tenant has not subscribed it")
                continue
            plans: list[str] = []
            for ref in lic.disabled_plans:
                pid = sku.plan_id(ref)
                if pid is None:
                    problems.append(
                        f"{src}:{lic.line}: unknown plan {ref!r}: {sku.part_number} has no such service plan"
                    )
                else:
                    plans.append(pid)
            products.append(Product(sku.sku_id, tuple(sorted(set(plans)))))
        out[group.id] = tuple(sorted(products, key=lambda p: p.sku_id))
    if problems:
        raise DesiredStateError(problems)
    return out


async def dry_run(
    graph: GraphClient,
    desired: DesiredState,
    *,
    max_loss: int,
    now: datetime,
    progress: Callable[[str], None] | None = None,
) -> DryRun:
    tenant_id = await read_tenant_id(graph)
    skus = await read_skus(graph)
    current = {g.id: await read_group(graph, g.id) for g in desired.groups}
    wanted = resolve(desired, tenant_id, skus, current)
    plans: list[GroupPlan] = []
    for group in desired.groups:
        now_group = current[group.id]
        assert now_group is not None  # resolve() refused absent groups
        before, after = now_group.products, wanted[group.id]
        candidate = None
        if before != after:
            if progress is not None:
                progress(f"reading {now_group.name or group.id} and its members")
            refs = sorted({p.sku_id for p in (*before, *after)})
            candidate = await read_candidate(graph, group.id, refs)
        plan = plan_group_change(group.id, now_group.name or group.name, before, after, skus, candidate)
        losing = plan.users_losing
        if len(losing) > max_loss:
            plan = replace(
                plan,
                blockers=(
                    *plan.blockers,
                    Issue(
                        "max_loss",
                        f"{len(losing)} users would lose a service, more than --max-loss {max_loss} allows "
                        "(see --show-users; raise --max-loss to accept it)",
                    ),
                ),
            )
        plans.append(plan)
    return DryRun(str(uuid.uuid4()), tenant_id, desired.source, now, max_loss, tuple(plans), skus)
