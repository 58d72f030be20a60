"""The Microsoft Graph v1.0 surface the audit reads, answered from a SandboxTenant: routing, queries, pages, faults.

Shapes follow Microsoft's reference pages (cited where a behaviour matters). Transport-free: the
HTTP server hands over a :class:`Request` and writes back the :class:`Response`; ``$batch`` feeds its
sub-requests through the same pipeline, so each one is metered and faulted on its own.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import uuid
from array import array
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson

from licensing.sandbox.faults import Faults
from licensing.sandbox.handlers import Handlers
from licensing.sandbox.metering import Metering
from licensing.sandbox.tenant import (
    SandboxTenant,
)
from licensing.sandbox.wire import (
    CASTS,
    JSON_TYPE,
    MAX_BATCH,
    MAX_TOP,
    GraphError,
    Query,
    RawJson,
    Request,
    Response,
    Route,
    Stats,
    bad_request,
    unsupported,
)
from licensing.sandbox.writes import Writes

__all__ = ["GraphApp", "Request", "Response"]


class GraphApp(Handlers, Metering, Writes):
    """Answers Graph requests for one tenant; thread-safe for the few things tests change at runtime."""

    def __init__(self, tenant: SandboxTenant, faults: Faults | None = None, latency_ms: float = 0.0) -> None:
        self.tenant = tenant
        self.base_url = "http://127.0.0.1/v1.0"
        self.latency_ms = latency_ms
        self.sent_mail: list[dict[str, Any]] = []
        self.deleted: set[int] = set()
        self._lock = threading.Lock()
        self._stats = Stats()
        self._cache: dict[tuple[str, ...], Sequence[int]] = {}
        # Serialised users per $select (tag, select, typed): a user in several groups, or read again by the
        # next client, is rendered once. Users never change while the server runs.
        self._fragments: dict[tuple[int, tuple[str, ...] | None, bool, bool], bytes] = {}
        self._ru_log: deque[tuple[float, int]] = deque()
        self._ru_sum = 0
        self._throttle_pct: str | None = None
        self._faults = faults or Faults()
        self._fault_seen = [0] * len(self._faults.rules)
        self._rng = random.Random(self._faults.seed)
        self._error_groups: dict[int, list[int]] | None = None
        self._body_fault_now: str | None = None  # set per request; requests run one at a time on the loop

    # -------------------------------------------------------------- runtime switches

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            previous = self._faults.permissions
            self._faults = faults
            self._fault_seen = [0] * len(faults.rules)
            self._rng = random.Random(faults.seed)
            self._ru_log.clear()
            self._ru_sum = 0
            if faults.permissions != previous:
                self._fragments.clear()  # what a user renders to depends on the permissions alone

    def delete_group(self, group_id: str) -> None:
        g = self.tenant.group_by_id(group_id)
        if g is None:
            raise KeyError(group_id)
        with self._lock:
            self.deleted.add(g.index)
            self._cache.clear()
            self._fragments.clear()

    def remove_members(self, group_id: str, count: int) -> None:
        """Drop the last ``count`` direct user members of a group (a rule change, a clean-up). Their license
        states stay as they were: Entra removes a leaver's licenses later, in the background (not simulated)."""
        g = self.tenant.group_by_id(group_id)
        if g is None:
            raise KeyError(group_id)
        with self._lock:
            groups = list(self.tenant.groups)
            groups[g.index] = dataclasses.replace(g, users=array("i", g.users[: max(0, len(g.users) - count)]))
            self.tenant.groups = tuple(groups)
            self._cache.clear()
            self._fragments.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.snapshot()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = Stats()

    def enter(self) -> None:
        with self._lock:
            s = self._stats
            s.in_flight += 1
            s.max_in_flight = max(s.max_in_flight, s.in_flight)

    def leave(self) -> None:
        with self._lock:
            self._stats.in_flight -= 1

    # -------------------------------------------------------------- pipeline

    def handle(self, req: Request, *, sub: bool = False) -> Response:
        """Route, fault, meter and answer one request (``sub``: a $batch sub-request)."""
        started = time.perf_counter()
        request_id = str(uuid.uuid4())
        client_id = req.headers.get("client-request-id") or request_id
        split = urlsplit(req.target)
        path = unquote(split.path)
        if path.rstrip("/") == "/_sandbox/stats" and not sub:
            return Response(200, orjson.dumps(self.stats()), content_type="application/json")
        try:
            route, key = self._route(req.method, path)
        except GraphError as exc:
            return self._error(exc, request_id, client_id)
        denied = self._denied(route.family)
        if denied is not None:
            return self._error(denied, request_id, client_id)
        with self._lock:
            self._stats.requests += 1
            self._stats.by_route[route.family] += 1
            if sub:
                self._stats.batch_subrequests += 1
            fault = self._pre_fault(route)
            # subscribedSkus is one unpaged answer: of the body faults only empty_answer applies to it.
            collection = route.paged or route.family == "subscribedSkus"
            body_fault = self._body_fault(route) if fault is None and collection else None
        if route.family == "assignLicense":  # a write, and its faults: licensing/sandbox/writes.py
            return self._assign_license(req, key, fault, request_id, client_id)
        if route.family == "reprocessLicenseAssignment":
            return self._reprocess(key, fault, request_id, client_id)
        if route.family == "userAssignLicense":
            return self._user_assign_license(req, key, fault, request_id, client_id)
        if route.family == "group":
            self._tick(key)  # a read of the group moves its license processing on (writes.py)
        if fault is not None and fault.kind == "redirect":
            with self._lock:
                self._stats.faults[fault.kind] += 1
            # A 302 to another origin: what a hijacked proxy or a hostile middlebox answers.
            return Response(302, b"", headers=[("Location", fault.location.rstrip("/") + req.target)])
        if fault is not None and fault.kind in ("reset", "timeout"):
            with self._lock:
                self._stats.faults[fault.kind] += 1
            if sub:  # a broken socket cannot happen inside an envelope; Graph reports a gateway timeout
                return self._error(GraphError(504, "GatewayTimeout", "Gateway timeout."), request_id, client_id)
            return Response(0, action=fault.kind, hold_s=fault.hold_s)
        if fault is not None:
            with self._lock:
                self._stats.faults[fault.kind] += 1
            return self._error(self._fault_error(fault), request_id, client_id)
        try:
            query = self._query(split.query, req.headers)
            ru = self._cost(route, query)
            with self._lock:
                throttled = self._charge(ru)
                pct = self._throttle_pct
            if throttled is not None:
                return self._error(throttled, request_id, client_id)
            if route.family == "batch":
                resp = self._batch(req, request_id, client_id)
            elif route.family == "sendMail":
                resp = self._send_mail(req, key)
            else:
                body, objects = self._run(route, query, key, body_fault)
                raw = bytes(body) if isinstance(body, bytes) else orjson.dumps(body)
                ctype = "text/plain" if isinstance(body, bytes) and not isinstance(body, RawJson) else JSON_TYPE
                resp = Response(route.status, raw, content_type=ctype, objects=objects)
            resp.headers += [("x-ms-resource-unit", str(ru))]
            if pct is not None:
                resp.headers += [("x-ms-throttle-limit-percentage", pct)]
        except GraphError as exc:
            return self._error(exc, request_id, client_id)
        resp.headers += [("request-id", request_id), ("client-request-id", client_id)]
        f = self._faults
        base = (self.latency_ms + f.latency_ms) / 1000
        if route.family == "batch":
            # Without dependsOn, Graph runs a batch's sub-requests in parallel, so the envelope takes as long
            # as its slowest sub-request (whose delay already counts its own objects), not the sum:
            # https://learn.microsoft.com/answers/questions/1532547 (a Microsoft answer: "fully sequential or
            # fully parallel"), https://learn.microsoft.com/graph/json-batching.
            target = max(resp.delay_s, base)
        else:
            target = base + f.per_object_us * resp.objects / 1e6
        # The simulated latency is the whole time Graph takes to answer: the CPU time this process spent
        # building the response is part of it, not added on top (a sub-request is timed by its envelope).
        resp.delay_s = target if sub else max(0.0, target - (time.perf_counter() - started))
        with self._lock:
            self._stats.by_status[resp.status] += 1
            self._stats.objects += resp.objects
        return resp

    # -------------------------------------------------------------- query options

    def _query(self, qs: str, headers: dict[str, str]) -> Query:
        pieces = [p for p in qs.split("&") if p]
        q = Query(raw=pieces, eventual=headers.get("consistencylevel", "").strip().lower() == "eventual")
        for piece in pieces:
            k, _, v = piece.partition("=")
            k, v = unquote(k.replace("+", " ")).strip(), unquote(v.replace("+", " "))
            name = k.lower().lstrip("$")
            if name == "select":
                q.select = tuple(s.strip() for s in v.split(",") if s.strip())
            elif name == "filter":
                q.filter = v.strip()
            elif name == "top":
                try:
                    q.top = int(v)
                except ValueError:
                    raise bad_request(f"Invalid value '{v}' for $top.") from None
                if not 1 <= q.top <= MAX_TOP:
                    raise bad_request(f"Invalid page size specified: '{v}'. Must be between 1 and {MAX_TOP} inclusive.")
            elif name == "count":
                if v.lower() not in ("true", "false"):
                    raise bad_request(f"Invalid value '{v}' for $count.")
                q.count = v.lower() == "true"
            elif name == "skiptoken":
                q.skiptoken = v
            elif name in ("expand", "orderby", "search", "skip", "format", "apply", "compute"):
                raise unsupported(f"The sandbox does not simulate ${name}; the audit must not depend on it.")
        if q.count and not q.eventual:
            # https://learn.microsoft.com/graph/aad-advanced-queries: without ConsistencyLevel: eventual the
            # $count=true query option is ignored on directory collections (no @odata.count); only the /$count
            # segment answers 400 (see _count_*). An advanced-only $filter still fails (see require_advanced).
            q.count = False
        return q

    # -------------------------------------------------------------- routing

    def _route(self, method: str, path: str) -> tuple[Route, str]:
        if not path.startswith("/v1.0/"):
            raise bad_request("Invalid version: only /v1.0 is simulated.", "BadRequest")
        seg = [s for s in path[len("/v1.0/") :].split("/") if s]
        if not seg:
            raise bad_request("Resource not found for the segment ''.", "BadRequest")
        head, n = seg[0], len(seg)
        get = method == "GET"
        if head == "$batch" and n == 1 and method == "POST":
            return Route("batch", False, self._no_run), ""
        if head == "users" and n == 3 and seg[2] == "sendMail" and method == "POST":
            return Route("sendMail", False, self._no_run, 202), seg[1]
        if head == "users" and n == 3 and seg[2] == "reprocessLicenseAssignment" and method == "POST":
            return Route("reprocessLicenseAssignment", False, self._no_run), seg[1]
        if head == "users" and n == 3 and seg[2] == "assignLicense" and method == "POST":
            return Route("userAssignLicense", False, self._no_run), seg[1]
        if head == "groups" and n == 3 and seg[2] == "assignLicense" and method == "POST":
            return Route("assignLicense", False, self._no_run, 202), seg[1]
        if not get:
            raise GraphError(405, "Request_BadRequest", f"Method {method} is not allowed on this resource.")
        if head == "organization" and n == 1:
            return Route("organization", False, self._organization), ""
        if head == "subscribedSkus" and n <= 2:
            return Route("subscribedSkus", False, self._skus), (seg[1] if n == 2 else "")
        if seg == ["directory", "subscriptions"]:
            return Route("subscriptions", False, self._subscriptions), ""
        if head == "groups":
            if n == 1:
                return Route("groups", True, self._groups), ""
            if n == 2 and seg[1] == "$count":
                return Route("groups", False, self._count_groups), ""
            if n == 2:
                return Route("group", False, self._group), seg[1]
            rel = seg[2]
            if rel in ("members", "transitiveMembers", "membersWithLicenseErrors") and n <= 5:
                rest = seg[3:]
                if rest and rest[-1] == "$count":
                    return Route(rel, False, self._count_members), "/".join(seg[1:])
                if len(rest) <= 1 and (not rest or rest[0] in CASTS):
                    return Route(rel, True, self._members), "/".join(seg[1:])
        if head == "users":
            if n == 1:
                return Route("users", True, self._users), ""
            if n == 2 and seg[1] == "$count":
                return Route("users", False, self._count_users), ""
            if n == 2:
                return Route("user", False, self._user), seg[1]
            if n == 3 and seg[2] == "licenseDetails":
                return Route("licenseDetails", False, self._license_details), seg[1]
        bad = next((s for s in seg if s not in ("users", "groups")), seg[-1])
        raise bad_request(f"Resource not found for the segment '{bad}'.", "BadRequest")

    def _no_run(self, query: Query, key: str) -> tuple[Any, int]:
        raise AssertionError("handled by the pipeline")

    def _run(self, route: Route, query: Query, key: str, body_fault: str | None) -> tuple[Any, int]:
        self._body_fault_now = body_fault
        return route.run(query, key)

    def _send_mail(self, req: Request, mailbox: str) -> Response:
        # https://learn.microsoft.com/graph/api/user-sendmail : 202 Accepted, no body.
        try:
            payload = orjson.loads(req.body) if req.body else None
        except orjson.JSONDecodeError:
            raise bad_request("Unable to read JSON request payload.", "RequestBodyRead") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
            raise bad_request("Empty Payload. JSON content expected.", "ErrorInvalidRequest")
        with self._lock:
            self.sent_mail.append({"mailbox": mailbox, "body": payload})
        return Response(202, b"", content_type="text/plain")

    def _batch(self, req: Request, request_id: str, client_id: str) -> Response:
        # https://learn.microsoft.com/graph/json-batching
        with self._lock:
            self._stats.batch_requests += 1
        try:
            payload = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            raise bad_request("Invalid batch payload format.", "BadRequest") from None
        reqs = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(reqs, list) or not reqs:
            raise bad_request("Invalid batch payload format.", "BadRequest")
        if len(reqs) > MAX_BATCH:
            raise bad_request(f"Number of requests in batch exceeds {MAX_BATCH}.", "BadRequest")
        ids = [r.get("id") for r in reqs if isinstance(r, dict)]
        if len(ids) != len(reqs) or any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise bad_request("Each batch request needs a unique string id.", "BadRequest")
        responses: list[bytes] = []
        delay, objects = 0.0, 0
        for r in reqs:
            url = str(r.get("url", ""))
            if url.startswith(("http://", "https://")):
                raise bad_request("Batch request urls must be relative.", "BadRequest")
            sub_headers = {str(k).lower(): str(v) for k, v in (r.get("headers") or {}).items()}
            body = r.get("body")
            raw = orjson.dumps(body) if body is not None else b""
            sub = self.handle(
                Request(str(r.get("method", "GET")).upper(), "/v1.0/" + url.lstrip("/"), sub_headers, raw), sub=True
            )
            delay, objects = max(delay, sub.delay_s), objects + sub.objects
            headers = {k: v for k, v in sub.headers if k.lower() not in ("request-id", "client-request-id")}
            if sub.body:
                headers["Content-Type"] = sub.content_type
            entry = orjson.dumps({"id": r["id"], "status": sub.status, "headers": headers})
            if sub.body:
                # A JSON body is spliced in as it is (it is valid JSON already): parsing and serialising it
                # again was most of the CPU time of a batch of member pages.
                body_json = (
                    sub.body if sub.content_type.startswith("application/json") else orjson.dumps(sub.body.decode())
                )
                entry = b"".join((entry[:-1], b',"body":', body_json, b"}"))
            responses.append(entry)
        # "The responses might appear in a different order than the requests" (json-batching): always reversed here,
        # so a reader that matches answers by position fails every test.
        responses.reverse()
        return Response(200, b'{"responses":[' + b",".join(responses) + b"]}", delay_s=delay, objects=objects)
