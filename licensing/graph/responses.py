"""What one Graph exchange gives back: the response record, the headers we act on (resource units, throttle
percentage), the kiota middleware that captures them, and the error an admin can act on for a final answer."""

from __future__ import annotations

import gc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import orjson

from licensing.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphResponseError,
    GraphThrottledError,
    GraphUnavailableError,
    redact_text,
    redact_url,
)

__all__ = [
    "SIGN_IN_ROUTE",
    "Exchange",
    "Response",
    "bulk_allocation",
    "exhausted",
    "graph_error",
    "header",
    "observer_middleware",
    "permission_for",
    "premium_required",
    "redirect_error",
    "resource_units",
]

SIGN_IN_ROUTE: Final = "/users?signInActivity"  # /users with signInActivity selected (its own permission)
# The least-privileged application permission behind each route, from each page's permissions table:
# https://learn.microsoft.com/graph/api/subscribedsku-list, .../companysubscription-list (Organization.Read.All:
# LicenseAssignment.Read.All does not cover /directory/subscriptions), .../organization-list,
# .../user-sendmail, .../group-list and .../group-list-members, .../user-list.
_PERMISSIONS: Final = (
    # signInActivity on /users: "require a Microsoft Entra ID P1 or P2 license and the AuditLog.Read.All
    # permission" (https://learn.microsoft.com/graph/api/user-list, "Get users including their last sign-in time").
    ("/users?signInActivity", "AuditLog.Read.All"),
    ("/subscribedSkus", "LicenseAssignment.Read.All or Organization.Read.All"),
    ("/directory/subscriptions", "Organization.Read.All"),
    ("/organization", "Organization.Read.All"),
    ("/users/{id}/sendMail", "Mail.Send"),
    # https://learn.microsoft.com/graph/api/group-assignlicense (licensing-audit apply: the writer, never the app)
    ("/groups/{id}/assignLicense", "LicenseAssignment.ReadWrite.All"),
    ("/groups", "GroupMember.Read.All"),
    ("/users", "User.Read.All"),
)


# A tenant without Entra ID P1/P2 refuses sign-in data with this 403, whatever the app's permissions: "Neither
# tenant is B2C or tenant doesn't have premium license: Accessing sign-in reports requires a Microsoft Entra ID P1
# or P2 license" (https://learn.microsoft.com/entra/identity/monitoring-health/howto-configure-prerequisites-for-reporting-api,
# "Common errors"). The code is the one Graph sends with that message; the message is matched too.
NON_PREMIUM_CODE: Final = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
PREMIUM_REMEDY: Final = (
    "the tenant has no Microsoft Entra ID P1 or P2 licence, which sign-in activity needs (no app permission fixes "
    "this; a P1 or P2 subscription in the tenant does)"
)


def premium_required(code: str | None, message: str | None = None) -> bool:
    """Whether a refusal says the tenant lacks Entra ID P1/P2 (not that the app lacks a permission)."""
    if code and code.casefold() == NON_PREMIUM_CODE.casefold():
        return True
    return bool(message and "premium license" in message.casefold())


def permission_for(route: str) -> str | None:
    for prefix, permission in _PERMISSIONS:
        if route.startswith(prefix):
            return permission
    return None


@contextmanager
def bulk_allocation() -> Iterator[None]:
    """No cyclic GC while a page is parsed and turned into records (synchronous code, no await inside).

    A members page is ~20,000 new dicts and lists: generation-0 collections fire dozens of
    times per page and rescan the growing snapshot, about 40 % of the reader's CPU when
    measured. Reference counting still frees everything; the collector runs again afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    content: bytes = b""
    error_code: str | None = None
    error_message: str | None = None

    def json(self) -> Any:
        try:
            with bulk_allocation():
                return orjson.loads(self.content) if self.content else {}
        except orjson.JSONDecodeError as exc:
            raise GraphResponseError(f"Graph returned a body that is not JSON ({exc})", status=self.status) from exc


class Exchange:
    """A request option our middleware fills with the final response's status and headers."""

    __slots__ = ("headers", "status")
    KEY: Final = "licensing_graph_exchange"

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: Mapping[str, str] = {}

    @staticmethod
    def get_key() -> str:
        return Exchange.KEY


def observer_middleware() -> Any:
    """A kiota middleware that copies status and headers of the response into the request's ``Exchange``."""
    from kiota_http.middleware.middleware import REQUEST_OPTIONS_KEY, BaseMiddleware

    class ExchangeObserver(BaseMiddleware):
        async def send(self, request: Any, transport: Any) -> Any:
            options = request.extensions.get(REQUEST_OPTIONS_KEY) or {}
            exchange = options.get(Exchange.KEY)
            response = await super().send(request, transport)
            if exchange is not None:
                exchange.status = response.status_code
                exchange.headers = response.headers
            return response

    return ExchangeObserver()


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:
        lower = name.lower()
        for key, candidate in headers.items():
            if key.lower() == lower:
                value = candidate
                break
    if value is None:
        return None
    if isinstance(value, list | tuple | set | frozenset):
        value = next(iter(value), None)
    return None if value is None else str(value)


def resource_units(headers: Mapping[str, Any] | None) -> float:
    """x-ms-resource-unit: "the resource unit used for this request" (throttling-limits); 0 when absent."""
    raw = header(headers, "x-ms-resource-unit")
    try:
        return float(raw) if raw else 0.0
    except ValueError:
        return 0.0


def graph_error(status: int, route: str, what: str, code: str | None = None, message: str | None = None) -> GraphError:
    """Map a final (non-retried or exhausted) answer to the error an admin can act on."""
    detail = f": {code}" if code else ""
    if message:
        detail += f" ({redact_text(message)[:200]})"
    if status == 401:
        return GraphAuthError(f"Graph refused the token for {what} (401){detail}", status=status, code=code)
    if status == 403 and premium_required(code, message):
        return GraphPermissionError(f"Graph denied {what} (403){detail}; {PREMIUM_REMEDY}", code=code)
    if status == 403:
        permission = permission_for(route)
        needs = f"; the app needs the Graph application permission {permission}" if permission else ""
        return GraphPermissionError(f"Graph denied {what} (403){detail}{needs}", permission=permission, code=code)
    if status == 404:
        return GraphNotFoundError(f"{what} was not found (404){detail}", status=status, code=code)
    if status == 429:
        return GraphThrottledError(f"Graph kept throttling {what} (429){detail}", status=status, code=code)
    if status >= 500:
        return GraphUnavailableError(f"Graph failed on {what} ({status}){detail}", status=status, code=code)
    return GraphResponseError(f"Graph rejected {what} ({status}){detail}", status=status, code=code)


def exhausted(err: GraphError, reason: str) -> GraphError:
    """The same error, saying why retrying stopped."""
    if isinstance(err, GraphPermissionError):
        return GraphPermissionError(f"{err.message}; {reason}", permission=err.permission, code=err.code)
    return type(err)(f"{err.message}; {reason}", status=err.status, code=err.code)


def redirect_error(response: Response, what: str, origin: tuple[str, str]) -> GraphResponseError:
    """A 3xx is never followed: to another origin it is refused, on ours it is not a documented Graph answer."""
    location = header(response.headers, "Location") or ""
    try:
        parts = urlsplit(location)
        foreign = bool(parts.netloc) and (parts.scheme.lower(), parts.netloc.lower()) != origin
    except ValueError:
        foreign = True
    where = f" to another host ({redact_url(location)})" if foreign else ""
    return GraphResponseError(
        f"Graph answered {what} with a redirect ({response.status}){where}; redirects are not followed",
        status=response.status,
    )
