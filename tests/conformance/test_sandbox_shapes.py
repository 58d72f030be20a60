"""The sandbox answers the requests of Microsoft's examples with the same shapes (keys, JSON types, value sets)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from licensing.sandbox import Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox import tenant as tm
from licensing.sandbox.tenant import SandboxTenant

FIXTURES = Path(__file__).parent / "fixtures"
EVENTUAL = {"ConsistencyLevel": "eventual"}
# Documented value sets: https://learn.microsoft.com/graph/api/resources/subscribedsku and .../licenseassignmentstate
# Written out here on purpose, not imported from licensing.graph.parse: the sandbox is held to Microsoft's list,
# not to the reader's copy of it (a shared wrong belief must not pass).
CAPABILITY = {"Enabled", "Warning", "Suspended", "Deleted", "LockedOut"}
STATES = {"Active", "ActiveWithError", "Disabled", "Error"}
ERRORS = {
    None,
    "None",
    "CountViolation",
    "MutuallyExclusiveViolation",
    "DependencyViolation",
    "ProhibitedInUsageLocationViolation",
    "UniquenessViolation",
    "Other",
}


def body(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def shape(value: Any) -> Any:
    """Keys and JSON types, recursively (lists by the shape of their first item)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items() if not k.startswith("@")}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def same_shape(ours: Any, theirs: Any) -> None:
    """Every key of Microsoft's object is in ours with the same JSON type (ours may have more keys)."""
    a, b = shape(ours), shape(theirs)
    assert isinstance(a, dict) and isinstance(b, dict)
    for key, kind in b.items():
        assert key in a, key
        if isinstance(kind, dict):
            same_shape(ours[key], theirs[key])
        elif isinstance(kind, list):
            assert isinstance(a[key], list), key
            if kind and a[key] and isinstance(kind[0], dict):
                same_shape(ours[key][0], theirs[key][0])
            elif kind and a[key]:
                assert a[key] == kind, key
        elif kind != "NoneType" and a[key] != "NoneType":
            assert a[key] == kind, key


@pytest.fixture(scope="module")
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=3, users=300, groups=20))


@pytest.fixture(scope="module")
def server(tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(tenant) as srv:
        yield srv


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    server.set_faults(Faults())
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        yield c
    server.set_faults(Faults())


def test_subscribed_skus_have_microsofts_shape_and_billing_accounts(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    theirs = body("subscribedskus-list.json")["value"][0]
    ours = client.get("/subscribedSkus").json()["value"]
    for sku in ours:
        same_shape(sku, theirs)
        assert sku["capabilityStatus"] in CAPABILITY
        assert sku["id"] == f"{tenant.tenant_id}_{sku['skuId']}"  # {tenant}_{skuId}, as in Microsoft's example
        assert sku["accountId"] != tenant.tenant_id  # the billing account, never the tenant
    assert len({s["accountId"] for s in ours}) == 2
    # Microsoft's suspended SKU: capabilityStatus Suspended, no enabled unit, consumed > 0.
    assert any(
        s["capabilityStatus"] == "Suspended" and s["prepaidUnits"]["enabled"] == 0 and s["consumedUnits"] > 0
        for s in ours
    )
    # "Enabled indicates that the prepaidUnits property has at least one unit that is enabled."
    assert all(s["prepaidUnits"]["enabled"] > 0 for s in ours if s["capabilityStatus"] == "Enabled")


def test_groups_with_licenses_as_microsofts_example_asks(client: httpx.Client, tenant: SandboxTenant) -> None:
    theirs = body("group-list-with-licenses.json")["value"][0]
    r = client.get("/groups", params={"$select": "id,assignedLicenses", "$filter": "assignedLicenses/any()"})
    assert r.status_code == 200, r.text
    ours = r.json()["value"]
    assert {g["id"] for g in ours} == set(tenant.licensed_group_ids)
    for group in ours:
        assert set(group) == {"id", "assignedLicenses"}
        same_shape(group, {k: v for k, v in theirs.items() if k != "members"})


def test_count_true_without_consistency_level_is_ignored_only_the_count_segment_fails(client: httpx.Client) -> None:
    plain = client.get("/users", params={"$count": "true", "$top": "5"})
    assert plain.status_code == 200 and "@odata.count" not in plain.json()
    assert client.get("/users", params={"$count": "true", "$top": "5"}, headers=EVENTUAL).json()["@odata.count"] > 0
    assert client.get("/users/$count").status_code == 400
    assert client.get("/users/$count", headers=EVENTUAL).status_code == 200


def test_users_count_as_microsofts_example_a_plain_number(client: httpx.Client, tenant: SandboxTenant) -> None:
    """user-list, example 3: ``GET /users/$count`` with ``ConsistencyLevel: eventual`` answers text/plain ``893``."""
    theirs = (FIXTURES / "user-list-count.txt").read_text()
    r = client.get("/users/$count", headers=EVENTUAL)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.text.isdigit() and theirs.isdigit()
    assert int(r.text) == tenant.user_count


def test_upn_starts_with_is_default_and_ends_with_needs_the_advanced_parameters(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    """aad-advanced-queries, the $filter table: userPrincipalName startsWith "Default"; endsWith only with the
    advanced query parameters, refused without them with Microsoft's own example body."""
    theirs = body("users-endswith-upn-missing-advanced-400.json")["error"]
    starts = client.get("/users", params={"$filter": "startswith(userPrincipalName,'a')", "$top": "999"})
    assert starts.status_code == 200, starts.text
    upns = [u["userPrincipalName"] for u in starts.json()["value"]]
    assert upns and all(u[0] in "aA" for u in upns)
    assert any(u[0] == "A" for u in upns), "case-insensitive (an assumption, the pages are silent)"
    ext = {"$filter": "endsWith(userPrincipalName,'#EXT#@" + tenant.domain + "')"}
    refused = client.get("/users", params=ext)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert (error["code"], error["message"]) == (theirs["code"], theirs["message"])
    served = client.get("/users", params={**ext, "$count": "true", "$top": "999"}, headers=EVENTUAL)
    assert served.status_code == 200 and served.json()["value"]
    assert all("#EXT#" in u["userPrincipalName"] for u in served.json()["value"])


def test_upn_prefixes_cover_every_user_once(client: httpx.Client, tenant: SandboxTenant) -> None:
    """The split users scan's chains (licensing/graph/users_scan.py) are disjoint and cover the tenant: the UPNs
    the sandbox makes start with letters of either case, digits and the documented symbols."""
    from licensing.graph.users_scan import UPN_PREFIXES, upn_filter

    seen: list[str] = []
    for prefix in UPN_PREFIXES:
        r = client.get("/users", params={"$filter": upn_filter(prefix), "$select": "id", "$top": "999"})
        assert r.status_code == 200, (prefix, r.text)
        seen += [u["id"] for u in r.json()["value"]]
    assert len(seen) == len(set(seen)) == tenant.user_count
    firsts = {tenant.user_names(u)[3][0] for u in range(tenant.user_count)}
    assert {"2", "0", "_", "'", "!", "#", "^", "~"} <= firsts and any(c.isupper() for c in firsts)


def test_members_and_casts_as_microsofts_examples(client: httpx.Client, tenant: SandboxTenant) -> None:
    g = tenant.groups[tm.G_E5]
    typed = client.get(f"/groups/{g.id}/members").json()["value"]
    assert all("@odata.type" in m for m in typed)
    theirs = body("group-list-members-cast-user.json")["value"][0]
    cast = client.get(f"/groups/{g.id}/members/microsoft.graph.user", params={"$select": "displayName,id"}).json()
    for user in cast["value"]:
        assert set(user) == set(theirs)  # no @odata.type, as in Microsoft's example
        same_shape(user, theirs)


def test_license_assignment_states_have_the_documented_keys_and_values(
    client: httpx.Client, tenant: SandboxTenant
) -> None:
    keys = set(body("licenseassignmentstate.json"))
    users = client.get("/users", params={"$select": "id,licenseAssignmentStates", "$top": "999"}).json()["value"]
    states = [s for u in users for s in u["licenseAssignmentStates"]]
    assert states and all(set(s) == keys for s in states)
    assert {s["state"] for s in states} <= STATES and {s["error"] for s in states} <= ERRORS
    # A user who left a licensed group holds its seat in an error state (a removal that failed).
    former = [s for s in states if s["state"] == "ActiveWithError"]
    assert {s["error"] for s in former} == {"DependencyViolation", "UniquenessViolation"}


def test_batch_answers_in_microsofts_shape_and_out_of_order(client: httpx.Client, tenant: SandboxTenant) -> None:
    theirs = body("json-batching-response.json")["responses"][0]
    requests = [{"id": str(i), "method": "GET", "url": f"/users?$top=1&$select=id&x={i}"} for i in range(4)]
    r = client.post("/$batch", json={"requests": requests})
    answers = r.json()["responses"]
    assert [a["id"] for a in answers] != ["0", "1", "2", "3"] and sorted(a["id"] for a in answers) == [
        "0",
        "1",
        "2",
        "3",
    ]
    for answer in answers:
        assert set(answer) == set(theirs)
        assert answer["status"] == 200 and "x-ms-resource-unit" in answer["headers"]


def test_permission_model_denies_and_limits(client: httpx.Client, server: SandboxServer, tenant: SandboxTenant) -> None:
    g = tenant.groups[tm.G_E5]
    server.set_faults(Faults(permissions=frozenset({"GroupMember.Read.All", "LicenseAssignment.Read.All"})))
    assert client.get("/users", params={"$select": "id"}).status_code == 403
    assert client.get("/directory/subscriptions").status_code == 403  # Organization.Read.All, not LicenseAssignment
    assert client.get("/subscribedSkus").status_code == 200
    select = "id,userType,accountEnabled,licenseAssignmentStates"
    members = client.get(f"/groups/{g.id}/members", params={"$select": select}).json()["value"]
    users = [m for m in members if m["@odata.type"] == "#microsoft.graph.user"]
    # Limited information: only @odata.type and id, every other property null.
    assert users and all({k for k, v in u.items() if v is not None} == {"@odata.type", "id"} for u in users)
    server.set_faults(Faults(permissions=frozenset({"User.ReadBasic.All"})))
    basic = client.get("/users", params={"$select": "id,displayName,accountEnabled,licenseAssignmentStates"})
    assert all(u["displayName"] and u["accountEnabled"] is None for u in basic.json()["value"])


def test_throttled_requests_are_charged_and_usage_is_announced(client: httpx.Client, server: SandboxServer) -> None:
    server.set_faults(Faults(ru_budget=10, ru_window_s=30))
    answers = [client.get("/users", params={"$select": "id", "$top": "1"}) for _ in range(14)]
    statuses = [a.status_code for a in answers]
    assert statuses == [200] * 10 + [429] * 4
    # "Returned only when the application consumed more than 0.8 of its limit" (1 RU a request here).
    pct = [a.headers.get("x-ms-throttle-limit-percentage") for a in answers]
    assert pct[:8] == [None] * 8 and pct[8:10] == ["0.90", "1.00"]
    # Charged while throttled: the usage keeps rising past the budget.
    assert pct[10:] == ["1.10", "1.20", "1.30", "1.40"]
    # Every answer says what it cost; a throttled one says why and at which scope (throttling-limits).
    assert [a.headers.get("x-ms-resource-unit") for a in answers[:10]] == ["1"] * 10
    refused = answers[10].headers
    assert refused["x-ms-throttle-information"] == "ResourceUnitLimitExceeded"
    scope, limit, app, tenant_id = refused["x-ms-throttle-scope"].split("/")
    assert (scope, limit) == ("Tenant_Application", "ReadWrite") and app and tenant_id


def test_sign_in_activity_as_microsofts_list_users_example_serves_it(client: httpx.Client) -> None:
    """user-list: "Requests with $top set higher than 500 return pages with up to 500 users" (no 400); the sign-in
    shapes of Microsoft's example 11 (empty success beside failed attempts, the 0001-01-01 placeholder) appear."""
    theirs = body("user-list-signinactivity.json")["value"][0]
    page = client.get("/users", params={"$select": "id,displayName,userPrincipalName,signInActivity", "$top": "999"})
    assert page.status_code == 200, page.text
    users = page.json()["value"]
    assert len(users) == 300 or len(users) == 500, "at most 500 a page"
    same_shape(users[0], theirs)
    activities = [u["signInActivity"] for u in users]
    attempts_only = [
        a for a in activities if a["lastSuccessfulSignInDateTime"] == "" and (a["lastSignInDateTime"] or "")[:2] == "20"
    ]
    assert attempts_only, "failed attempts without a success"
    assert any(a["lastSuccessfulSignInDateTime"] == "0001-01-01T00:00:00Z" for a in activities), "the placeholder"
    assert any(a["lastSuccessfulSignInDateTime"] is None for a in activities)
    refused = client.get("/users", params={"$select": "id,signInActivity", "$top": "501"})
    assert refused.status_code == 200 and len(refused.json()["value"]) <= 500


def test_a_tenant_without_entra_premium_refuses_sign_in_activity_as_graph_does() -> None:
    ours = body("ours-nonpremium-signinactivity-403.json")["error"]
    tenant = generate_tenant(TenantSpec(seed=3, users=100, groups=12, entra_premium=False))
    with SandboxServer(tenant) as srv, httpx.Client(base_url=srv.base_url, timeout=10) as c:
        refused = c.get("/users", params={"$select": "id,signInActivity"})
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert (error["code"], error["message"]) == (ours["code"], ours["message"])
        assert c.get("/users", params={"$select": "id,accountEnabled"}).status_code == 200, "the rest is served"


def _all(client: httpx.Client, path: str, select: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    page = client.get(path, params={"$select": select}).json()
    while True:
        out += page["value"]
        if "@odata.nextLink" not in page:
            return out
        page = client.get(page["@odata.nextLink"]).json()


@pytest.mark.parametrize("spec", [TenantSpec(seed=3, users=100, groups=12), TenantSpec(seed=7, users=300, groups=24)])
def test_a_tenant_without_entra_premium_holds_no_sku_that_carries_it(spec: TenantSpec) -> None:
    """A tenant holding a SKU with an Entra ID P1/P2 plan (AAD_PREMIUM, AAD_PREMIUM_P2) is a premium tenant, which
    Graph serves signInActivity: the non-premium tenant subscribes none, and assigns only what it subscribes."""
    premium = ("AAD_PREMIUM", "AAD_PREMIUM_P2")
    tenant = generate_tenant(dataclasses.replace(spec, entra_premium=False))
    with SandboxServer(tenant) as srv, httpx.Client(base_url=srv.base_url, timeout=10) as c:
        skus = c.get("/subscribedSkus").json()["value"]
        groups = _all(c, "/groups", "id,assignedLicenses")
        users = _all(c, "/users", "id,assignedLicenses")
        held = c.get("/users", params={"$select": "id,signInActivity"})
    plans = {p["servicePlanName"] for s in skus for p in s["servicePlans"]}
    assert not plans & set(premium), plans & set(premium)
    subscribed = {s["skuId"] for s in skus}
    assigned_by_groups = {lic["skuId"] for g in groups for lic in g["assignedLicenses"]}
    assigned_to_users = {lic["skuId"] for u in users for lic in u["assignedLicenses"]}
    assert assigned_by_groups and assigned_by_groups <= subscribed
    assert assigned_to_users and assigned_to_users <= subscribed
    assert held.status_code == 403, "and signInActivity is refused, as Graph refuses it in such a tenant"
    # The same spec with P1/P2 (the default) does hold such SKUs: the two tenants differ in exactly that.
    assert any(p.name in premium for s in generate_tenant(spec).skus for p in s.plans)
