"""What the writer reads of the tenant: its id, the SKUs with their service plans and seats, groups' assignments.

Raw JSON through the one Graph client (retries, throttling, hosts); the records here are the writer's own view
(plan names and ids both, disabled plans per product), which the audit's records do not carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from licensing.changes import Product
from licensing.errors import GraphError, GraphNotFoundError
from licensing.graph.client import GraphClient, query

__all__ = ["CurrentGroup", "TenantSku", "licensed_groups", "read_group", "read_skus", "read_tenant_id"]

# https://learn.microsoft.com/graph/api/resources/group: assignedLicenses and licenseProcessingState are returned
# only on $select.
_GROUP_SELECT = "id,displayName,assignedLicenses,licenseProcessingState,securityEnabled"


@dataclass(frozen=True, slots=True)
class TenantSku:
    sku_id: str
    part_number: str
    plans: Mapping[str, str]  # servicePlanId -> servicePlanName
    enabled: int
    consumed: int

    @property
    def free(self) -> int:
        return self.enabled - self.consumed

    def plan_id(self, ref: str) -> str | None:
        r = ref.strip().lower()
        return next((pid for pid, name in self.plans.items() if r in (pid, name.lower())), None)

    def plan_name(self, plan_id: str) -> str:
        return self.plans.get(plan_id, plan_id)


@dataclass(frozen=True, slots=True)
class CurrentGroup:
    id: str
    name: str
    products: tuple[Product, ...]  # sorted by sku id
    processing_state: str | None
    security_enabled: bool | None


def products_of(assigned: Any) -> tuple[Product, ...]:
    """assignedLicenses -> Products (lowercase ids, disabled plans sorted)."""
    out = []
    for lic in assigned if isinstance(assigned, list) else []:
        if isinstance(lic, dict) and isinstance(lic.get("skuId"), str):
            plans = lic.get("disabledPlans")
            plans = plans if isinstance(plans, list) else []
            out.append(Product(lic["skuId"].lower(), tuple(sorted({str(p).lower() for p in plans}))))
    return tuple(sorted(out, key=lambda p: p.sku_id))


def _group(item: Mapping[str, Any]) -> CurrentGroup:
    state = item.get("licenseProcessingState")
    raw = state.get("state") if isinstance(state, dict) else state
    security = item.get("securityEnabled")
    return CurrentGroup(
        id=str(item["id"]).lower(),
        name=str(item.get("displayName") or ""),
        products=products_of(item.get("assignedLicenses")),
        processing_state=str(raw) if isinstance(raw, str) else None,
        security_enabled=security if isinstance(security, bool) else None,
    )


async def read_tenant_id(graph: GraphClient) -> str:
    configured = graph.settings.azure_tenant_id
    if configured:
        return configured.lower()
    page = await graph.get_json("/organization?$select=id", route="/organization", what="the organization")
    value = page.get("value") if isinstance(page, dict) else None
    if not value or not isinstance(value[0], dict) or not value[0].get("id"):
        raise GraphError("the organization (tenant id) could not be read")
    return str(value[0]["id"]).lower()


async def read_skus(graph: GraphClient) -> dict[str, TenantSku]:
    page = await graph.get_json("/subscribedSkus", route="/subscribedSkus", what="the subscribed SKUs")
    out: dict[str, TenantSku] = {}
    for item in page.get("value", []) if isinstance(page, dict) else []:
        if not isinstance(item, dict) or not isinstance(item.get("skuId"), str):
            continue
        units = item.get("prepaidUnits")
        units = units if isinstance(units, dict) else {}
        plans = {
            str(p["servicePlanId"]).lower(): str(p.get("servicePlanName") or p["servicePlanId"])
            for p in item.get("servicePlans") or []
            if isinstance(p, dict) and p.get("servicePlanId")
        }
        sku_id = item["skuId"].lower()
        out[sku_id] = TenantSku(
            sku_id,
            str(item.get("skuPartNumber") or sku_id),
            plans,
            int(units.get("enabled") or 0),
            int(item.get("consumedUnits") or 0),
        )
    return out


def match_sku(skus: Mapping[str, TenantSku], ref: str) -> TenantSku | None:
    r = ref.strip().lower()
    return skus.get(r) or next((s for s in skus.values() if s.part_number.lower() == r), None)


async def read_group(graph: GraphClient, group_id: str) -> CurrentGroup | None:
    """The group's assignment now; None when the tenant has no such group (Graph answers 404)."""
    path = f"/groups/{quote(group_id, safe='')}?" + query({"$select": _GROUP_SELECT})
    try:
        item = await graph.get_json(path, route="/groups/{id}", what=f"group {group_id}")
    except GraphNotFoundError:
        return None
    return _group(item)


async def licensed_groups(graph: GraphClient, only: Sequence[str] = ()) -> list[CurrentGroup]:
    """Every group that assigns a licence (Microsoft's List groups example: ``assignedLicenses/any()``), or the
    groups ``only`` names (licensed or not; BadRequest-worthy absences are the caller's to report)."""
    if only:
        found = [await read_group(graph, gid) for gid in only]
        return [g for g in found if g is not None]
    items = await graph.get_collection(
        "/groups?" + query({"$filter": "assignedLicenses/any()", "$select": _GROUP_SELECT, "$top": 999}),
        route="/groups",
        what="the licensed groups",
    )
    return sorted((_group(i) for i in items), key=lambda g: (g.name.lower(), g.id))
