"""Unit tests of the Graph client at the HTTP boundary (httpx.MockTransport): retries, paging, $batch, errors, mail."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import orjson
import pytest

from licensing import telemetry
from licensing.errors import (
    ConfigurationError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphResponseError,
    GraphThrottledError,
    GraphUnavailableError,
)
from licensing.graph import CollectionRequest, GraphClient, RetryPolicy, parse_retry_after
from licensing.settings import Settings

BASE = "http://127.0.0.1:9/v1.0"
Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _client(handler: Handler, sleeps: Sleeps, **retry: Any) -> GraphClient:
    policy = RetryPolicy(sleep=sleeps, rng=random.Random(1), **retry)
    transport = httpx.MockTransport(handler)
    return GraphClient(
        Settings(graph_base_url=BASE),
        credential="none",
        http_client=httpx.AsyncClient(transport=transport),
        retry=policy,
    )


def with_client(handler: Handler, body: Callable[[GraphClient], Any], **retry: Any) -> tuple[Any, GraphClient, Sleeps]:
    sleeps = Sleeps()

    async def main() -> tuple[Any, GraphClient]:
        client = await _client(handler, sleeps, **retry)
        try:
            return await body(client), client
        finally:
            await client.aclose()

    result, client = run(main())
    return result, client, sleeps


def sequence(*responses: httpx.Response | type[Exception]) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, type):
            raise item("simulated", request=request)  # type: ignore[call-arg]
        return item

    return handler, seen


# ---------------------------------------------------------------- Retry-After and the policy


def test_retry_after_forms() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7", now=now) == 7.0
    assert parse_retry_after("0.25", now=now) == 0.25
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("  ") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("nan") is None
    assert parse_retry_after("-3") == 0.0


def test_backoff_is_full_jitter_and_bounded() -> None:
    policy = RetryPolicy(rng=random.Random(3), backoff_base_s=1.0, backoff_cap_s=8.0)
    for attempt in range(1, 10):
        delay = policy.delay(attempt, None)
        assert 0.0 <= delay <= min(8.0, 2 ** (attempt - 1))
    assert policy.delay(1, "2.5") == 2.5
    assert policy.give_up_reason(1, 180.0, 0.0) is not None
    assert policy.give_up_reason(policy.max_attempts, 1.0, 0.0) is not None
    assert policy.give_up_reason(1, 10.0, policy.max_total_wait_s - 5) is not None
    assert policy.give_up_reason(1, 1.0, 0.0) is None


# ---------------------------------------------------------------- one request with retries


@pytest.mark.parametrize("retry_after", ["2", "1.5", "date"])
def test_429_honours_every_retry_after_form(retry_after: str) -> None:
    value = retry_after
    if retry_after == "date":
        value = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    handler, seen = sequence(
        httpx.Response(429, headers={"Retry-After": value}, json={"error": {"code": "TooManyRequests"}}),
        httpx.Response(200, json={"value": [{"id": "a"}]}, headers={"x-ms-resource-unit": "2"}),
    )
    result, client, sleeps = with_client(handler, lambda c: c.get_json("/groups", route="/groups"))
    assert result == {"value": [{"id": "a"}]}
    assert len(seen) == 2
    slept = [s for s in sleeps.calls if s > 0.0]
    if retry_after == "date":
        assert 15 <= slept[0] <= 20
    else:
        assert slept[0] == float(retry_after)
    stats = client.stats
    assert (stats.requests, stats.throttled, stats.retried, stats.resource_units) == (2, 1, 1, 2.0)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_without_retry_after_backs_off_then_succeeds(status: int) -> None:
    handler, seen = sequence(httpx.Response(status), httpx.Response(200, json={"ok": True}))
    result, client, sleeps = with_client(handler, lambda c: c.get_json("/x", route="/x"))
    assert result == {"ok": True}
    assert len(seen) == 2 and client.stats.retried == 1 and client.stats.throttled == 0
    assert len(sleeps.calls) == 1 and 0.0 <= sleeps.calls[0] <= 0.5


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.ConnectError, httpx.RemoteProtocolError])
def test_timeouts_and_connection_errors_are_retried(exc: type[Exception]) -> None:
    handler, seen = sequence(exc, httpx.Response(200, json={"ok": 1}))
    result, client, _ = with_client(handler, lambda c: c.get_json("/x", route="/x"))
    assert result == {"ok": 1} and len(seen) == 2 and client.stats.retried == 1


def test_attempts_are_bounded() -> None:
    handler, seen = sequence(httpx.Response(503))
    with pytest.raises(GraphUnavailableError, match="gave up after 4 attempts"):
        with_client(handler, lambda c: c.get_json("/x", route="/x"), max_attempts=4)
    assert len(seen) == 4


def test_total_wait_is_bounded() -> None:
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "50"}))
    with pytest.raises(GraphThrottledError, match="in total"):
        with_client(handler, lambda c: c.get_json("/x", route="/x"), max_total_wait_s=120)
    assert len(seen) == 3  # waits 50 + 50; a third wait would pass 120 s


def test_long_retry_after_is_reported_not_slept() -> None:
    handler, seen = sequence(httpx.Response(429, headers={"Retry-After": "300"}))
    sleeps = Sleeps()

    async def main() -> GraphClient:
        client = await _client(handler, sleeps)
        with pytest.raises(GraphThrottledError, match="retry after 300 s"):
            await client.get_json("/x", route="/x")
        await client.aclose()
        return client

    client = run(main())
    assert len(seen) == 1 and sleeps.calls == []
    assert client.warnings and "300" in client.warnings[0]


def test_errors_name_the_missing_permission_and_are_not_retried() -> None:
    body = {"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges"}}
    handler, seen = sequence(httpx.Response(403, json=body))
    with pytest.raises(GraphPermissionError) as err:
        with_client(handler, lambda c: c.get_json("/groups/g1/members", route="/groups/{id}/members"))
    assert err.value.permission == "GroupMember.Read.All"
    assert "Authorization_RequestDenied" in str(err.value) and len(seen) == 1

    handler, _ = sequence(httpx.Response(403, json=body))
    with pytest.raises(GraphPermissionError) as err:
        with_client(handler, lambda c: c.get_json("/subscribedSkus", route="/subscribedSkus"))
    assert err.value.permission == "LicenseAssignment.Read.All or Organization.Read.All"

    handler, _ = sequence(httpx.Response(404, json={"error": {"code": "Request_ResourceNotFound"}}))
    with pytest.raises(GraphNotFoundError):
        with_client(handler, lambda c: c.get_json("/groups/gone", route="/groups/{id}"))


def test_each_exchange_is_reported_to_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def record(method: str, route: str, status: int | None, **kw: Any) -> None:
        calls.append((method, route, status, kw["throttled"], kw["resource_units"]))

    monkeypatch.setattr(telemetry, "graph_request", record)
    handler, _ = sequence(
        httpx.Response(429, headers={"Retry-After": "0"}),
        httpx.Response(200, json={}, headers={"x-ms-resource-unit": "3"}),
    )
    with_client(handler, lambda c: c.get_json("/groups/abc/members?$top=1", route="/groups/{id}/members"))
    assert calls == [
        ("GET", "/groups/{id}/members", 429, True, 0.0),
        ("GET", "/groups/{id}/members", 200, False, 3.0),
    ]


# ---------------------------------------------------------------- paging


def test_paging_follows_next_links_through_empty_pages() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        page = request.url.params.get("page", "1")
        if page == "1":
            return httpx.Response(200, json={"value": [{"id": "a"}], "@odata.nextLink": f"{BASE}/users?page=2"})
        if page == "2":
            return httpx.Response(200, json={"value": [], "@odata.nextLink": f"{BASE}/users?page=3"})
        return httpx.Response(200, json={"value": [{"id": "b"}, {"id": "c"}]})

    items, client, _ = with_client(handler, lambda c: c.get_collection("/users?$top=999", route="/users"))
    assert [i["id"] for i in items] == ["a", "b", "c"] and client.stats.requests == 3


def test_next_link_to_another_host_is_not_followed() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(200, json={"value": [], "@odata.nextLink": "https://evil.example/v1.0/users?page=2"})

    with pytest.raises(GraphResponseError, match="another host"):
        with_client(handler, lambda c: c.get_collection("/users", route="/users"))
    assert all(u.startswith(BASE) for u in seen) and len(seen) == 1


def test_endless_empty_pages_stop_the_loop() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"value": [], "@odata.nextLink": f"{BASE}/users?page=2"})

    with pytest.raises(GraphResponseError, match="empty pages in a row"):
        with_client(handler, lambda c: c.get_collection("/users", route="/users"))


def test_query_strings_keep_odata_syntax() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"value": []})

    from licensing.graph.client import query

    path = "/groups?" + query({"$filter": "assignedLicenses/$count ne 0", "$count": "true", "$top": 999})
    with_client(handler, lambda c: c.get_collection(path, route="/groups", headers={"ConsistencyLevel": "eventual"}))
    url = str(seen[0].url)
    assert "$filter=assignedLicenses/$count%20ne%200" in url and "$count=true" in url and "$top=999" in url
    assert seen[0].headers["ConsistencyLevel"] == "eventual"
    assert "authorization" not in seen[0].headers  # credential none


# ---------------------------------------------------------------- $batch


def _members_graph(pages: dict[str, int], throttle_once: set[str]) -> tuple[Handler, list[dict[str, Any]]]:
    """A fake /$batch over /groups/{id}/members with ``pages[id]`` pages; ids in throttle_once answer 429 once."""
    envelopes: list[dict[str, Any]] = []
    throttled: set[str] = set()

    def page(url: str) -> dict[str, Any]:
        path, _, qs = url.partition("?")
        gid = path.split("/")[2]
        n = int(dict(p.split("=") for p in qs.split("&") if "=" in p).get("page", "1"))
        body: dict[str, Any] = {"value": [{"id": f"{gid}-{n}"}]}
        if n < pages[gid]:
            body["@odata.nextLink"] = f"{BASE}/groups/{gid}/members?page={n + 1}"
        return body

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/$batch"):
            envelope = orjson.loads(request.content)
            envelopes.append(envelope)
            answers = []
            for sub in envelope["requests"]:
                gid = sub["url"].split("/")[2].split("?")[0]
                if gid in throttle_once and gid not in throttled:
                    throttled.add(gid)
                    answers.append({"id": sub["id"], "status": 429, "headers": {"Retry-After": "3"}, "body": {}})
                else:
                    ru = {"x-ms-resource-unit": "2"}
                    answers.append({"id": sub["id"], "status": 200, "headers": ru, "body": page(sub["url"])})
            return httpx.Response(200, json={"responses": list(reversed(answers))})
        return httpx.Response(200, json=page(str(request.url).removeprefix(BASE)), headers={"x-ms-resource-unit": "2"})

    return handler, envelopes


def test_read_collections_batches_first_pages_and_follows_next_pages() -> None:
    pages = {f"g{i}": (3 if i == 0 else 1) for i in range(45)}
    handler, envelopes = _members_graph(pages, throttle_once=set())
    requests = [CollectionRequest(g, f"/groups/{g}/members?$top=999", "/groups/{id}/members") for g in pages]
    done: list[str] = []
    result, client, _ = with_client(handler, lambda c: c.read_collections(requests, on_done=done.append))
    assert sorted(done) == sorted(pages)
    assert result["g0"] == [{"id": "g0-1"}, {"id": "g0-2"}, {"id": "g0-3"}]
    assert all(result[g] == [{"id": f"{g}-1"}] for g in pages if g != "g0")
    assert all(len(e["requests"]) <= 20 for e in envelopes)
    # 45 first pages -> 3 batches; g0's two next pages go alone or packed: at most 2 more requests.
    assert client.stats.requests <= 5
    assert client.stats.resource_units == 2.0 * 47


def test_sub_requests_throttled_inside_a_batch_are_retried_alone() -> None:
    pages = {f"g{i}": 1 for i in range(5)}
    handler, envelopes = _members_graph(pages, throttle_once={"g1", "g3"})
    requests = [CollectionRequest(g, f"/groups/{g}/members", "/groups/{id}/members") for g in pages]
    result, client, sleeps = with_client(handler, lambda c: c.read_collections(requests))
    assert all(result[g] == [{"id": f"{g}-1"}] for g in pages)
    assert len(envelopes) == 2 and len(envelopes[1]["requests"]) == 2
    assert sleeps.calls == [3.0]
    assert client.stats.throttled == 2 and client.stats.retried == 2


def test_a_failing_collection_does_not_stop_the_others() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        envelope = orjson.loads(request.content)
        answers = []
        for sub in envelope["requests"]:
            if "gone" in sub["url"]:
                gone = {"error": {"code": "Request_ResourceNotFound"}}
                answers.append({"id": sub["id"], "status": 404, "body": gone})
            elif "denied" in sub["url"]:
                answers.append({"id": sub["id"], "status": 403, "body": {"error": {"code": "Forbidden"}}})
            else:
                answers.append({"id": sub["id"], "status": 200, "body": {"value": [{"id": "u"}]}})
        return httpx.Response(200, json={"responses": answers})

    requests = [CollectionRequest(g, f"/groups/{g}/members", "/groups/{id}/members") for g in ("ok", "gone", "denied")]
    result, _, _ = with_client(handler, lambda c: c.read_collections(requests))
    assert result["ok"] == [{"id": "u"}]
    assert isinstance(result["gone"], GraphNotFoundError)
    assert isinstance(result["denied"], GraphPermissionError) and result["denied"].permission == "GroupMember.Read.All"


# ---------------------------------------------------------------- mail, credentials, imports


def test_send_mail_expects_202_and_does_not_retry_timeouts() -> None:
    handler, seen = sequence(httpx.Response(202))
    with_client(handler, lambda c: c.send_mail("alerts@contoso.example", {"message": {"subject": "s"}}))
    assert seen[0].method == "POST" and seen[0].url.path == "/v1.0/users/alerts@contoso.example/sendMail"
    assert orjson.loads(seen[0].content) == {"message": {"subject": "s"}}

    handler, seen = sequence(httpx.ReadTimeout, httpx.Response(202))
    with pytest.raises(GraphUnavailableError, match="not retried"):
        with_client(handler, lambda c: c.send_mail("a@b.example", {}))
    assert len(seen) == 1

    handler, _ = sequence(httpx.Response(403, json={"error": {"code": "ErrorAccessDenied"}}))
    with pytest.raises(GraphPermissionError) as err:
        with_client(handler, lambda c: c.send_mail("a@b.example", {}))
    assert err.value.permission == "Mail.Send"


def test_credential_none_only_for_loopback() -> None:
    async def main() -> None:
        GraphClient(Settings(graph_base_url="https://graph.microsoft.com/v1.0"), credential="none")

    with pytest.raises(ConfigurationError, match="loopback"):
        run(main())
    with pytest.raises(ConfigurationError, match="invalid"):
        run(_bad_credential())


async def _bad_credential() -> None:
    GraphClient(Settings(graph_base_url=BASE), credential="password")


def test_token_scope_follows_the_national_cloud() -> None:
    from licensing.graph.auth import graph_scope

    assert graph_scope(Settings()) == "https://graph.microsoft.com/.default"
    usgov = Settings(graph_cloud="usgov", graph_base_url="https://graph.microsoft.us/v1.0")
    assert graph_scope(usgov) == "https://graph.microsoft.us/.default"


def test_importing_the_package_does_not_import_the_sdk() -> None:
    code = (
        "import sys, licensing.graph; "
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('msgraph', 'msgraph_core', 'kiota_http', 'azure')]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == ""


def test_tokens_are_only_for_the_graph_host() -> None:
    from licensing.graph.auth import make_auth_provider

    settings = Settings(graph_cloud="china", graph_base_url="https://microsoftgraph.chinacloudapi.cn/v1.0")
    provider, credential = make_auth_provider(settings, "managed-identity")
    token_provider = provider.access_token_provider  # type: ignore[attr-defined]
    assert token_provider.get_allowed_hosts_validator().get_allowed_hosts() == ["microsoftgraph.chinacloudapi.cn"]
    assert token_provider._scopes == ["https://microsoftgraph.chinacloudapi.cn/.default"]

    async def close() -> None:
        await credential.close()

    run(close())
