"""The client against Graph's throttling and query rules (httpx.MockTransport at the HTTP boundary).

A 429 inside a $batch pauses every sender; x-ms-throttle-limit-percentage engages the pacer before Graph
throttles (https://learn.microsoft.com/graph/throttling-limits); an id answered twice in a $batch envelope is
sent again; a groups query Graph calls unsupported falls back to the next documented form.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from licensing.graph import GraphClient, RetryPolicy
from licensing.graph.reader import _Reader
from licensing.settings import Settings

BASE = "http://127.0.0.1:9/v1.0"


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(round(seconds, 2))


def client_for(handler: Any, sleeps: Sleeps) -> GraphClient:
    return GraphClient(
        Settings(graph_base_url=BASE),
        credential="none",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        retry=RetryPolicy(sleep=sleeps, rng=random.Random(1)),
    )


def test_a_near_limit_answer_paces_every_next_request() -> None:
    """At 1.0 of the limit after 100 RU, the limit is 100 RU per 10 s: the next request (any route) waits for the
    window to make room (pacing.py; the percentage header, https://learn.microsoft.com/graph/throttling-limits)."""
    sleeps = Sleeps()

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"x-ms-throttle-limit-percentage": "1.0", "x-ms-resource-unit": "100"}
        return httpx.Response(200, json={"value": []}, headers=headers)

    async def main() -> GraphClient:
        client = client_for(handler, sleeps)
        try:
            await client.get_json("/users", route="/users")
            await client.get_json("/groups", route="/groups")
        finally:
            await client.aclose()
        return client

    client = asyncio.run(main())
    # Learned 100 RU from the first answer; the second, paced and still at 1.0, lowered it by 10 %.
    assert client.pacer.limit == pytest.approx(90.0)
    assert len(sleeps.calls) == 1 and sleeps.calls[0] == pytest.approx(10.0, abs=0.5)


def test_a_429_inside_a_batch_pauses_every_sender() -> None:
    sleeps = Sleeps()
    sent: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if request.url.path.endswith("$batch"):
            subs = orjson.loads(request.content)["requests"]
            answers = [{"id": s["id"], "status": 429, "headers": {"Retry-After": "7"}} for s in subs]
            return httpx.Response(200, json={"responses": answers})
        return httpx.Response(200, json={"value": []})

    async def main() -> GraphClient:
        client = client_for(handler, sleeps)
        client.retry.max_attempts = 1  # the batch gives up at once; its pause must still hold the others
        try:
            await client.batch_get([("/a", "/groups/{id}/members", {}), ("/b", "/groups/{id}/members", {})])
            await client.get_json("/users", route="/users")  # another sender, after the batch's 429
        finally:
            await client.aclose()
        return client

    asyncio.run(main())
    assert sent == ["/v1.0/$batch", "/v1.0/users"]
    assert sleeps.calls and sleeps.calls[0] == pytest.approx(7.0, abs=0.05)


def test_an_id_answered_twice_in_a_batch_is_sent_again() -> None:
    sleeps = Sleeps()
    envelopes: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = [s["id"] for s in orjson.loads(request.content)["requests"]]
        envelopes.append(ids)
        if len(envelopes) == 1:  # "0" twice (with different bodies), "1" missing
            answers = [
                {"id": "0", "status": 200, "body": {"value": [{"id": "right"}]}},
                {"id": "0", "status": 200, "body": {"value": [{"id": "wrong"}]}},
            ]
        else:
            answers = [{"id": i, "status": 200, "body": {"value": [{"id": f"ok{i}"}]}} for i in ids]
        return httpx.Response(200, json={"responses": answers})

    async def main() -> list[Any]:
        client = client_for(handler, sleeps)
        try:
            return await client.batch_get([("/a", "/groups/{id}/members", {}), ("/b", "/groups/{id}/members", {})])
        finally:
            await client.aclose()

    results = asyncio.run(main())
    assert envelopes == [["0", "1"], ["0", "1"]]
    assert results == [{"value": [{"id": "ok0"}]}, {"value": [{"id": "ok1"}]}]


def test_an_unsupported_groups_query_falls_back_to_the_next_documented_form() -> None:
    sleeps = Sleeps()
    filters: list[str | None] = []
    group = {"id": "g1", "assignedLicenses": [{"skuId": "s1", "disabledPlans": []}], "licenseProcessingState": None}

    def handler(request: httpx.Request) -> httpx.Response:
        query = dict(p.split("=", 1) for p in unquote(request.url.query.decode()).split("&") if "=" in p)
        filters.append(query.get("$filter"))
        if "$filter" in query:
            error = {"error": {"code": "Request_UnsupportedQuery", "message": "Unsupported Query."}}
            return httpx.Response(400, json=error)
        return httpx.Response(200, json={"value": [group, {"id": "g2", "assignedLicenses": []}]})

    async def main() -> list[Any]:
        client = client_for(handler, sleeps)
        try:
            return await _Reader(client, None).licensed_groups()
        finally:
            await client.aclose()

    groups = asyncio.run(main())
    assert filters == ["assignedLicenses/any()", "assignedLicenses/$count ne 0", None]
    assert [g.id for g in groups] == ["g1"]
