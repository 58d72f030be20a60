"""Faults and throttling of the sandbox: which fault fires, the permission model, resource units and the RU budget."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime
from typing import Final

import orjson

from licensing.sandbox.faults import BODY_FAULTS, ROUTES, FaultRule
from licensing.sandbox.wire import (
    FAMILY_PERMISSION,
    ROUTE_PERMISSIONS,
    AppState,
    GraphError,
    Query,
    Response,
    Route,
    http_date,
    not_found,
)

NIL_APP_ID: Final = "00000000-0000-0000-0000-000000000000"  # the application in x-ms-throttle-scope (no app signs in)


class Metering(AppState):
    """Decides, per request, whether it is denied, faulted or throttled, and what it costs."""

    def _denied(self, family: str) -> GraphError | None:
        """403 for a route the caller's application permissions do not cover (None: all permissions)."""
        granted = self._faults.permissions
        need = ROUTE_PERMISSIONS.get(FAMILY_PERMISSION.get(family, family))
        if granted is None or need is None or granted & need:
            return None
        return GraphError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")

    def _error(self, exc: GraphError, request_id: str, client_id: str) -> Response:
        body = {
            "error": {
                "code": exc.code,
                "message": exc.message,
                "innerError": {
                    # When the server answered (as Graph's innerError.date): the wall clock on purpose, like an
                    # HTTP Date header; nothing the audit judges is computed from it.
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

    def _pre_fault(self, route: Route) -> FaultRule | None:
        for i, rule in enumerate(self._faults.rules):
            if rule.kind not in BODY_FAULTS and rule.matches(route.family) and self._fires(i, rule):
                return rule
        return None

    def _body_fault(self, route: Route) -> str | None:
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
            return not_found("sandbox-injected")
        if k == "503":
            return GraphError(503, "ServiceUnavailable", "Service unavailable.", headers)
        messages = {"500": ("InternalServerError", "Internal server error."), "502": ("BadGateway", "Bad gateway.")}
        code, message = messages.get(k, ("GatewayTimeout", "Gateway timeout."))
        return GraphError(int(k), code, message)

    def _cost(self, route: Route, query: Query) -> int:
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
                # https://learn.microsoft.com/graph/throttling-limits, "Throttled responses requests": the scope as
                # <Scope>/<Limit>/<ApplicationId>/<TenantId> and the reason. The sandbox authenticates no app: its
                # application id is the nil GUID. The percentage on a 429 is our reading of "0.8 to 1.8" (a value
                # over 1.0 can only describe usage past the limit); the client does not need it (pacing.py).
                scope = f"Tenant_Application/ReadWrite/{NIL_APP_ID}/{self.tenant.tenant_id}"
                return GraphError(
                    429,
                    "TooManyRequests",
                    "Too many requests: resource unit budget of the tenant and application exceeded.",
                    [
                        ("Retry-After", retry),
                        ("x-ms-throttle-limit-percentage", pct),
                        ("x-ms-throttle-scope", scope),
                        ("x-ms-throttle-information", "ResourceUnitLimitExceeded"),
                    ],
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
