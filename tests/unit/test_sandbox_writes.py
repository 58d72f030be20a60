"""The sandbox's assignLicense and its background processing, over HTTP (licensing/sandbox/writes.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from licensing.sandbox import FaultRule, Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox import tenant as tm
from licensing.sandbox.tenant import SandboxTenant
from licensing.sandbox.writes import PROHIBITED_LOCATION

AS_OF = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)


@pytest.fixture
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=3, users=60, groups=12), as_of=AS_OF)


@pytest.fixture
def server(tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(tenant) as srv:
        yield srv


@pytest.fixture
def client(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        yield c


def _sku(tenant: SandboxTenant, part: str) -> str:
    return tenant.sku_by_part(part).sku_id


def _plan(tenant: SandboxTenant, part: str, name: str) -> str:
    return next(p.id for p in tenant.sku_by_part(part).plans if p.name == name)


def _assign(client: httpx.Client, group: str, add: list[dict], remove: list[str] | None = None) -> httpx.Response:
    return client.post(f"/groups/{group}/assignLicense", json={"addLicenses": add, "removeLicenses": remove or []})


def _state(client: httpx.Client, group: str) -> str:
    r = client.get(f"/groups/{group}", params={"$select": "id,licenseProcessingState,assignedLicenses"})
    assert r.status_code == 200, r.text
    return r.json()["licenseProcessingState"]["state"]


def _states(client: httpx.Client, tenant: SandboxTenant, u: int) -> list[dict]:
    r = client.get(f"/users/{tenant.user_id(u)}", params={"$select": "id,licenseAssignmentStates"})
    return r.json()["licenseAssignmentStates"]


def _set_free(tenant: SandboxTenant, part: str, free: int) -> None:
    skus = list(tenant.skus)
    k = tenant.sku_by_part(part).index
    skus[k] = dataclasses.replace(skus[k], enabled=skus[k].consumed + free, warning=0, suspended=0, locked_out=0)
    tenant.skus = tuple(skus)


def test_202_then_processing_moves_on_each_read_of_the_group(client: httpx.Client, tenant: SandboxTenant) -> None:
    grp = tenant.plan_group("plan_ready")
    e3 = _sku(tenant, "SPE_E3")
    consumed = tenant.sku_by_part("SPE_E3").consumed
    r = _assign(client, grp.id, [{"skuId": e3, "disabledPlans": []}])
    assert r.status_code == 202 and r.json()["id"] == grp.id
    assert r.headers["location"].endswith(f"/directoryObjects/{grp.id}/Microsoft.DirectoryServices.Group")
    # assignedLicenses changes at once; the members are processed in the background
    assert _state(client, grp.id) == "ProcessingInProgress"
    assert not any(s["assignedByGroup"] == grp.id for s in _states(client, tenant, grp.users[0]))
    assert _state(client, grp.id) == "ProcessingComplete"
    for u in grp.users:
        mine = [s for s in _states(client, tenant, u) if s["assignedByGroup"] == grp.id]
        assert [(s["skuId"], s["state"]) for s in mine] == [(e3, "Active")]
    assert tenant.sku_by_part("SPE_E3").consumed > consumed


def test_seats_run_out_count_violation_for_users_beyond_them_all_or_nothing(
    client: httpx.Client, tenant: SandboxTenant, server: SandboxServer
) -> None:
    grp = tenant.plan_group("plan_ready")
    _set_free(tenant, "EMS", 1)
    ems, e5 = _sku(tenant, "EMS"), _sku(tenant, "ENTERPRISEPREMIUM")
    e5_before = tenant.sku_by_part("ENTERPRISEPREMIUM").consumed
    assert (
        _assign(client, grp.id, [{"skuId": ems, "disabledPlans": []}, {"skuId": e5, "disabledPlans": []}]).status_code
        == 202
    )
    server.app.settle()
    errors = {
        u: {s["skuId"]: s["error"] for s in _states(client, tenant, u) if s["assignedByGroup"] == grp.id}
        for u in grp.users
    }
    served = [u for u, e in errors.items() if set(e.values()) == {"None"}]
    short = [u for u, e in errors.items() if set(e.values()) == {"CountViolation"}]
    assert len(served) == 1 and len(short) == len(grp.users) - 1
    # all or nothing: the users short of EMS got no E5 either
    assert tenant.sku_by_part("ENTERPRISEPREMIUM").consumed == e5_before + 1
    assert tenant.sku_by_part("EMS").available == 0


def test_no_usage_location_where_the_product_is_offered_prohibited(
    client: httpx.Client, tenant: SandboxTenant, server: SandboxServer
) -> None:
    grp = tenant.groups[tm.G_E3]
    kp = next(u for u in grp.users if tenant.locations[u] == PROHIBITED_LOCATION)
    add = [{"skuId": _sku(tenant, "EMS"), "disabledPlans": []}]
    assert _assign(client, grp.id, add).status_code == 202
    server.app.settle()
    mine = [s for s in _states(client, tenant, kp) if s["assignedByGroup"] == grp.id]
    assert mine and {s["error"] for s in mine} == {"ProhibitedInUsageLocationViolation"}


def test_conflicting_plans_mutually_exclusive_unless_disabled(
    client: httpx.Client, tenant: SandboxTenant, server: SandboxServer
) -> None:
    grp = tenant.plan_group("plan_ready")
    u = grp.users[0]
    tenant.direct[u] = (*tenant.direct.get(u, ()), tenant.sku_by_part("ENTERPRISEPACK").index)
    e3 = _sku(tenant, "SPE_E3")
    assert _assign(client, grp.id, [{"skuId": e3, "disabledPlans": []}]).status_code == 202
    server.app.settle()
    [mine] = [s for s in _states(client, tenant, u) if s["assignedByGroup"] == grp.id]
    assert mine["error"] == "MutuallyExclusiveViolation"
    # disabledPlans honoured: without Yammer in the group's E3 there is nothing to conflict with
    exchange = _plan(tenant, "SPE_E3", "YAMMER_ENTERPRISE")
    assert _assign(client, grp.id, [{"skuId": e3, "disabledPlans": [exchange]}]).status_code == 202
    server.app.settle()
    [mine] = [s for s in _states(client, tenant, u) if s["assignedByGroup"] == grp.id]
    assert mine["error"] == "None" and mine["disabledPlans"] == [exchange]


def test_removing_a_product_another_depends_on_dependency_violation(
    client: httpx.Client, tenant: SandboxTenant, server: SandboxServer
) -> None:
    grp = tenant.plan_group("plan_ready")
    e3 = _sku(tenant, "SPE_E3")
    assert _assign(client, grp.id, [{"skuId": e3, "disabledPlans": []}]).status_code == 202
    server.app.settle()
    u, plain = grp.users[0], grp.users[1]
    tenant.direct[u] = (*tenant.direct.get(u, ()), tenant.sku_by_part("SPE_E5").index)  # P2 needs P1 (from E3)
    server.app._fragments.clear()
    assert _assign(client, grp.id, [], [e3]).status_code == 202
    server.app.settle()
    kept = [s for s in _states(client, tenant, u) if s["assignedByGroup"] == grp.id]
    assert [(s["skuId"], s["state"], s["error"]) for s in kept] == [(e3, "ActiveWithError", "DependencyViolation")]
    assert not [s for s in _states(client, tenant, plain) if s["assignedByGroup"] == grp.id]


def test_403_without_the_write_permission(client: httpx.Client, tenant: SandboxTenant, server: SandboxServer) -> None:
    grp = tenant.plan_group("plan_ready")
    server.set_faults(Faults(permissions=frozenset({"GroupMember.Read.All", "LicenseAssignment.Read.All"})))
    r = _assign(client, grp.id, [{"skuId": _sku(tenant, "SPE_E3"), "disabledPlans": []}])
    assert r.status_code == 403 and r.json()["error"]["code"] == "Authorization_RequestDenied"
    assert not tenant.plan_group("plan_ready").sku_indices
    server.set_faults(Faults(permissions=frozenset({"LicenseAssignment.ReadWrite.All"})))
    assert _assign(client, grp.id, [{"skuId": _sku(tenant, "SPE_E3"), "disabledPlans": []}]).status_code == 202


def test_bad_bodies_are_400_and_change_nothing(client: httpx.Client, tenant: SandboxTenant) -> None:
    grp = tenant.plan_group("plan_ready")
    e3 = _sku(tenant, "SPE_E3")
    assert client.post(f"/groups/{grp.id}/assignLicense", json={"addLicenses": []}).status_code == 400
    assert _assign(client, grp.id, [{"skuId": "00000000-0000-0000-0000-000000000001"}]).status_code == 400
    assert (
        _assign(client, grp.id, [{"skuId": e3, "disabledPlans": ["00000000-0000-0000-0000-000000000002"]}]).status_code
        == 400
    )
    assert _assign(client, grp.id, [], [e3]).status_code == 400  # not assigned to the group
    assert _assign(client, tenant.plan_group("plan_unified").id, [{"skuId": e3}]).status_code == 400
    assert _assign(client, "00000000-0000-0000-0000-000000000000", []).status_code == 404
    assert not tenant.plan_group("plan_ready").sku_indices


def test_accepted_timeout_changes_the_tenant_and_loses_the_answer(
    client: httpx.Client, tenant: SandboxTenant, server: SandboxServer
) -> None:
    grp = tenant.plan_group("plan_ready")
    server.set_faults(Faults(rules=(FaultRule("accepted_timeout", route="assignLicense", first=1, hold_s=1.0),)))
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"/groups/{grp.id}/assignLicense",
            json={"addLicenses": [{"skuId": _sku(tenant, "SPE_E3"), "disabledPlans": []}], "removeLicenses": []},
            timeout=0.3,
        )
    r = client.get(f"/groups/{grp.id}", params={"$select": "assignedLicenses"})
    assert [a["skuId"] for a in r.json()["assignedLicenses"]] == [_sku(tenant, "SPE_E3")]


def test_accepted_timeout_is_for_writes_only() -> None:
    from licensing.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        FaultRule("accepted_timeout", route="group")


def test_reprocess_retries_count_violations_against_the_seats_free_now(
    client: httpx.Client, tenant: SandboxTenant, server: SandboxServer
) -> None:
    grp = tenant.plan_group("plan_ready")
    _set_free(tenant, "EMS", 1)
    ems = _sku(tenant, "EMS")
    assert _assign(client, grp.id, [{"skuId": ems, "disabledPlans": []}]).status_code == 202
    server.app.settle()

    def waiting() -> list[int]:
        return [
            u for u in grp.users
            if any(s["error"] == "CountViolation" for s in _states(client, tenant, u) if s["assignedByGroup"] == grp.id)
        ]  # fmt: skip

    short = waiting()
    assert len(short) == len(grp.users) - 1
    r = client.post(f"/users/{tenant.user_id(short[0])}/reprocessLicenseAssignment")
    assert r.status_code == 200 and r.json()["id"] == tenant.user_id(short[0])
    assert waiting() == short  # no seat free: still waiting
    _set_free(tenant, "EMS", len(short))  # seats bought
    consumed = tenant.sku_by_part("EMS").consumed
    for u in short:
        assert client.post(f"/users/{tenant.user_id(u)}/reprocessLicenseAssignment").status_code == 200
    assert waiting() == []
    assert tenant.sku_by_part("EMS").consumed == consumed + len(short)
    assert client.post("/users/00000000-0000-0000-0000-000000000000/reprocessLicenseAssignment").status_code == 404
    server.set_faults(Faults(permissions=frozenset({"User.Read.All"})))
    assert client.post(f"/users/{tenant.user_id(short[0])}/reprocessLicenseAssignment").status_code == 403
