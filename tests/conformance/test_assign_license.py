"""group and user assignLicense on Microsoft's published bodies: the sandbox takes them, the writer sends their shape.

https://learn.microsoft.com/graph/api/group-assignlicense (examples 1 and 2; sources in fixtures/SOURCES.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.tenant import SandboxTenant

FIXTURES = Path(__file__).parent / "fixtures"


def body(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


@pytest.fixture
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=3, users=60, groups=12), as_of=datetime(2026, 11, 24, tzinfo=UTC))


@pytest.fixture
def client(tenant: SandboxTenant) -> Iterator[httpx.Client]:
    with SandboxServer(tenant) as srv, httpx.Client(base_url=srv.base_url, timeout=10) as c:
        yield c


def _ours(tenant: SandboxTenant, example: dict[str, Any]) -> dict[str, Any]:
    """Microsoft's example with each disabled plan replaced by a plan of the same SKU in the sandbox's catalogue
    (the example's plan ids belong to Microsoft's tenant; the SKU ids are the catalogue's own)."""
    out = {"addLicenses": [], "removeLicenses": list(example["removeLicenses"])}
    for lic in example["addLicenses"]:
        sku = next(s for s in tenant.skus if s.sku_id == lic["skuId"])
        out["addLicenses"].append(
            {"disabledPlans": [p.id for p in sku.plans[: len(lic["disabledPlans"])]], "skuId": lic["skuId"]}
        )
    return out


def test_microsofts_add_then_remove_examples_are_accepted_with_202(client: httpx.Client, tenant: SandboxTenant) -> None:
    group = tenant.plan_group("plan_ready").id
    add = _ours(tenant, body("group-assignlicense-add.json"))
    r = client.post(f"/groups/{group}/assignLicense", json=add)
    assert r.status_code == 202, r.text
    assigned = client.get(f"/groups/{group}", params={"$select": "assignedLicenses"}).json()["assignedLicenses"]
    assert sorted((a["skuId"], sorted(a["disabledPlans"])) for a in assigned) == sorted(
        (a["skuId"], sorted(a["disabledPlans"])) for a in add["addLicenses"]
    )
    # Example 2, verbatim: removes both products.
    verbatim = (FIXTURES / "group-assignlicense-remove.json").read_bytes()
    r = client.post(f"/groups/{group}/assignLicense", content=verbatim, headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    assert client.get(f"/groups/{group}", params={"$select": "assignedLicenses"}).json()["assignedLicenses"] == []


def test_the_answer_has_the_keys_of_microsofts_response_which_is_not_valid_json(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    text = (FIXTURES / "group-assignlicense-response.txt").read_text(encoding="utf-8")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)  # "true,\n}": the writer never depends on the 202's body, it reads the group again
    theirs = orjson.loads(text.replace("true,\n}", "true\n}"))
    group = tenant.plan_group("plan_ready").id
    r = client.post(f"/groups/{group}/assignLicense", json=_ours(tenant, body("group-assignlicense-add.json")))
    ours = r.json()
    for key, value in theirs.items():
        assert key in ours and type(ours[key]) is type(value), key


def test_reprocess_takes_microsofts_bodiless_request_and_answers_its_user_shape(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    """https://learn.microsoft.com/graph/api/user-reprocesslicenseassignment: no request body, 200 and the user."""
    theirs = body("user-reprocesslicenseassignment-response.json")
    user = tenant.user_id(tenant.groups[0].users[0])
    r = client.post(f"/users/{user}/reprocessLicenseAssignment")
    assert r.status_code == 200
    ours = r.json()
    for key in ("accountEnabled", "assignedLicenses"):
        assert type(ours[key]) is type(theirs[key]), key
    for lic in ours["assignedLicenses"]:
        assert set(lic) == set(theirs["assignedLicenses"][0])


def _direct_user(tenant: SandboxTenant) -> tuple[int, list[int]]:
    """A member of a licensed group given Microsoft's two example SKUs' stand-ins directly: FLOW_FREE (the example's
    own skuId) and the group's first product (for the example's 84a661c4…, which the catalogue lacks)."""
    grp = next(g for g in tenant.groups if g.licensed and g.processed and len(g.users))
    u = grp.users[0]
    flow = next(s.index for s in tenant.skus if s.sku_id == "f30db892-07e9-47e9-837c-80727f46fd3d")
    tenant.direct[u] = (flow, grp.sku_indices[0])
    return u, [flow, grp.sku_indices[0]]


def test_user_assignlicense_takes_microsofts_removal_body_and_answers_its_user_shape(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    """https://learn.microsoft.com/graph/api/user-assignlicense: the removal example's body (addLicenses [],
    removeLicenses skuIds), 200 and the updated user; our writer sends exactly that shape."""
    from licensing.changes import Product
    from licensing.configure.writer import assign_body

    theirs = body("user-assignlicense-remove.json")
    u, skus = _direct_user(tenant)
    ours_body = assign_body([Product(tenant.skus[k].sku_id) for k in skus], ())
    assert set(ours_body) == set(theirs) and ours_body["addLicenses"] == theirs["addLicenses"] == []
    assert all(isinstance(s, str) for s in (*ours_body["removeLicenses"], *theirs["removeLicenses"]))
    r = client.post(f"/users/{tenant.user_id(u)}/assignLicense", json=ours_body)
    assert r.status_code == 200, r.text
    response = body("user-assignlicense-response.json")
    for key in ("accountEnabled", "assignedLicenses"):
        assert type(r.json()[key]) is type(response[key]), key
    assert set(r.json()["assignedLicenses"][0]) == set(response["assignedLicenses"][0])
    # A direct removal leaves the inherited assignment intact: the user still holds the group's product.
    states = client.get(f"/users/{tenant.user_id(u)}", params={"$select": "licenseAssignmentStates"}).json()
    left = [s for s in states["licenseAssignmentStates"] if s["skuId"] == tenant.skus[skus[1]].sku_id]
    assert left and all(s["assignedByGroup"] for s in left)


def test_user_assignlicense_cannot_remove_a_licence_only_a_group_assigns(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    grp = next(g for g in tenant.groups if g.licensed and g.processed and len(g.users))
    u = next(x for x in grp.users if not tenant.direct.get(x))
    sku = tenant.skus[grp.sku_indices[0]].sku_id
    r = client.post(f"/users/{tenant.user_id(u)}/assignLicense", json={"addLicenses": [], "removeLicenses": [sku]})
    assert r.status_code == 400 and "inherited from a group" in r.json()["error"]["message"]
    # The example's add-with-disabled-plans shape is taken for a direct assignment (the plans of its own SKU).
    flow = next(s for s in tenant.skus if s.sku_id == "f30db892-07e9-47e9-837c-80727f46fd3d")
    add = {"addLicenses": [{"disabledPlans": [flow.plans[0].id], "skuId": flow.sku_id}], "removeLicenses": []}
    r = client.post(f"/users/{tenant.user_id(u)}/assignLicense", json=add)
    assert r.status_code == 200, r.text
    states = client.get(f"/users/{tenant.user_id(u)}", params={"$select": "licenseAssignmentStates"}).json()
    mine = [s for s in states["licenseAssignmentStates"] if s["skuId"] == flow.sku_id and not s["assignedByGroup"]]
    assert mine and mine[0]["disabledPlans"] == [flow.plans[0].id]
