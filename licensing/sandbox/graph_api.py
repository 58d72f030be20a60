"""The Microsoft Graph v1.0 surface the audit reads, answered from a SandboxTenant: routing, queries, pages, faults.

Shapes follow Microsoft's reference pages (cited where a behaviour matters). Transport-free: the
HTTP server hands over a :class:`Request` and writes back the :class:`Response`; ``$batch`` feeds its
sub-requests through the same pipeline, so each one is metered and faulted on its own.
"""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import threading
import time
import uuid
import zlib
from array import array
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import orjson

from licensing.sandbox.faults import BODY_FAULTS, ROUTES, FaultRule, Faults
from licensing.sandbox.tenant import (
    ENABLED,
    EXT_ACCEPTED,
    EXT_PENDING,
    EXT_UPN,
    GUEST,
    INVITED,
    NO_GROUP,
    GroupDef,
    SandboxTenant,
)

__all__ = ["GraphApp", "Request", "Response"]

JSON_TYPE: Final = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_TOP: Final = 999  # https://learn.microsoft.com/graph/paging : $top 1..999 for directory objects
DEFAULT_TOP: Final = 100
MAX_BATCH: Final = 20  # https://learn.microsoft.com/graph/json-batching : at most 20 requests
STAMP: Final = "2024-03-01T09:30:00Z"  # fixed timestamps keep responses deterministic
# Object tags in collections: 3*i user, 3*i+1 group, 3*i+2 device.
USER, GROUP, DEVICE = 0, 1, 2
USER_TYPE, GROUP_TYPE, DEVICE_TYPE = "#microsoft.graph.user", "#microsoft.graph.group", "#microsoft.graph.device"
CASTS: Final = {"microsoft.graph.user": USER, "microsoft.graph.group": GROUP, "microsoft.graph.device": DEVICE}

# https://learn.microsoft.com/graph/api/resources/user : properties returned without $select.
USER_DEFAULT: Final = (
    "businessPhones", "displayName", "givenName", "jobTitle", "mail", "mobilePhone",
    "officeLocation", "preferredLanguage", "surname", "userPrincipalName", "id",
)  # fmt: skip
# Returned only on $select (licenseAssignmentStates and assignedLicenses among them).
USER_SELECT_ONLY: Final = (
    "accountEnabled", "userType", "externalUserState", "externalUserStateChangeDateTime", "creationType",
    "usageLocation", "assignedLicenses", "licenseAssignmentStates", "createdDateTime", "department",
    "companyName", "mailNickname", "onPremisesSyncEnabled", "otherMails", "proxyAddresses", "deletedDateTime",
)  # fmt: skip
# https://learn.microsoft.com/graph/api/resources/group : assignedLicenses and licenseProcessingState only on
# $select; hasMembersWithLicenseErrors is never returned, only usable in $filter.
GROUP_DEFAULT: Final = (
    "id", "deletedDateTime", "classification", "createdDateTime", "creationOptions", "description",
    "displayName", "expirationDateTime", "groupTypes", "isAssignableToRole", "mail", "mailEnabled",
    "mailNickname", "membershipRule", "membershipRuleProcessingState", "onPremisesSyncEnabled",
    "preferredDataLocation", "preferredLanguage", "proxyAddresses", "renewedDateTime",
    "resourceBehaviorOptions", "resourceProvisioningOptions", "securityEnabled", "securityIdentifier",
    "theme", "visibility", "onPremisesProvisioningErrors", "serviceProvisioningErrors",
)  # fmt: skip
_EMPTY_LIST_GROUP_PROPS: Final = frozenset(
    {"groupTypes", "creationOptions", "proxyAddresses", "resourceBehaviorOptions", "resourceProvisioningOptions",
     "onPremisesProvisioningErrors", "serviceProvisioningErrors"}
)  # fmt: skip
GROUP_SELECT_ONLY: Final = ("assignedLicenses", "licenseProcessingState", "hasMembersWithLicenseErrors")
DEVICE_PROPS: Final = ("id", "accountEnabled", "deviceId", "displayName", "operatingSystem", "operatingSystemVersion")


@dataclass(slots=True)
class Request:
    method: str
    target: str  # path + query as received
    headers: dict[str, str]  # lower-case names
    body: bytes = b""


@dataclass(slots=True)
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = JSON_TYPE
    action: str | None = None  # "reset" | "timeout": the transport breaks the connection instead
    hold_s: float = 0.0
    delay_s: float = 0.0
    objects: int = 0


class _RawJson(bytes):
    """A body already serialised as JSON (bytes otherwise mean a text/plain body such as a $count)."""

    __slots__ = ()


class GraphError(Exception):
    """An error answer in Graph's JSON shape."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


def _bad(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def _unsupported(message: str = "Unsupported Query.") -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def _not_found(ident: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{ident}' does not exist or one of its queried reference-property objects are not present.",
    )


# Application permissions that let a caller use each route family (any one of them), from the permissions
# tables of https://learn.microsoft.com/graph/api/organization-list, .../subscribedsku-list,
# .../companysubscription-list, .../group-list, .../group-list-members, .../user-list, .../user-sendmail.
ROUTE_PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "organization": frozenset({"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All"}),
    "subscribedSkus": frozenset(
        {"LicenseAssignment.Read.All", "LicenseAssignment.ReadWrite.All", "Organization.Read.All", "Directory.Read.All"}
    ),
    "subscriptions": frozenset({"Organization.Read.All", "Organization.ReadWrite.All", "Directory.Read.All"}),
    "groups": frozenset({"GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All", "Directory.Read.All"}),
    "members": frozenset(
        {"GroupMember.ReadBasic.All", "GroupMember.Read.All", "Group.Read.All", "Group.ReadWrite.All",
         "Directory.Read.All"}
    ),
    "users": frozenset({"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All"}),
    "sendMail": frozenset({"Mail.Send"}),
}  # fmt: skip
_FAMILY_PERMISSION: Final = {
    "group": "groups",
    "transitiveMembers": "members",
    "membersWithLicenseErrors": "members",
    "user": "users",
    "licenseDetails": "users",
}
FULL_USER_READ: Final = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"})


@dataclass(slots=True)
class _Query:
    raw: list[str]  # the client's own query pieces, kept as sent for next links
    select: tuple[str, ...] | None = None
    filter: str | None = None
    top: int | None = None
    count: bool = False
    skiptoken: str | None = None
    eventual: bool = False


@dataclass(slots=True)
class _Route:
    family: str
    paged: bool
    run: Callable[[_Query, str], tuple[Any, int]]  # (JSON-able or bytes body, objects) ; str = route key
    status: int = 200


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.ru_charged = 0
        self.throttled = 0
        self.batch_requests = 0
        self.batch_subrequests = 0
        self.objects = 0
        self.in_flight = 0
        self.max_in_flight = 0

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "by_route": dict(self.by_route),
            "by_status": {str(k): v for k, v in self.by_status.items()},
            "faults": dict(self.faults),
            "ru_charged": self.ru_charged,
            "throttled": self.throttled,
            "batch_requests": self.batch_requests,
            "batch_subrequests": self.batch_subrequests,
            "objects": self.objects,
            "max_in_flight": self.max_in_flight,
        }


class GraphApp:
    """Answers Graph requests for one tenant; thread-safe for the few things tests change at runtime."""

    def __init__(self, tenant: SandboxTenant, faults: Faults | None = None, latency_ms: float = 0.0) -> None:
        self.tenant = tenant
        self.base_url = "http://127.0.0.1/v1.0"
        self.latency_ms = latency_ms
        self.sent_mail: list[dict[str, Any]] = []
        self.deleted: set[int] = set()
        self._lock = threading.Lock()
        self._stats = _Stats()
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
        self._lifecycle = datetime.now(UTC).replace(microsecond=0, second=0) + timedelta(days=20)

    # -------------------------------------------------------------- runtime switches

    @property
    def faults(self) -> Faults:
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._fault_seen = [0] * len(faults.rules)
            self._rng = random.Random(faults.seed)
            self._ru_log.clear()
            self._ru_sum = 0
            self._fragments.clear()

    def delete_group(self, group_id: str) -> None:
        g = self.tenant.group_by_id(group_id)
        if g is None:
            raise KeyError(group_id)
        with self._lock:
            self.deleted.add(g.index)
            self._cache.clear()
            self._fragments.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats.snapshot()

    def reset_stats(self) -> None:
        with self._lock:
            self._stats = _Stats()

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
                ctype = "text/plain" if isinstance(body, bytes) and not isinstance(body, _RawJson) else JSON_TYPE
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

    def _denied(self, family: str) -> GraphError | None:
        """403 for a route the caller's application permissions do not cover (None: all permissions)."""
        granted = self._faults.permissions
        need = ROUTE_PERMISSIONS.get(_FAMILY_PERMISSION.get(family, family))
        if granted is None or need is None or granted & need:
            return None
        return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    @property
    def _user_access(self) -> str:
        """What the caller may read of users: "full", "basic" (User.ReadBasic.All) or "none" (limited information)."""
        granted = self._faults.permissions
        if granted is None or granted & FULL_USER_READ:
            return "full"
        return "basic" if "User.ReadBasic.All" in granted else "none"

    def _error(self, exc: GraphError, request_id: str, client_id: str) -> Response:
        body = {
            "error": {
                "code": exc.code,
                "message": exc.message,
                "innerError": {
                    "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                    "request-id": request_id,
                    "client-request-id": client_id,
                },
            }
        }
        with self._lock:
            self._stats.by_status[exc.status] += 1
            if exc.status == 429:
                self._stats.throttled += 1
        headers = [*exc.headers, ("request-id", request_id), ("client-request-id", client_id)]
        return Response(exc.status, orjson.dumps(body), headers)

    def _fires(self, i: int, rule: FaultRule) -> bool:
        self._fault_seen[i] += 1
        n = self._fault_seen[i] - rule.after
        if n <= 0:
            return False
        if rule.first is not None:
            return n <= rule.first
        if rule.rate is not None:
            return self._rng.random() < rule.rate
        return True

    def _pre_fault(self, route: _Route) -> FaultRule | None:
        for i, rule in enumerate(self._faults.rules):
            if rule.kind not in BODY_FAULTS and rule.matches(route.family) and self._fires(i, rule):
                return rule
        return None

    def _body_fault(self, route: _Route) -> str | None:
        for i, rule in enumerate(self._faults.rules):
            if rule.kind in BODY_FAULTS and rule.matches(route.family) and self._fires(i, rule):
                self._stats.faults[rule.kind] += 1
                return rule.kind
        return None

    def _fault_error(self, rule: FaultRule) -> GraphError:
        retry = rule.retry_after
        if retry is not None and retry.startswith("date:"):
            retry = http_date(float(retry[5:]))  # the HTTP-date form, computed when the fault fires
        headers = [("Retry-After", retry)] if retry is not None else []
        k = rule.kind
        if k == "429":
            # https://learn.microsoft.com/graph/throttling : 429 with Retry-After
            return GraphError(429, "TooManyRequests", "Too many requests.", headers)
        if k == "401":
            # What an expired or revoked token gets: https://learn.microsoft.com/graph/errors
            return GraphError(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        if k == "403":
            return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        if k == "404":
            return _not_found("sandbox-injected")
        if k == "503":
            return GraphError(503, "ServiceUnavailable", "Service unavailable.", headers)
        messages = {"500": ("InternalServerError", "Internal server error."), "502": ("BadGateway", "Bad gateway.")}
        code, message = messages.get(k, ("GatewayTimeout", "Gateway timeout."))
        return GraphError(int(k), code, message)

    def _cost(self, route: _Route, query: _Query) -> int:
        base = ROUTES[route.family]
        if base == 0:
            return 0
        # docs/design.md / https://learn.microsoft.com/graph/throttling-limits : $select takes 1 RU off.
        return max(1, base - 1) if query.select else base

    def _charge(self, ru: int) -> GraphError | None:
        """Meter ``ru`` against the budget; a 429 when it is spent. Throttled requests are charged too: Graph keeps
        counting what an app sends while it throttles it (https://learn.microsoft.com/graph/throttling-limits)."""
        f = self._faults
        self._throttle_pct = None
        if ru == 0:
            return None
        if f.ru_budget is not None:
            budget = f.ru_budget or self._tenant_budget()
            now = time.monotonic()
            log = self._ru_log
            while log and log[0][0] <= now - f.ru_window_s:
                self._ru_sum -= log.popleft()[1]
            over = self._ru_sum + ru > budget
            log.append((now, ru))
            self._ru_sum += ru
            self._stats.ru_charged += ru
            if over:
                # Wait until enough of the window has aged out for this much usage to fit again.
                excess, wait = self._ru_sum - budget, f.ru_window_s
                for stamp, cost in log:
                    excess -= cost
                    if excess <= 0:
                        wait = stamp + f.ru_window_s - now
                        break
                retry = str(max(1, math.ceil(wait)))
                pct = f"{min(1.8, self._ru_sum / budget):.2f}"
                return GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests: resource unit budget of the tenant and application exceeded.",
                    [("Retry-After", retry), ("x-ms-throttle-limit-percentage", pct)],
                )
            if self._ru_sum > 0.8 * budget:
                # "Returned only when the application consumed more than 0.8 of its limit" (throttling-limits).
                self._throttle_pct = f"{min(1.8, self._ru_sum / budget):.2f}"
            return None
        self._stats.ru_charged += ru
        return None

    def _tenant_budget(self) -> int:
        # https://learn.microsoft.com/graph/throttling-limits (identity and access): per app and tenant, 10 s.
        n = self.tenant.user_count
        return 3500 if n < 50 else 5000 if n <= 500 else 8000

    # -------------------------------------------------------------- query options

    def _query(self, qs: str, headers: dict[str, str]) -> _Query:
        pieces = [p for p in qs.split("&") if p]
        q = _Query(raw=pieces, eventual=headers.get("consistencylevel", "").strip().lower() == "eventual")
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
                    raise _bad(f"Invalid value '{v}' for $top.") from None
                if not 1 <= q.top <= MAX_TOP:
                    raise _bad(f"Invalid page size specified: '{v}'. Must be between 1 and {MAX_TOP} inclusive.")
            elif name == "count":
                if v.lower() not in ("true", "false"):
                    raise _bad(f"Invalid value '{v}' for $count.")
                q.count = v.lower() == "true"
            elif name == "skiptoken":
                q.skiptoken = v
            elif name in ("expand", "orderby", "search", "skip", "format", "apply", "compute"):
                raise _unsupported(f"The sandbox does not simulate ${name}; the audit must not depend on it.")
        if q.count and not q.eventual:
            # https://learn.microsoft.com/graph/aad-advanced-queries: without ConsistencyLevel: eventual the
            # $count=true query option is ignored on directory collections (no @odata.count); only the /$count
            # segment answers 400 (see _count_*). An advanced-only $filter still fails (see _advanced).
            q.count = False
        return q

    # -------------------------------------------------------------- routing

    def _route(self, method: str, path: str) -> tuple[_Route, str]:
        if not path.startswith("/v1.0/"):
            raise _bad("Invalid version: only /v1.0 is simulated.", "BadRequest")
        seg = [s for s in path[len("/v1.0/") :].split("/") if s]
        if not seg:
            raise _bad("Resource not found for the segment ''.", "BadRequest")
        head, n = seg[0], len(seg)
        get = method == "GET"
        if head == "$batch" and n == 1 and method == "POST":
            return _Route("batch", False, self._no_run), ""
        if head == "users" and n == 3 and seg[2] == "sendMail" and method == "POST":
            return _Route("sendMail", False, self._no_run, 202), seg[1]
        if not get:
            raise GraphError(405, "Request_BadRequest", f"Method {method} is not allowed on this resource.")
        if head == "organization" and n == 1:
            return _Route("organization", False, self._organization), ""
        if head == "subscribedSkus" and n <= 2:
            return _Route("subscribedSkus", False, self._skus), (seg[1] if n == 2 else "")
        if seg == ["directory", "subscriptions"]:
            return _Route("subscriptions", False, self._subscriptions), ""
        if head == "groups":
            if n == 1:
                return _Route("groups", True, self._groups), ""
            if n == 2 and seg[1] == "$count":
                return _Route("groups", False, self._count_groups), ""
            if n == 2:
                return _Route("group", False, self._group), seg[1]
            rel = seg[2]
            if rel in ("members", "transitiveMembers", "membersWithLicenseErrors") and n <= 5:
                rest = seg[3:]
                if rest and rest[-1] == "$count":
                    return _Route(rel, False, self._count_members), "/".join(seg[1:])
                if len(rest) <= 1 and (not rest or rest[0] in CASTS):
                    return _Route(rel, True, self._members), "/".join(seg[1:])
        if head == "users":
            if n == 1:
                return _Route("users", True, self._users), ""
            if n == 2 and seg[1] == "$count":
                return _Route("users", False, self._count_users), ""
            if n == 2:
                return _Route("user", False, self._user), seg[1]
            if n == 3 and seg[2] == "licenseDetails":
                return _Route("licenseDetails", False, self._license_details), seg[1]
        bad = next((s for s in seg if s not in ("users", "groups")), seg[-1])
        raise _bad(f"Resource not found for the segment '{bad}'.", "BadRequest")

    def _no_run(self, query: _Query, key: str) -> tuple[Any, int]:
        raise AssertionError("handled by the pipeline")

    def _run(self, route: _Route, query: _Query, key: str, body_fault: str | None) -> tuple[Any, int]:
        self._body_fault_now = body_fault
        return route.run(query, key)

    # -------------------------------------------------------------- rendering

    def _context(self, what: str) -> str:
        return f"{self.base_url}/$metadata#{what}"

    def _user_json(self, u: int, select: tuple[str, ...] | None, typed: bool) -> dict[str, Any]:
        t = self.tenant
        display, first, last, upn = t.user_names(u)
        f = t.flags[u]
        props = select or USER_DEFAULT
        out: dict[str, Any] = {"@odata.type": USER_TYPE} if typed else {}
        guest = bool(f & GUEST)
        access = self._user_access
        for p in props:
            if p != "id" and (access == "none" or (access == "basic" and p not in USER_DEFAULT)):
                # Limited information: "only the @odata.type property for the object type and the id is returned,
                # while other properties are indicated as null" (group-list-members); with User.ReadBasic.All
                # only the basic profile (docs/sandbox.md: an assumption for /users).
                out[p] = None
            elif p == "id":
                out["id"] = t.user_id(u)
            elif p == "displayName":
                out[p] = display
            elif p == "givenName":
                out[p] = first
            elif p == "surname":
                out[p] = last
            elif p == "userPrincipalName":
                out[p] = upn
            elif p == "mail":
                out[p] = f"{first}.{last}@fabrikam.example".lower() if f & EXT_UPN else upn
            elif p == "businessPhones":
                out[p] = []
            elif p in ("jobTitle", "mobilePhone", "officeLocation", "deletedDateTime", "companyName"):
                out[p] = None
            elif p == "preferredLanguage":
                out[p] = "en-US"
            elif p == "accountEnabled":
                out[p] = bool(f & ENABLED)
            elif p == "userType":
                out[p] = "Guest" if guest else "Member"
            elif p == "externalUserState":
                out[p] = "PendingAcceptance" if f & EXT_PENDING else "Accepted" if f & EXT_ACCEPTED else None
            elif p == "externalUserStateChangeDateTime":
                out[p] = STAMP if f & (EXT_PENDING | EXT_ACCEPTED) else None
            elif p == "creationType":
                out[p] = "Invitation" if f & INVITED else None
            elif p == "usageLocation":
                from licensing.sandbox.catalog import USAGE_LOCATIONS

                out[p] = USAGE_LOCATIONS[t.locations[u]]
            elif p == "assignedLicenses":
                out[p] = self._assigned_licenses(u)
            elif p == "licenseAssignmentStates":
                out[p] = self._states_json(u)
            elif p == "createdDateTime":
                out[p] = STAMP
            elif p == "department":
                out[p] = "Sales"
            elif p == "mailNickname":
                out[p] = upn.split("@", 1)[0]
            elif p == "onPremisesSyncEnabled":
                out[p] = None
            elif p in ("otherMails", "proxyAddresses"):
                out[p] = []
        return out

    def _states_json(self, u: int) -> list[dict[str, Any]]:
        t = self.tenant
        out = []
        for st in t.user_states(u):
            grp = t.groups[st.group] if st.group != NO_GROUP else None
            disabled: tuple[str, ...] = ()
            if grp is not None:
                disabled = grp.disabled_plans[grp.sku_indices.index(st.sku)]
            out.append(
                {
                    "skuId": t.skus[st.sku].sku_id,
                    "disabledPlans": list(disabled),
                    "assignedByGroup": grp.id if grp is not None else None,
                    "state": st.state,
                    "error": st.error or "None",
                    "lastUpdatedDateTime": STAMP,
                }
            )
        return out

    def _assigned_licenses(self, u: int) -> list[dict[str, Any]]:
        """Active SKUs only; a plan stays enabled when any assignment enables it (intersection of disabled)."""
        t = self.tenant
        disabled: dict[int, set[str]] = {}
        for st in t.user_states(u):
            if not st.holds_seat:
                continue
            plans: set[str] = set()
            if st.group != NO_GROUP:
                grp = t.groups[st.group]
                plans = set(grp.disabled_plans[grp.sku_indices.index(st.sku)])
            disabled[st.sku] = disabled[st.sku] & plans if st.sku in disabled else plans
        return [{"disabledPlans": sorted(disabled[k]), "skuId": t.skus[k].sku_id} for k in sorted(disabled)]

    def _group_json(self, g: int, select: tuple[str, ...] | None, typed: bool) -> dict[str, Any]:
        grp = self.tenant.groups[g]
        out: dict[str, Any] = {"@odata.type": GROUP_TYPE} if typed else {}
        nick = re.sub(r"[^A-Za-z0-9]", "", grp.display_name)[:40] or f"group{g}"
        for p in select or GROUP_DEFAULT:
            if p == "id":
                out[p] = grp.id
            elif p == "displayName":
                out[p] = grp.display_name
            elif p == "description":
                out[p] = grp.description
            elif p in ("createdDateTime", "renewedDateTime"):
                out[p] = STAMP
            elif p in _EMPTY_LIST_GROUP_PROPS:
                out[p] = []
            elif p == "mailEnabled":
                out[p] = False
            elif p == "securityEnabled":
                out[p] = True
            elif p == "mailNickname":
                out[p] = nick
            elif p == "isAssignableToRole":
                out[p] = False
            elif p == "securityIdentifier":
                out[p] = f"S-1-12-1-{zlib.crc32(grp.id.encode())}-{g}"
            elif p == "assignedLicenses":
                out[p] = [
                    {"disabledPlans": list(d), "skuId": self.tenant.skus[s].sku_id}
                    for s, d in zip(grp.sku_indices, grp.disabled_plans, strict=True)
                ]
            elif p == "licenseProcessingState":
                # https://learn.microsoft.com/graph/api/resources/licenseprocessingstate
                out[p] = {"state": grp.processing_state} if grp.processing_state else None
            elif p == "hasMembersWithLicenseErrors":
                continue  # never returned on GET
            elif p in GROUP_DEFAULT:
                out[p] = None
        return out

    def _device_json(self, g: int, d: int, select: tuple[str, ...] | None) -> dict[str, Any]:
        out: dict[str, Any] = {"@odata.type": DEVICE_TYPE}
        ident = _guid(f"{self.tenant.spec.seed}:device:{g}:{d}")
        values = {
            "id": ident,
            "accountEnabled": True,
            "deviceId": ident,
            "displayName": f"KIOSK-{g:03d}-{d:02d}",
            "operatingSystem": "Windows",
            "operatingSystemVersion": "10.0.22631",
        }
        for p in select or DEVICE_PROPS:
            if p in values:
                out[p] = values[p]
        return out

    def _render(self, tag: int, select: tuple[str, ...] | None, typed: bool) -> dict[str, Any]:
        kind, idx = tag % 3, tag // 3
        if kind == USER:
            return self._user_json(idx, select, typed)
        if kind == GROUP:
            return self._group_json(idx, select, typed)
        return self._device_json(idx // 1000, idx % 1000, select)

    @staticmethod
    def _check_select(select: tuple[str, ...] | None, allowed: tuple[tuple[str, ...], ...], type_name: str) -> None:
        if not select:
            return
        known = {p.lower(): p for props in allowed for p in props}
        for p in select:
            if p.lower() not in known:
                raise _bad(f"Could not find a property named '{p}' on type '{type_name}'.")

    # -------------------------------------------------------------- paging

    def _page(
        self,
        query: _Query,
        key: str,
        items: Sequence[int],
        context: str,
        render: Callable[[int], dict[str, Any]],
        typed: bool | None = None,
        annotate: bool = True,
    ) -> tuple[dict[str, Any] | bytes, int]:
        """One page of ``items``. With ``typed`` (users and members: tags that :meth:`_render` knows), the
        page is built from cached serialised objects; ``render`` is used when a body fault rewrites objects."""
        top = query.top or DEFAULT_TOP
        sig = zlib.crc32(f"{key}|{query.filter}|{query.select}".encode())
        offset = 0
        if query.skiptoken:
            offset = _decode_token(query.skiptoken, sig)
        fault = self._body_fault_now
        size = 0 if fault in ("empty_page", "empty_answer") else max(1, top // 3) if fault == "short_page" else top
        chunk = items[offset : offset + size]
        end = offset + len(chunk)
        if typed is not None and fault is None:
            return self._page_bytes(query, key, items, context, chunk, end, sig, typed, annotate), len(chunk)
        value = [render(tag) for tag in chunk]
        body: dict[str, Any] = {"@odata.context": context}
        if query.count:
            body["@odata.count"] = len(items)
        if fault == "unknown_type":
            body["@microsoft.graph.tips"] = "Unknown annotation a reader must ignore."
            for obj in value:
                obj["sandboxFutureField"] = {"nested": [1, 2, 3]}
            value.append(
                {
                    "@odata.type": "#microsoft.graph.sandboxFutureObject",
                    "id": str(uuid.UUID(int=zlib.crc32(context.encode()) + offset)),
                    "displayName": "A directory object type this reader has never seen",
                    "futureOnly": True,
                }
            )
        if end < len(items) or fault == "empty_page":
            body["@odata.nextLink"] = self._next_link(key, query, _encode_token(end, sig))
        body["value"] = value
        return body, len(value)

    def _page_bytes(
        self,
        query: _Query,
        key: str,
        items: Sequence[int],
        context: str,
        chunk: Sequence[int],
        end: int,
        sig: int,
        typed: bool,
        annotate: bool = True,
    ) -> _RawJson:
        """The same JSON as the dict path (same keys, same order), joined from cached objects."""
        select = query.select
        cache = self._fragments
        parts = []
        for tag in chunk:
            ckey = (tag, select, typed, annotate)
            frag = cache.get(ckey)
            if frag is None:
                frag = cache[ckey] = orjson.dumps(
                    self._render(tag, select, annotate) if typed else self._user_json(tag // 3, select, False)
                )
            parts.append(frag)
        head: dict[str, Any] = {"@odata.context": context}
        if query.count:
            head["@odata.count"] = len(items)
        if end < len(items):
            head["@odata.nextLink"] = self._next_link(key, query, _encode_token(end, sig))
        return _RawJson(b"".join((orjson.dumps(head)[:-1], b',"value":[', b",".join(parts), b"]}")))

    def _next_link(self, key: str, query: _Query, token: str) -> str:
        pieces = [p for p in query.raw if unquote(p.partition("=")[0]).lower().lstrip("$") != "skiptoken"]
        pieces.append(f"$skiptoken={token}")
        return f"{self.base_url}/{key}?{'&'.join(pieces)}"

    # -------------------------------------------------------------- handlers

    def _organization(self, query: _Query, key: str) -> tuple[Any, int]:
        t = self.tenant
        org = {
            "id": t.tenant_id,
            "deletedDateTime": None,
            "businessPhones": [],
            "city": "Redmond",
            "country": None,
            "countryLetterCode": "US",
            "createdDateTime": STAMP,
            "displayName": t.tenant_name,
            "preferredLanguage": "en",
            "tenantType": "AAD",
            "assignedPlans": [],
            "verifiedDomains": [
                {
                    "capabilities": "Email, OfficeCommunicationsOnline",
                    "isDefault": True,
                    "isInitial": True,
                    "name": t.domain,
                    "type": "Managed",
                }
            ],
        }
        return {"@odata.context": self._context("organization"), "value": [_select_dict(org, query.select)]}, 1

    def _sku_json(self, k: int) -> dict[str, Any]:
        # https://learn.microsoft.com/graph/api/resources/subscribedsku
        t = self.tenant
        s = t.skus[k]
        account = k % 2  # two billing accounts, as in Microsoft's List subscribedSkus example; neither is the tenant
        return {
            "accountName": f"{t.domain.split('.', 1)[0]} billing account {account + 1}",
            "accountId": _guid(f"{t.tenant_id}:billing-account:{account}"),
            "appliesTo": s.applies_to,
            "capabilityStatus": s.capability_status,
            "consumedUnits": s.consumed,
            "id": f"{t.tenant_id}_{s.sku_id}",
            "prepaidUnits": {
                "enabled": s.enabled,
                "suspended": s.suspended,
                "warning": s.warning,
                "lockedOut": s.locked_out,
            },
            "servicePlans": _service_plans(s),
            "skuId": s.sku_id,
            "skuPartNumber": s.part_number,
            "subscriptionIds": [sub["id"] for sub in self._subscription_list(k)],
        }

    def _skus(self, query: _Query, key: str) -> tuple[Any, int]:
        t = self.tenant
        if query.filter:
            raise _unsupported("The subscribedSkus collection does not support $filter.")
        if key:
            for k, s in enumerate(t.skus):
                if key.lower() in (f"{t.tenant_id}_{s.sku_id}", s.sku_id):
                    return _select_dict(self._sku_json(k), query.select), 1
            raise _not_found(key)
        value = [_select_dict(self._sku_json(k), query.select) for k in range(len(t.skus))]
        if self._body_fault_now == "empty_answer":
            value = []
        return {"@odata.context": self._context("subscribedSkus"), "value": value}, len(value)

    def _subscription_list(self, k: int) -> list[dict[str, Any]]:
        # https://learn.microsoft.com/graph/api/resources/companysubscription
        t, s = self.tenant, self.tenant.skus[k]
        parts: list[tuple[str, int, datetime | None]] = [("Enabled", s.enabled, None)]
        if s.warning:
            parts.append(("Warning", s.warning, self._lifecycle))
        if s.suspended:
            parts.append(("Suspended", s.suspended, self._lifecycle + timedelta(days=30)))
        if s.locked_out:
            parts.append(("LockedOut", s.locked_out, None))
        out = []
        for i, (status, total, nxt) in enumerate(parts):
            if total == 0 and status == "Enabled" and len(parts) > 1:
                continue
            ident = _guid(f"{t.tenant_id}:{s.sku_id}:{i}")
            out.append(
                {
                    "id": ident,
                    "commerceSubscriptionId": ident,
                    "createdDateTime": STAMP,
                    "isTrial": False,
                    "nextLifecycleDateTime": (nxt or self._lifecycle + timedelta(days=300)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "ownerId": None,
                    "ownerTenantId": None,
                    "ownerType": None,
                    "serviceStatus": _service_plans(s),
                    "skuId": s.sku_id,
                    "skuPartNumber": s.part_number,
                    "status": status,
                    "totalLicenses": total,
                }
            )
        return out

    def _subscriptions(self, query: _Query, key: str) -> tuple[Any, int]:
        value = [
            _select_dict(sub, query.select) for k in range(len(self.tenant.skus)) for sub in self._subscription_list(k)
        ]
        return {"@odata.context": self._context("directory/subscriptions"), "value": value}, len(value)

    def _group_or_404(self, ident: str) -> GroupDef:
        g = self.tenant.group_by_id(ident)
        if g is None or g.index in self.deleted:
            raise _not_found(ident)
        return g

    def _group_tags(self, query: _Query) -> Sequence[int]:
        ckey = ("groups", query.filter or "", str(query.eventual and query.count))
        with self._lock:
            cached = self._cache.get(ckey)
        if cached is None:
            pred = self._group_filter(query)
            cached = array(
                "q", (3 * g.index + GROUP for g in self.tenant.groups if g.index not in self.deleted and pred(g))
            )
            with self._lock:
                self._cache[ckey] = cached
        return cached

    def _groups(self, query: _Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (GROUP_DEFAULT, GROUP_SELECT_ONLY), "microsoft.graph.group")
        items = self._group_tags(query)
        ctx = self._context("groups" + (f"({','.join(query.select)})" if query.select else ""))
        return self._page(query, "groups", items, ctx, lambda tag: self._group_json(tag // 3, query.select, False))

    def _count_groups(self, query: _Query, key: str) -> tuple[Any, int]:
        if not query.eventual:
            raise _bad("$count is not currently supported.")
        return str(len(self._group_tags(query))).encode(), 0

    def _group(self, query: _Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (GROUP_DEFAULT, GROUP_SELECT_ONLY), "microsoft.graph.group")
        g = self._group_or_404(key)
        body = {"@odata.context": self._context("groups/$entity"), **self._group_json(g.index, query.select, False)}
        return body, 1

    def _errors_by_group(self) -> dict[int, list[int]]:
        if self._error_groups is None:
            by: dict[int, set[int]] = {}
            for u, g, _s in self.tenant.errors:
                if self.tenant.groups[g].processed:
                    by.setdefault(g, set()).add(u)
            self._error_groups = {g: sorted(us) for g, us in by.items()}
        return self._error_groups

    def _member_tags(self, rel: str, grp: GroupDef, cast: int | None) -> Sequence[int]:
        ckey = ("members", rel, str(grp.index), str(cast))
        with self._lock:
            cached = self._cache.get(ckey)
        if cached is not None:
            return cached
        tags: list[int] = []
        if rel == "members":
            tags = [3 * u for u in grp.users] + [3 * mg + GROUP for mg in grp.member_groups]
            tags += [3 * (grp.index * 1000 + d) + DEVICE for d in range(grp.devices)]
        elif rel == "membersWithLicenseErrors":
            tags = [3 * u for u in self._errors_by_group().get(grp.index, ())]
        else:  # transitiveMembers: every user, group and device below, each once
            seen_g, seen_u, stack = {grp.index}, set(), [grp.index]
            while stack:
                cur = self.tenant.groups[stack.pop(0)]
                for u in cur.users:
                    if u not in seen_u:
                        seen_u.add(u)
                        tags.append(3 * u)
                tags += [3 * (cur.index * 1000 + d) + DEVICE for d in range(cur.devices)]
                for mg in cur.member_groups:
                    if mg not in seen_g:
                        seen_g.add(mg)
                        tags.append(3 * mg + GROUP)
                        stack.append(mg)
        if cast is not None:
            tags = [x for x in tags if x % 3 == cast]
        result = array("q", tags)
        with self._lock:
            self._cache[ckey] = result
        return result

    def _member_parts(self, key: str) -> tuple[GroupDef, str, int | None]:
        parts = [p for p in key.split("/") if p != "$count"]
        grp = self._group_or_404(parts[0])
        cast = CASTS[parts[2]] if len(parts) > 2 else None
        return grp, parts[1], cast

    def _members(self, query: _Query, key: str) -> tuple[Any, int]:
        grp, rel, cast = self._member_parts(key)
        if query.filter:
            raise _unsupported(f"The sandbox does not simulate $filter on {rel}.")
        allowed = {USER: (USER_DEFAULT, USER_SELECT_ONLY), GROUP: (GROUP_DEFAULT, GROUP_SELECT_ONLY)}.get(
            cast if cast is not None else -1,
            (USER_DEFAULT, USER_SELECT_ONLY, GROUP_DEFAULT, GROUP_SELECT_ONLY, DEVICE_PROPS),
        )
        type_name = {USER: "microsoft.graph.user", GROUP: "microsoft.graph.group"}.get(
            cast if cast is not None else -1, "microsoft.graph.directoryObject"
        )
        self._check_select(query.select, allowed, type_name)
        items = self._member_tags(rel, grp, cast)
        what = {USER: "users", GROUP: "groups", DEVICE: "devices"}.get(
            cast if cast is not None else -1, "directoryObjects"
        )
        ctx = self._context(what + (f"({','.join(query.select)})" if query.select else ""))
        # Microsoft's examples of an OData cast (/groups/{id}/members/microsoft.graph.user) show objects without
        # @odata.type (group-list-members, example 4): the sandbox omits it there too.
        annotate = cast is None
        return self._page(
            query,
            f"groups/{key}",
            items,
            ctx,
            lambda tag: self._render(tag, query.select, annotate),
            typed=True,
            annotate=annotate,
        )

    def _count_members(self, query: _Query, key: str) -> tuple[Any, int]:
        if not query.eventual:
            raise _bad("$count is not currently supported.")
        grp, rel, cast = self._member_parts(key)
        return str(len(self._member_tags(rel, grp, cast))).encode(), 0

    def _user_tags(self, query: _Query) -> Sequence[int]:
        n = self.tenant.user_count
        if not query.filter:
            return range(0, 3 * n, 3)
        ckey = ("users", query.filter, str(query.eventual and query.count))
        with self._lock:
            cached = self._cache.get(ckey)
        if cached is None:
            pred = self._user_filter(query)
            cached = array("q", (3 * u for u in range(n) if pred(u)))
            with self._lock:
                self._cache[ckey] = cached
        return cached

    def _users(self, query: _Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (USER_DEFAULT, USER_SELECT_ONLY), "microsoft.graph.user")
        items = self._user_tags(query)
        ctx = self._context("users" + (f"({','.join(query.select)})" if query.select else ""))
        return self._page(
            query, "users", items, ctx, lambda tag: self._user_json(tag // 3, query.select, False), typed=False
        )

    def _count_users(self, query: _Query, key: str) -> tuple[Any, int]:
        if not query.eventual:
            raise _bad("$count is not currently supported.")
        return str(len(self._user_tags(query))).encode(), 0

    def _user_or_404(self, ident: str) -> int:
        t = self.tenant
        u = t.user_index(ident)
        if u is None and "@" in ident:
            m = re.search(r"(\d+)(?:_[^@]*)?@", ident)
            if m and int(m.group(1)) < t.user_count and t.user_names(int(m.group(1)))[3].lower() == ident.lower():
                u = int(m.group(1))
        if u is None:
            raise _not_found(ident)
        return u

    def _user(self, query: _Query, key: str) -> tuple[Any, int]:
        self._check_select(query.select, (USER_DEFAULT, USER_SELECT_ONLY), "microsoft.graph.user")
        u = self._user_or_404(key)
        return {"@odata.context": self._context("users/$entity"), **self._user_json(u, query.select, False)}, 1

    def _license_details(self, query: _Query, key: str) -> tuple[Any, int]:
        # https://learn.microsoft.com/graph/api/resources/licensedetails
        u = self._user_or_404(key)
        t = self.tenant
        value = []
        for lic in self._assigned_licenses(u):
            s = next(s for s in t.skus if s.sku_id == lic["skuId"])
            disabled = set(lic["disabledPlans"])
            value.append(
                _select_dict(
                    {
                        "id": base64.urlsafe_b64encode(f"{t.user_id(u)}:{s.sku_id}".encode()).decode().rstrip("="),
                        "skuId": s.sku_id,
                        "skuPartNumber": s.part_number,
                        "servicePlans": [
                            {
                                "servicePlanId": p.id,
                                "servicePlanName": p.name,
                                "provisioningStatus": "Disabled" if p.id in disabled else "Success",
                                "appliesTo": s.applies_to,
                            }
                            for p in s.plans
                        ],
                    },
                    query.select,
                )
            )
        return {"@odata.context": self._context(f"users('{t.user_id(u)}')/licenseDetails"), "value": value}, len(value)

    def _send_mail(self, req: Request, mailbox: str) -> Response:
        # https://learn.microsoft.com/graph/api/user-sendmail : 202 Accepted, no body.
        try:
            payload = orjson.loads(req.body) if req.body else None
        except orjson.JSONDecodeError:
            raise _bad("Unable to read JSON request payload.", "RequestBodyRead") from None
        if not isinstance(payload, dict) or not isinstance(payload.get("message"), dict):
            raise _bad("Empty Payload. JSON content expected.", "ErrorInvalidRequest")
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
            raise _bad("Invalid batch payload format.", "BadRequest") from None
        reqs = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(reqs, list) or not reqs:
            raise _bad("Invalid batch payload format.", "BadRequest")
        if len(reqs) > MAX_BATCH:
            raise _bad(f"Number of requests in batch exceeds {MAX_BATCH}.", "BadRequest")
        ids = [r.get("id") for r in reqs if isinstance(r, dict)]
        if len(ids) != len(reqs) or any(not isinstance(i, str) or not i for i in ids) or len(set(ids)) != len(ids):
            raise _bad("Each batch request needs a unique string id.", "BadRequest")
        responses: list[bytes] = []
        delay, objects = 0.0, 0
        for r in reqs:
            url = str(r.get("url", ""))
            if url.startswith(("http://", "https://")):
                raise _bad("Batch request urls must be relative.", "BadRequest")
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

    # -------------------------------------------------------------- $filter

    def _group_filter(self, query: _Query) -> Callable[[GroupDef], bool]:
        # https://learn.microsoft.com/graph/api/resources/group ; advanced forms per
        # https://learn.microsoft.com/graph/aad-advanced-queries (ConsistencyLevel: eventual and $count=true).
        preds: list[Callable[[GroupDef], bool]] = []
        sku_of = {s.sku_id: s.index for s in self.tenant.skus}
        for clause in _split_and(query.filter or ""):
            c = clause.strip()
            if re.fullmatch(r"assignedLicenses/\$count\s+ne\s+0", c, re.I):
                _advanced(query)
                preds.append(lambda g: g.licensed)
            elif re.fullmatch(r"assignedLicenses/any\(\s*\)", c, re.I):
                # Microsoft's List groups example: $filter=assignedLicenses/any() (no advanced query needed).
                preds.append(lambda g: g.licensed)
            elif re.fullmatch(r"hasMembersWithLicenseErrors\s+eq\s+true", c, re.I):
                preds.append(_in_index(set(self._errors_by_group())))
            elif m := re.fullmatch(r"assignedLicenses/any\((\w+):\1/skuId\s+eq\s+([0-9a-fA-F-]{36})\)", c, re.I):
                k = sku_of.get(m.group(2).lower(), -1)
                preds.append(lambda g, k=k: k in g.sku_indices)  # type: ignore[misc]
            elif m := re.fullmatch(r"id\s+eq\s+'([^']*)'", c, re.I):
                gid = m.group(1).lower()
                preds.append(lambda g, v=gid: g.id == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"id\s+in\s+\(([^)]*)\)", c, re.I):
                ids = {x.strip().strip("'").lower() for x in m.group(1).split(",")}
                preds.append(lambda g, ids=ids: g.id in ids)  # type: ignore[misc]
            elif m := re.fullmatch(r"displayName\s+eq\s+'((?:[^']|'')*)'", c, re.I):
                name = m.group(1).replace("''", "'")
                preds.append(lambda g, v=name: g.display_name == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"startswith\(displayName,\s*'((?:[^']|'')*)'\)", c, re.I):
                v = m.group(1).replace("''", "'").lower()
                preds.append(lambda g, v=v: g.display_name.lower().startswith(v))  # type: ignore[misc]
            elif re.fullmatch(r"securityEnabled\s+eq\s+true", c, re.I):
                continue
            else:
                raise _unsupported(f"Unsupported or invalid query filter clause specified for property: '{c}'.")
        return lambda g: all(p(g) for p in preds)

    def _user_filter(self, query: _Query) -> Callable[[int], bool]:
        t = self.tenant
        preds: list[Callable[[int], bool]] = []
        sku_of = {s.sku_id: s.index for s in t.skus}
        for clause in _split_and(query.filter or ""):
            c = clause.strip()
            if m := re.fullmatch(r"accountEnabled\s+(eq|ne)\s+(true|false)", c, re.I):
                if m.group(1).lower() == "ne":
                    _advanced(query)
                want = (m.group(2).lower() == "true") != (m.group(1).lower() == "ne")
                preds.append(lambda u, w=want: bool(t.flags[u] & ENABLED) == w)  # type: ignore[misc]
            elif m := re.fullmatch(r"userType\s+eq\s+'(Guest|Member)'", c, re.I):
                guest = m.group(1).lower() == "guest"
                preds.append(lambda u, gst=guest: bool(t.flags[u] & GUEST) == gst)  # type: ignore[misc]
            elif m := re.fullmatch(r"creationType\s+eq\s+'Invitation'", c, re.I):
                preds.append(lambda u: bool(t.flags[u] & INVITED))
            elif m := re.fullmatch(r"externalUserState\s+eq\s+'(PendingAcceptance|Accepted)'", c, re.I):
                bit = EXT_PENDING if m.group(1).lower() == "pendingacceptance" else EXT_ACCEPTED
                preds.append(lambda u, b=bit: bool(t.flags[u] & b))  # type: ignore[misc]
            elif re.fullmatch(r"assignedLicenses/\$count\s+ne\s+0", c, re.I):
                _advanced(query)
                preds.append(lambda u: bool(self._assigned_licenses(u)))
            elif m := re.fullmatch(r"assignedLicenses/any\((\w+):\1/skuId\s+eq\s+([0-9a-fA-F-]{36})\)", c, re.I):
                k = sku_of.get(m.group(2).lower(), -1)
                preds.append(
                    lambda u, k=k: any(  # type: ignore[misc]
                        st.sku == k and not st.error for st in t.user_states(u)
                    )
                )
            elif m := re.fullmatch(r"id\s+eq\s+'([^']*)'", c, re.I):
                uid = m.group(1).lower()
                preds.append(lambda u, v=uid: t.user_id(u) == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"id\s+in\s+\(([^)]*)\)", c, re.I):
                ids = {x.strip().strip("'").lower() for x in m.group(1).split(",")}
                preds.append(lambda u, ids=ids: t.user_id(u) in ids)  # type: ignore[misc]
            elif m := re.fullmatch(r"userPrincipalName\s+eq\s+'((?:[^']|'')*)'", c, re.I):
                v = m.group(1).replace("''", "'").lower()
                preds.append(lambda u, v=v: t.user_names(u)[3].lower() == v)  # type: ignore[misc]
            elif m := re.fullmatch(r"startswith\(displayName,\s*'((?:[^']|'')*)'\)", c, re.I):
                v = m.group(1).replace("''", "'").lower()
                preds.append(lambda u, v=v: t.user_names(u)[0].lower().startswith(v))  # type: ignore[misc]
            else:
                raise _unsupported(f"Unsupported or invalid query filter clause specified for property: '{c}'.")
        return lambda u: all(p(u) for p in preds)


def _in_index(indices: set[int]) -> Callable[[GroupDef], bool]:
    return lambda g: g.index in indices


def _guid(text: str) -> str:
    return str(uuid.UUID(bytes=hashlib.blake2b(text.encode(), digest_size=16).digest(), version=4))


def _advanced(query: _Query) -> None:
    if not (query.eventual and query.count):
        # Graph's answer to an advanced-only filter sent without ConsistencyLevel: eventual and $count=true.
        raise _unsupported("Unsupported Query.")


def _split_and(text: str) -> list[str]:
    """Split a $filter on top-level ``and`` (outside quotes and parentheses)."""
    out: list[str] = []
    buf: list[str] = []
    depth, quoted, i = 0, False, 0
    while i < len(text):
        ch = text[i]
        if ch == "'":
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")":
            depth -= 1
        if not quoted and depth == 0 and text[i : i + 5].lower() == " and ":
            out.append("".join(buf))
            buf, i = [], i + 5
            continue
        buf.append(ch)
        i += 1
    if quoted or depth:
        raise _bad("Syntax error in $filter: unbalanced quotes or parentheses.")
    out.append("".join(buf))
    return [c for c in out if c.strip()]


def _service_plans(sku: Any) -> list[dict[str, Any]]:
    """A SKU's plans as subscribedSku.servicePlans and companySubscription.serviceStatus both show them."""
    return [
        {
            "servicePlanId": plan.id,
            "servicePlanName": plan.name,
            "provisioningStatus": "Success",
            "appliesTo": sku.applies_to,
        }
        for plan in sku.plans
    ]


def _select_dict(obj: dict[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    if not select:
        return obj
    lower = {k.lower(): k for k in obj}
    for p in select:
        if p.lower() not in lower:
            raise _bad(f"Could not find a property named '{p}' on the requested type.")
    return {lower[p.lower()]: obj[lower[p.lower()]] for p in select}


def _encode_token(offset: int, sig: int) -> str:
    # Opaque like Graph's: the reader must pass it back untouched, never parse it.
    raw = f"sbx1|{offset}|{sig:08x}|{zlib.crc32(f'{offset}{sig}'.encode()):08x}".encode()
    return "RFNwdAIAAQAAAC" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, sig: int) -> int:
    try:
        body = token.removeprefix("RFNwdAIAAQAAAC")
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        tag, offset_s, sig_s, check = raw.split("|")
        offset = int(offset_s)
        ok = tag == "sbx1" and int(sig_s, 16) == sig and int(check, 16) == zlib.crc32(f"{offset}{sig}".encode())
    except (ValueError, UnicodeDecodeError):
        ok, offset = False, 0
    if not ok or offset < 0:
        raise GraphError(400, "Directory_ExpiredPageToken", "The specified page token value has expired or is invalid.")
    return offset


def http_date(seconds_from_now: float) -> str:
    """An HTTP-date ``Retry-After`` value (RFC 9110), for tests of that form."""
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)
