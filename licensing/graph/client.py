"""The Graph client: one HTTP exchange through the SDK adapter, retries, paging, JSON $batch, stats.

The msgraph-sdk request adapter carries credentials, the base URL, its middleware and the
error mapping; bodies come back as raw bytes (``send_primitive_async(..., "bytes", ...)``)
parsed with orjson, because the SDK's generated models cost ~2.7 ms of CPU per object
(docs/design.md). The SDK's RetryHandler is left out of the middleware: this module owns the
retry policy (:class:`~licensing.graph.retry.RetryPolicy`), so retries are never doubled.
Everything heavy (msgraph, kiota, azure-identity) is imported inside functions.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import orjson

from licensing import telemetry
from licensing.errors import (
    GraphAuthError,
    GraphError,
    GraphOutcomeUnknownError,
    GraphResponseError,
    GraphUnavailableError,
    redact_text,
    redact_url,
)
from licensing.graph.pacing import Pacer
from licensing.graph.paging import NextLinks, page_items
from licensing.graph.responses import (
    Exchange,
    Response,
    bulk_allocation,
    exhausted,
    graph_error,
    header,
    observer_middleware,
    redirect_error,
    resource_units,
)
from licensing.graph.retry import RetryPolicy
from licensing.graph.schedule import BATCH_LIMIT, next_chunk
from licensing.model import GraphStats
from licensing.settings import Settings
from licensing.transient import RETRYABLE_STATUSES

__all__ = [
    "BATCH_LIMIT",
    "CollectionRequest",
    "GraphClient",
    "Response",
    "open_graph",
    "query",
]

EVENTUAL: Final[Mapping[str, str]] = {"ConsistencyLevel": "eventual"}


def query(params: Mapping[str, str | int]) -> str:
    """A query string Graph reads: ``$`` and ``,`` kept literal, spaces as %20 (never ``+``)."""
    return urlencode({k: str(v) for k, v in params.items()}, safe="$,/()'", quote_via=quote)


@dataclass(frozen=True, slots=True)
class CollectionRequest:
    """One collection to read to the end. ``path`` is relative to the version root and carries its query."""

    key: str
    path: str
    route: str  # template without ids or query values, for telemetry and permission names
    headers: Mapping[str, str] = field(default_factory=dict)


class GraphClient:
    """One Graph client per event loop (create it inside the loop, with :func:`open_graph`)."""

    def __init__(
        self,
        settings: Settings,
        *,
        credential: str = "default",
        http_client: Any = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 60.0,
        max_concurrency: int | None = None,
        pacer: Pacer | None = None,
    ) -> None:
        from licensing.graph.auth import make_auth_provider

        self.settings = settings
        self.base_url = settings.graph_base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self._origin = (parts.scheme.lower(), parts.netloc.lower())
        self._root = f"{parts.scheme}://{parts.netloc}"
        self._version_path = parts.path.rstrip("/")  # "/v1.0"
        self.retry = retry or RetryPolicy()
        self.concurrency = max_concurrency or settings.graph_max_concurrency
        self._semaphore = asyncio.Semaphore(self.concurrency)
        # One pacing object for every sender: the app-wide Retry-After pause, then the RU token bucket (pacing.py).
        self.pacer = pacer or Pacer(sleep=self.retry.sleep)
        self._requests = 0
        self._throttled = 0
        self._retried = 0
        self._ru = 0.0
        self.warnings: list[str] = []  # reported oddities (e.g. a Retry-After over the cap)
        auth, self._credential = make_auth_provider(settings, credential)
        self._http_client = self._make_http_client(http_client, timeout_s)
        from kiota_abstractions.api_client_builder import register_default_deserializer
        from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
        from msgraph.generated.models.o_data_errors.o_data_error import ODataError
        from msgraph.graph_request_adapter import GraphRequestAdapter

        # Only error bodies go through a parse node (into ODataError); pages are read as bytes.
        register_default_deserializer(JsonParseNodeFactory)
        self._adapter = GraphRequestAdapter(auth, client=self._http_client)
        self._adapter.base_url = self.base_url

        self._error_map: dict[str, Any] = {"XXX": ODataError}

    def _make_http_client(self, http_client: Any, timeout_s: float) -> Any:
        import httpx
        from kiota_http.middleware import ParametersNameDecodingHandler, UrlReplaceHandler, UserAgentHandler
        from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]
        from msgraph_core.middleware import GraphTelemetryHandler  # type: ignore[import-untyped]

        if http_client is None:
            limits = httpx.Limits(max_connections=self.concurrency * 2, max_keepalive_connections=self.concurrency * 2)
            http_client = httpx.AsyncClient(
                timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0)), limits=limits
            )
        # The SDK default chain minus RetryHandler (we retry, see retry.py) and minus RedirectHandler: it
        # follows a 3xx to any host and its answer would be trusted (a hostile 302 to an empty list looked
        # like "no SKUs, nothing open"), and on a scheme change it raises a bare Exception. The Graph calls
        # we make are not documented to redirect, so a 3xx is an error naming where it pointed (send()).
        middleware = [
            ParametersNameDecodingHandler(),
            UrlReplaceHandler(),
            UserAgentHandler(),
            GraphTelemetryHandler(),
            observer_middleware(),
        ]
        return GraphClientFactory.create_with_custom_middleware(middleware, client=http_client)

    @property
    def credential(self) -> Any:
        """The token credential (None for ``--credential none``): the writer reads who is signed in from it."""
        return self._credential

    async def aclose(self) -> None:
        await self._http_client.aclose()
        close = getattr(self._credential, "close", None)
        if close is not None:
            result = close()
            if asyncio.iscoroutine(result):
                await result

    @property
    def stats(self) -> GraphStats:
        return GraphStats(
            requests=self._requests, throttled=self._throttled, retried=self._retried, resource_units=self._ru
        )

    def pause_all(self, seconds: float) -> None:
        """Hold every sender of this client for ``seconds`` (a 429 throttles the app, not one request)."""
        self.pacer.pause(seconds)

    # ------------------------------------------------------------------ one exchange

    def url(self, path: str) -> str:
        """Absolute URL for a path relative to the version root; absolute URLs are checked, not rewritten."""
        if path.startswith(("http://", "https://")):
            self.check_host(path)
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def check_host(self, url: str) -> None:
        parts = urlsplit(url)
        if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
            raise GraphResponseError(f"Graph pointed to another host ({redact_url(url)}); not followed")

    def relative(self, url: str) -> str | None:
        """The version-relative form of an absolute URL on our host (what $batch wants), or None."""
        parts = urlsplit(url)
        if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
            return None
        if not parts.path.startswith(self._version_path + "/"):
            return None
        rel = parts.path[len(self._version_path) :]
        return f"{rel}?{parts.query}" if parts.query else rel

    async def _exchange(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> Response:
        from kiota_abstractions.api_error import APIError
        from kiota_abstractions.method import Method
        from kiota_abstractions.request_information import RequestInformation

        info = RequestInformation()
        info.http_method = Method(method)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        for name, value in headers.items():
            info.headers.add(name, value)
        if body is not None:
            info.headers.add("Content-Type", "application/json")
            info.content = body
        exchange = Exchange()
        info.add_request_options([exchange])  # type: ignore[list-item]
        try:
            content = await self._adapter.send_primitive_async(info, "bytes", self._error_map)
        except APIError as err:
            error = getattr(err, "error", None)
            return Response(
                status=int(err.response_status_code or exchange.status or 0),
                headers=err.response_headers or exchange.headers or {},
                error_code=getattr(error, "code", None),
                error_message=getattr(error, "message", None),
            )
        return Response(status=exchange.status or 200, headers=exchange.headers, content=bytes(content or b""))

    async def send(
        self,
        method: str,
        path: str,
        *,
        route: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        what: str | None = None,
        idempotent: bool = True,
        urgent: bool = False,
        metered: bool = True,
    ) -> Response:
        """One logical request with the retry policy; returns a 2xx response or raises a GraphError.

        Each attempt waits its turn with the pacer (``urgent``: a chain's next page; ``metered=False``: a $batch).

        ``idempotent=False`` (sendMail): this client does not retry at all, so the caller's one retry layer
        decides. A 401 is still renewed once (Graph did not act on it); a timeout, a broken connection after
        connecting, or a 5xx other than 503 raise :class:`GraphOutcomeUnknownError`: Graph may have carried the
        request out (a 503 says it was not handled, RFC 9110 15.6.4).
        """
        import httpx
        from azure.core.exceptions import ClientAuthenticationError

        url = self.url(path)
        what = what or f"{method} {route}"
        attempt = 0
        waited = 0.0
        token_refused = False
        while True:
            attempt += 1
            tickets = await self.pacer.acquire((route,) if metered else (), urgent=urgent)
            failure: str
            retry_after: str | None = None
            response: Response | None = None
            async with self._semaphore:
                started = time.perf_counter()
                try:
                    response = await self._exchange(method, url, headers or {}, body)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # nothing was sent
                    failure = f"connection failed ({type(exc).__name__})"
                    status: int | None = None
                except httpx.TimeoutException:
                    failure = "timed out"
                    status = None
                    if not idempotent:
                        raise GraphOutcomeUnknownError(
                            f"{what} timed out; not retried (it may have been carried out)"
                        ) from None
                except httpx.TransportError as exc:
                    failure = f"connection failed ({type(exc).__name__})"
                    status = None
                    if not idempotent:
                        raise GraphOutcomeUnknownError(
                            f"{what}: the connection broke ({type(exc).__name__}); "
                            "not retried (it may have been carried out)"
                        ) from None
                except ClientAuthenticationError as exc:
                    raise GraphAuthError(
                        f"no Graph token for {what}: {redact_text(str(exc).splitlines()[0] if str(exc) else '')}"
                    ) from exc
                else:
                    status = response.status
                    failure = f"HTTP {status}"
                duration = time.perf_counter() - started
            self._requests += 1
            ru = resource_units(response.headers) if response is not None else 0.0
            self._ru += ru
            throttled = status == 429
            self._throttled += throttled
            for ticket in tickets:
                self.pacer.settle(ticket, status, response.headers if response is not None else None)
            telemetry.graph_request(method, route, status, throttled=throttled, resource_units=ru, duration_s=duration)
            if response is not None:
                if 200 <= response.status < 300:
                    return response
                if response.status == 401 and not token_refused:
                    # A token can expire between issue and use (clock skew, a long run): the auth provider asks
                    # the credential again on the next attempt, which renews an expired token. Once only.
                    token_refused = True
                    self._retried += 1
                    continue
                if 300 <= response.status < 400:
                    raise redirect_error(response, what, self._origin)
                if not idempotent and response.status >= 500 and response.status != 503:  # 503: not handled
                    raise GraphOutcomeUnknownError(
                        f"{what} answered {response.status}; not retried (it may have been carried out)",
                        status=response.status,
                    )
                if response.status not in RETRYABLE_STATUSES or not idempotent:
                    raise graph_error(response.status, route, what, response.error_code, response.error_message)
                retry_after = header(response.headers, "Retry-After")
            elif not idempotent:  # a connection that never opened: nothing was sent, the caller may retry
                raise GraphUnavailableError(f"{what} {failure}; not sent")
            delay = self.retry.delay(attempt, retry_after)
            reason = self.retry.give_up_reason(attempt, delay, waited)
            if reason is not None:
                if delay >= self.retry.max_retry_after_s:
                    self.warnings.append(f"{what}: {reason}")
                if response is not None:
                    err = graph_error(response.status, route, what, response.error_code, response.error_message)
                    raise exhausted(err, reason)
                raise GraphUnavailableError(f"{what} {failure}; {reason}")
            if throttled and retry_after is not None:
                self.pause_all(delay)
            self._retried += 1
            waited += delay
            await self.retry.sleep(delay)

    async def get_json(
        self,
        path: str,
        *,
        route: str,
        headers: Mapping[str, str] | None = None,
        what: str | None = None,
        urgent: bool = False,
    ) -> Any:
        return (await self.send("GET", path, route=route, headers=headers, what=what, urgent=urgent)).json()

    # ------------------------------------------------------------------ collections

    async def get_collection(
        self, path: str, *, route: str, headers: Mapping[str, str] | None = None, what: str | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a collection: our own nextLink loop (empty pages do not end it; other hosts are refused)."""
        items: list[dict[str, Any]] = []
        url: str | None = path
        links = NextLinks(self.check_host)
        while url is not None:
            page = await self.get_json(url, route=route, headers=headers, what=what)
            url = links.follow(page, "", route)
            items.extend(page_items(page, route))
        return items

    async def read_collections(
        self,
        requests: Sequence[CollectionRequest],
        *,
        on_done: Callable[[str], None] | None = None,
        on_items: Callable[[str, list[dict[str, Any]]], None] | None = None,
    ) -> dict[str, list[dict[str, Any]] | GraphError]:
        """Read many collections to the end, packing pending pages (first or next) into $batch requests.

        Next pages go to the front of the queue: the longest chain of pages is the wall-time
        floor, so it must never wait behind first pages. A failed collection yields its
        GraphError and the others carry on. With ``on_items``, each page's items are handed
        over as they arrive and not kept (the result is then an empty list per collection):
        raw JSON of a whole tenant is several times the size of the records made from it.

        Once the pacer is engaged (Graph signalled throttling), chain fronts go first (schedule.py) and first
        pages hold at most half the slots: otherwise the longest chain would queue behind the bucket.
        """
        pending: deque[tuple[CollectionRequest, str]] = deque((r, r.path) for r in requests)
        items: dict[str, list[dict[str, Any]]] = {r.key: [] for r in requests}
        links = NextLinks(self.check_host)
        results: dict[str, list[dict[str, Any]] | GraphError] = {}
        in_flight: set[asyncio.Task[list[tuple[CollectionRequest, Any]]]] = set()
        firsts: set[asyncio.Task[list[tuple[CollectionRequest, Any]]]] = set()  # tasks of first pages (paced)

        def settle(req: CollectionRequest, outcome: list[dict[str, Any]] | GraphError) -> None:
            results[req.key] = outcome
            if on_done is not None:
                on_done(req.key)

        while pending or in_flight:
            while pending and len(in_flight) < self.concurrency:
                paced = self.pacer.engaged
                if paced and pending[0][1] == pending[0][0].path and len(firsts) >= max(1, self.concurrency // 2):
                    break  # paced first pages hold at most half the slots: chain fronts keep the others
                chunk, urgent = next_chunk(pending, paced=paced)
                task = asyncio.create_task(self._fetch_pages(chunk, urgent=urgent))
                in_flight.add(task)
                if paced and not urgent:
                    firsts.add(task)
            done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
            firsts -= done
            for task in done:
                for req, page in task.result():
                    if isinstance(page, GraphError):
                        settle(req, page)
                        continue
                    try:
                        got = page_items(page, req.route)
                        link = links.follow(page, req.key, req.route)
                    except GraphError as exc:
                        settle(req, exc)
                        continue
                    if on_items is None:
                        items[req.key].extend(got)
                    else:
                        with bulk_allocation():
                            on_items(req.key, got)
                    if link is None:
                        settle(req, items.pop(req.key))
                    else:
                        pending.appendleft((req, link))
        return results

    async def _fetch_pages(
        self, chunk: list[tuple[CollectionRequest, str]], *, urgent: bool = False
    ) -> list[tuple[CollectionRequest, Any]]:
        """One page per entry: a plain GET for one, a $batch for several. Errors are returned, not raised."""
        if len(chunk) == 1:
            req, url = chunk[0]
            try:
                return [(req, await self.get_json(url, route=req.route, headers=req.headers, urgent=urgent))]
            except GraphError as exc:
                return [(req, exc)]
        subs: list[tuple[str, str, Mapping[str, str]]] = []
        direct: list[tuple[CollectionRequest, str]] = []
        for req, url in chunk:
            rel = self.relative(url) if url.startswith(("http://", "https://")) else url
            if rel is None:
                direct.append((req, url))
            else:
                subs.append((rel, req.route, req.headers))
        batched = [pair for pair in chunk if pair not in direct]
        out: list[tuple[CollectionRequest, Any]] = []
        if subs:
            answers = await self.batch_get(subs, urgent=urgent)
            out.extend((req, answer) for (req, _), answer in zip(batched, answers, strict=True))
        for req, url in direct:
            try:
                out.append((req, await self.get_json(url, route=req.route, headers=req.headers, urgent=urgent)))
            except GraphError as exc:
                out.append((req, exc))
        return out

    async def batch_get(self, subs: Sequence[tuple[str, str, Mapping[str, str]]], *, urgent: bool = False) -> list[Any]:
        """GET up to 20 version-relative URLs in one JSON $batch; retry sub-requests that fail transiently.

        Each sub-request is metered and throttled on its own and can come back 429/5xx inside a
        200 envelope (https://learn.microsoft.com/graph/json-batching#response-format), so those
        are sent again, after the longest Retry-After among them. Returns, per sub-request,
        the parsed body or a GraphError.
        """
        if len(subs) > BATCH_LIMIT:
            raise ValueError(f"a $batch holds at most {BATCH_LIMIT} requests")
        results: list[Any] = [None] * len(subs)
        attempts = [0] * len(subs)
        waited = 0.0
        remaining = list(range(len(subs)))
        while remaining:
            # Graph meters each sub-request on its own (https://learn.microsoft.com/graph/throttling, "Throttling
            # and batching": "Requests in a batch are evaluated individually against throttling limits").
            metered = await self.pacer.acquire([subs[i][1] for i in remaining], urgent=urgent)
            tickets = dict(zip(remaining, metered, strict=True))
            envelope = {
                "requests": [
                    {
                        "id": str(i),
                        "method": "GET",
                        "url": subs[i][0],
                        **({"headers": dict(subs[i][2])} if subs[i][2] else {}),
                    }
                    for i in remaining
                ]
            }
            try:
                response = await self.send(
                    "POST",
                    "/$batch",
                    route="/$batch",
                    body=orjson.dumps(envelope),
                    what="a $batch request",
                    metered=False,
                )
                answers = response.json().get("responses")
                if not isinstance(answers, list):
                    raise GraphResponseError("Graph returned a $batch response without 'responses'")
            except GraphError as exc:
                for i in remaining:
                    self.pacer.settle(tickets[i], None, None)
                    results[i] = exc
                return results
            # Answers come in any order, matched by id (json-batching: "the responses might be in a different
            # order"). An id answered twice cannot be trusted either way: those sub-requests are sent again.
            by_id: dict[str, Any] = {}
            doubled: set[str] = set()
            for a in answers:
                if isinstance(a, dict):
                    key = str(a.get("id"))
                    if key in by_id:
                        doubled.add(key)
                    by_id[key] = a
            for key in doubled:
                by_id.pop(key, None)
            if doubled:
                self.warnings.append(f"$batch answered {len(doubled)} sub-request id(s) more than once; sent again")
            retry: list[int] = []
            longest = 0.0
            for i in remaining:
                route = subs[i][1]
                answer = by_id.get(str(i))
                attempts[i] += 1
                what = f"GET {route}"
                headers: Mapping[str, Any]
                body: Any
                if answer is None:  # missing from the envelope: treat as a transient failure
                    status, headers, body = 503, {}, None
                else:
                    status = int(answer.get("status") or 0)
                    headers = answer.get("headers") or {}
                    body = answer.get("body")
                ru = resource_units(headers)
                self._ru += ru
                self.pacer.settle(tickets[i], status if answer is not None else None, headers)
                if 200 <= status < 300:
                    results[i] = body if body is not None else {}
                    continue
                error = body.get("error") if isinstance(body, dict) else None
                code = error.get("code") if isinstance(error, dict) else None
                message = error.get("message") if isinstance(error, dict) else None
                if status == 429:
                    self._throttled += 1
                if status not in RETRYABLE_STATUSES:
                    results[i] = graph_error(status, route, what, code, message)
                    continue
                delay = self.retry.delay(attempts[i], header(headers, "Retry-After"))
                if status == 429 and delay < self.retry.max_retry_after_s:
                    # Each sub-request is throttled on its own, but the budget is the app's: every sender
                    # pauses, not only this batch's retry (https://learn.microsoft.com/graph/json-batching).
                    self.pause_all(delay)
                reason = self.retry.give_up_reason(attempts[i], delay, waited)
                if reason is not None:
                    if delay >= self.retry.max_retry_after_s:
                        self.warnings.append(f"{what}: {reason}")
                    results[i] = exhausted(graph_error(status, route, what, code, message), reason)
                    continue
                retry.append(i)
                longest = max(longest, delay)
            remaining = retry
            if remaining:
                self._retried += len(remaining)
                waited += longest
                served = self.pacer.clock() + longest
                await self.retry.sleep(longest)
                self.pacer.served(served)  # the app-wide pause was this wait: the retry must not wait it again
        return results

    # ------------------------------------------------------------------ mail

    async def send_mail(self, mailbox: str, message: Mapping[str, Any]) -> None:
        """POST /users/{mailbox}/sendMail; Graph answers 202 Accepted. Raises a GraphError otherwise.

        Not retried here (``idempotent=False``): the notifier is the one retry layer, and a send whose
        outcome is unknown (timeout, 5xx) is not retried at all; the outbox replays it once, later.
        """
        response = await self.send(
            "POST",
            f"/users/{quote(mailbox, safe='@')}/sendMail",
            route="/users/{id}/sendMail",
            body=orjson.dumps(message),
            what="sending mail",
            idempotent=False,
        )
        if response.status != 202:
            raise GraphResponseError(f"sendMail answered {response.status}, expected 202", status=response.status)


@asynccontextmanager
async def open_graph(settings: Settings, credential: str = "default", **options: Any) -> AsyncIterator[GraphClient]:
    """A GraphClient bound to the running event loop, closed on exit."""
    client = GraphClient(settings, credential=credential, **options)
    try:
        yield client
    finally:
        await client.aclose()
