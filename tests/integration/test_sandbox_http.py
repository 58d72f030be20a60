"""Integration tests of the sandbox over real HTTP (httpx): Graph shapes, paging, queries, $batch, faults, RU, mail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest

from licensing.sandbox import FaultRule, Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox import tenant as tm

EVENTUAL = {"ConsistencyLevel": "eventual"}


@pytest.fixture(scope="module")
def tenant():
    return generate_tenant(TenantSpec(seed=21, users=400, groups=18))


@pytest.fixture(scope="module")
def server(tenant):
    with SandboxServer(tenant) as srv:
        yield srv


@pytest.fixture
def client(server):
    server.set_faults(Faults())
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        yield c
    server.set_faults(Faults())


def _all(client, url, params=None, headers=None):
    pages, items = [], []
    r = client.get(url, params=params, headers=headers)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(len(body["value"]))
        items += body["value"]
        nxt = body.get("@odata.nextLink")
        if not nxt:
            return items, pages
        assert nxt.startswith(client.base_url.__str__().rstrip("/"))
        r = client.get(nxt, headers=headers)


def test_paging_is_complete_with_empty_and_short_pages(client, server, tenant):
    server.set_faults(
        Faults(rules=(FaultRule("empty_page", "users", first=3, after=1), FaultRule("short_page", "users", first=2)))
    )
    users, pages = _all(client, "/users", {"$top": "37", "$select": "id"})
    ids = [u["id"] for u in users]
    assert len(ids) == len(set(ids)) == tenant.user_count
    assert pages.count(0) == 3 and min(p for p in pages if p) < 37


def test_member_casts_and_odata_types(client, tenant):
    g = tenant.groups[tm.G_E5]
    members, _ = _all(client, f"/groups/{g.id}/members", {"$top": "5"})
    types = {m["@odata.type"] for m in members}
    assert types == {"#microsoft.graph.user", "#microsoft.graph.group"}
    users, _ = _all(client, f"/groups/{g.id}/members/microsoft.graph.user", {"$select": "id,userType"})
    groups, _ = _all(client, f"/groups/{g.id}/members/microsoft.graph.group", {"$select": "id,displayName"})
    # Microsoft's example of an OData cast (group-list-members, example 4) shows objects without @odata.type.
    assert not any("@odata.type" in u for u in users) and len(users) == len(g.users)
    assert [x["id"] for x in groups] == [tenant.groups[tm.G_NESTED].id]
    trans, _ = _all(client, f"/groups/{g.id}/transitiveMembers/microsoft.graph.user", {"$select": "id"})
    nested_user = tenant.user_id(tm.U_NESTED_ONLY[0])
    assert nested_user in {x["id"] for x in trans} and nested_user not in {x["id"] for x in users}
    kiosk, _ = _all(client, f"/groups/{tenant.groups[tm.G_KIOSK].id}/members")
    assert {k["@odata.type"] for k in kiosk} == {"#microsoft.graph.device"}


def test_select_controls_license_properties(client, tenant):
    plain = client.get("/users", params={"$top": "3"}).json()["value"][0]
    assert "licenseAssignmentStates" not in plain and "assignedLicenses" not in plain and "userPrincipalName" in plain
    sel = "id,userType,accountEnabled,assignedLicenses,licenseAssignmentStates"
    u = tenant.user_id(tm.U_ERRORS[0])
    body = client.get(f"/users/{u}", params={"$select": sel}).json()
    assert set(body) - {"@odata.context"} == set(sel.split(","))
    (state,) = body["licenseAssignmentStates"]
    assert state["state"] == "Error" and state["error"] == "MutuallyExclusiveViolation"
    assert state["assignedByGroup"] == tenant.groups[tm.G_E3].id and body["assignedLicenses"] == []
    assert set(state) == {"skuId", "assignedByGroup", "state", "error", "disabledPlans", "lastUpdatedDateTime"}
    group = client.get(f"/groups/{tenant.groups[tm.G_E3].id}").json()
    assert "assignedLicenses" not in group and "licenseProcessingState" not in group
    group = client.get(
        f"/groups/{tenant.groups[tm.G_E3].id}", params={"$select": "id,assignedLicenses,licenseProcessingState"}
    ).json()
    assert group["licenseProcessingState"] == {"state": "ProcessingComplete"}
    assert group["assignedLicenses"][0]["skuId"] == tenant.sku_by_part("SPE_E3").sku_id
    r = client.get("/users", params={"$select": "id,favouriteColour"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "Request_BadRequest"
    assert "innerError" in r.json()["error"]


def test_count_filter_needs_consistency_level_and_count(client, tenant):
    params = {"$filter": "assignedLicenses/$count ne 0", "$select": "id"}
    for p, h in ((params, None), ({**params, "$count": "true"}, None), (params, EVENTUAL)):
        r = client.get("/groups", params=p, headers=h)
        assert r.status_code == 400, (p, h)
        assert r.json()["error"]["code"] in ("Request_UnsupportedQuery", "Request_BadRequest")
    groups, _ = _all(client, "/groups", {**params, "$count": "true", "$top": "4"}, EVENTUAL)
    assert {g["id"] for g in groups} == set(tenant.licensed_group_ids)
    first = client.get("/groups", params={**params, "$count": "true"}, headers=EVENTUAL).json()
    assert first["@odata.count"] == len(tenant.licensed_group_ids)
    assert client.get("/users", params={"$top": "1000"}).status_code == 400
    assert client.get("/users", params={"$expand": "memberOf"}).status_code == 400
    errs = client.get("/groups", params={"$filter": "hasMembersWithLicenseErrors eq true", "$select": "id"}).json()
    assert tenant.groups[tm.G_E3].id in {g["id"] for g in errs["value"]}
    assert tenant.groups[tm.G_E5].id not in {g["id"] for g in errs["value"]}
    with_errors, _ = _all(client, f"/groups/{tenant.groups[tm.G_E3].id}/membersWithLicenseErrors", {"$select": "id"})
    assert {tenant.user_id(u) for u in tm.U_ERRORS} <= {u["id"] for u in with_errors}
    assert client.get("/users/$count", headers=EVENTUAL).text == str(tenant.user_count)


def test_subscribed_skus_and_subscriptions_shapes(client, tenant):
    skus = client.get("/subscribedSkus").json()["value"]
    assert [s["skuId"] for s in skus] == list(tenant.sku_ids)
    e3 = next(s for s in skus if s["skuPartNumber"] == "ENTERPRISEPACK")
    assert set(e3["prepaidUnits"]) == {"enabled", "suspended", "warning", "lockedOut"}
    assert e3["consumedUnits"] == e3["prepaidUnits"]["enabled"] and e3["appliesTo"] == "User"
    assert {s["appliesTo"] for s in skus} == {"User", "Company"}
    subs = client.get("/directory/subscriptions").json()["value"]
    assert {s["status"] for s in subs} >= {"Enabled", "Warning", "Suspended", "LockedOut"}
    org = client.get("/organization").json()["value"][0]
    assert org["id"] == tenant.tenant_id and org["verifiedDomains"][0]["isDefault"] is True


def test_batch_sub_requests_are_throttled_on_their_own(client, server, tenant):
    server.set_faults(Faults(rules=(FaultRule("429", "members", first=1, retry_after="0.05"),)))
    g = tenant.groups[tm.G_E3].id
    reqs = [{"id": str(i), "method": "GET", "url": f"/groups/{g}/members?$select=id&$top=10"} for i in range(3)]
    r = client.post("/$batch", json={"requests": reqs})
    assert r.status_code == 200
    statuses = {x["id"]: x for x in r.json()["responses"]}
    assert statuses["0"]["status"] == 429 and statuses["0"]["headers"]["Retry-After"] == "0.05"
    assert statuses["1"]["status"] == statuses["2"]["status"] == 200
    assert statuses["1"]["body"]["@odata.nextLink"].startswith(server.base_url)
    assert statuses["1"]["headers"]["x-ms-resource-unit"] == "2"
    too_many = [{"id": str(i), "method": "GET", "url": "/organization"} for i in range(21)]
    assert client.post("/$batch", json={"requests": too_many}).status_code == 400
    assert server.stats["batch_subrequests"] >= 3


@pytest.mark.parametrize("status", [500, 502, 503, 504, 403])
def test_status_faults(client, server, tenant, status):
    server.set_faults(Faults(rules=(FaultRule(str(status), "members", first=1),)))
    url = f"/groups/{tenant.groups[tm.G_E5].id}/members"
    r = client.get(url)
    assert r.status_code == status and "error" in r.json()
    if status == 403:
        assert r.json()["error"]["code"] == "Authorization_RequestDenied"
    assert client.get(url).status_code == 200  # only the first one
    assert client.get("/users", params={"$top": "1"}).status_code == 200  # other routes untouched


@pytest.mark.parametrize("retry_after", ["2", "0.05", "date:3", None, "300"])
def test_429_retry_after_forms(client, server, retry_after):
    server.set_faults(Faults(rules=(FaultRule("429", "users", first=1, retry_after=retry_after),)))
    r = client.get("/users", params={"$top": "1"})
    assert r.status_code == 429 and r.json()["error"]["code"] == "TooManyRequests"
    value = r.headers.get("Retry-After")
    if retry_after is None:
        assert value is None
    elif retry_after.startswith("date:"):
        assert parsedate_to_datetime(value).tzinfo is not None
    else:
        assert value == retry_after
    assert server.stats["throttled"] >= 1


def test_rate_faults_are_deterministic(client, server):
    def run():
        server.set_faults(Faults(rules=(FaultRule("500", "users", rate=0.3),), seed=42))
        return [client.get("/users", params={"$top": "1"}).status_code for _ in range(30)]

    first = run()
    assert first == run() and 0 < first.count(500) < 30


def test_reset_and_timeout(server):
    server.set_faults(
        Faults(rules=(FaultRule("reset", "organization", first=1), FaultRule("timeout", "users", first=1, hold_s=5)))
    )
    with httpx.Client(base_url=server.base_url, timeout=0.3) as c:
        with pytest.raises(httpx.TransportError):
            c.get("/organization")
        assert c.get("/organization").status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            c.get("/users")
        assert c.get("/users", params={"$top": "1"}).status_code == 200
    server.set_faults(Faults())


def test_unknown_type_and_extra_fields(client, server, tenant):
    server.set_faults(Faults(rules=(FaultRule("unknown_type", "members", first=1),)))
    body = client.get(f"/groups/{tenant.groups[tm.G_E3].id}/members", params={"$top": "5"}).json()
    assert body["value"][-1]["@odata.type"] == "#microsoft.graph.sandboxFutureObject"
    assert all("sandboxFutureField" in v for v in body["value"][:-1])


def test_deleted_group_answers_404(tenant):
    with SandboxServer(tenant) as srv, httpx.Client(base_url=srv.base_url) as c:
        gid = tenant.groups[tm.G_BI].id
        assert c.get(f"/groups/{gid}/members").status_code == 200
        srv.delete_group(gid)
        r = c.get(f"/groups/{gid}/members")
        assert r.status_code == 404 and r.json()["error"]["code"] == "Request_ResourceNotFound"
        assert c.get(f"/groups/{gid}").status_code == 404
        listed, _ = _all(c, "/groups", {"$select": "id", "$top": "999"})
        assert gid not in {g["id"] for g in listed}


def test_resource_units_header_and_budget(client, server, tenant):
    assert client.get("/users", params={"$top": "1"}).headers["x-ms-resource-unit"] == "2"
    assert client.get("/users", params={"$top": "1", "$select": "id"}).headers["x-ms-resource-unit"] == "1"
    g = tenant.groups[tm.G_E3].id
    assert client.get(f"/groups/{g}/members").headers["x-ms-resource-unit"] == "3"
    assert client.get(f"/groups/{g}/transitiveMembers").headers["x-ms-resource-unit"] == "5"
    assert client.get("/subscribedSkus").headers["x-ms-resource-unit"] == "3"
    server.set_faults(Faults(ru_budget=10, ru_window_s=60))
    codes = [client.get(f"/groups/{g}/members").status_code for _ in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    r = client.get(f"/groups/{g}/members")
    assert int(r.headers["Retry-After"]) >= 1
    before = server.stats["ru_charged"]
    server.set_faults(Faults(ru_budget=0))  # Graph's budget by tenant size: no throttling at this pace
    assert client.get(f"/groups/{g}/members").status_code == 200
    assert server.stats["ru_charged"] == before + 3
    stats = client.get(server.base_url.replace("/v1.0", "/_sandbox/stats")).json()
    assert stats["throttled"] >= 3 and stats["by_route"]["members"] >= 1


def test_send_mail_is_captured(client, server):
    msg = {
        "message": {"subject": "Audit", "body": {"contentType": "HTML", "content": "<p>x</p>"}},
        "saveToSentItems": False,
    }
    r = client.post("/users/alerts@contoso.example/sendMail", json=msg)
    assert r.status_code == 202 and r.content == b""
    assert server.sent_mail[-1] == {"mailbox": "alerts@contoso.example", "body": msg}
    assert client.post("/users/alerts@contoso.example/sendMail", json={"nope": 1}).status_code == 400


def test_latency_sleeps(client, server):
    server.latency_ms = 80
    try:
        t0 = time.perf_counter()
        client.get("/organization")
        assert time.perf_counter() - t0 >= 0.08
    finally:
        server.latency_ms = 0


def test_unknown_route_and_bad_token(client):
    r = client.get("/me/drive")
    assert r.status_code == 400 and r.json()["error"]["code"] == "BadRequest"
    r = client.get("/users", params={"$skiptoken": "garbage"})
    assert r.status_code == 400


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_100k_users_fit_in_memory_and_serve():
    before = _rss_kb()
    big = generate_tenant(TenantSpec(seed=2, users=100_000, groups=1_000))
    with SandboxServer(big) as srv, httpx.Client(base_url=srv.base_url, timeout=30) as c:
        sel = "id,userType,accountEnabled,assignedLicenses,licenseAssignmentStates"
        r = c.get("/users", params={"$top": "999", "$select": sel})
        assert r.status_code == 200 and len(r.json()["value"]) == 999
        r = c.get("/groups", params={"$filter": "assignedLicenses/$count ne 0", "$count": "true"}, headers=EVENTUAL)
        assert r.json()["@odata.count"] == len(big.licensed_group_ids)
    grown_mb = (_rss_kb() - before) / 1024
    assert grown_mb < 300, f"RSS grew {grown_mb:.0f} MB"


def test_command_line_prints_base_url_and_stops_on_sigterm():
    cmd = [sys.executable, "-m", "licensing.sandbox", "--port", "0", "--seed", "1", "--users", "100", "--groups", "12"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:") and line.endswith("/v1.0")
        # Issue 30, item 11: and how to point an audit at it (stderr: stdout stays the URL alone).
        hint = proc.stderr.readline().strip()
        assert f"licensing-audit run --graph-url {line} --credential none --store none" in hint
        assert httpx.get(f"{line}/organization", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
