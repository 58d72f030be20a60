"""The sandbox's wire: its HTTP request and response records, Graph's error shapes, OData query options, the
properties of Microsoft's resource shapes, and the small encoders the other parts share."""

from __future__ import annotations

import base64
import hashlib
import random
import threading
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final

from licensing.sandbox.faults import Faults
from licensing.sandbox.tenant import (
    GroupDef,
    SandboxTenant,
)

JSON_TYPE: Final = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_TOP: Final = 999  # https://learn.microsoft.com/graph/paging : $top 1..999 for directory objects
DEFAULT_TOP: Final = 100
MAX_BATCH: Final = 20  # https://learn.microsoft.com/graph/json-batching : at most 20 requests
STAMP: Final = "2024-03-01T09:30:00Z"  # fixed timestamps keep responses deterministic
# signInActivity: pages of at most 500 (a larger $top is served 500 a page, List users); a tenant without Entra ID
# P1/P2 refuses it with this code (the message of howto-configure-prerequisites-for-reporting-api, "Common errors").
SIGN_IN_MAX_TOP: Final = 500
NON_PREMIUM_CODE: Final = "Authentication_RequestFromNonPremiumTenantOrB2CTenant"
# signInActivity's "no date" as Microsoft's List users example serves it (user-list, example 11).
PLACEHOLDER: Final = "0001-01-01T00:00:00Z"
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
    "signInActivity",
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
EMPTY_LIST_GROUP_PROPS: Final = frozenset(
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


class RawJson(bytes):
    """A body already serialised as JSON (bytes otherwise mean a text/plain body such as a $count)."""

    __slots__ = ()


class GraphError(Exception):
    """An error answer in Graph's JSON shape."""

    def __init__(self, status: int, code: str, message: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or []


def bad_request(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


def unsupported(message: str = "Unsupported Query.") -> GraphError:
    return GraphError(400, "Request_UnsupportedQuery", message)


def not_found(ident: str) -> GraphError:
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
    # https://learn.microsoft.com/graph/api/group-assignlicense: LicenseAssignment.ReadWrite.All; Directory.ReadWrite
    # .All as a higher-privileged one is an assumption (the page's permissions table is an include not read here)
    "assignLicense": frozenset({"LicenseAssignment.ReadWrite.All", "Directory.ReadWrite.All"}),
    # https://learn.microsoft.com/graph/api/user-reprocesslicenseassignment (its permissions table is an include not
    # read here: the same write permissions plus User.ReadWrite.All are an assumption)
    # https://learn.microsoft.com/graph/api/user-assignlicense: LicenseAssignment.ReadWrite.All (least privileged);
    # Directory.ReadWrite.All, User.ReadWrite.All higher
    "userAssignLicense": frozenset(
        {"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
    ),
    "reprocessLicenseAssignment": frozenset(
        {"LicenseAssignment.ReadWrite.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
    ),
}  # fmt: skip
FAMILY_PERMISSION: Final = {
    "group": "groups",
    "transitiveMembers": "members",
    "membersWithLicenseErrors": "members",
    "user": "users",
    "licenseDetails": "users",
}
FULL_USER_READ: Final = frozenset({"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"})


@dataclass(slots=True)
class Query:
    raw: list[str]  # the client's own query pieces, kept as sent for next links
    select: tuple[str, ...] | None = None
    filter: str | None = None
    top: int | None = None
    count: bool = False
    skiptoken: str | None = None
    eventual: bool = False


@dataclass(slots=True)
class Route:
    family: str
    paged: bool
    run: Callable[[Query, str], tuple[Any, int]]  # (JSON-able or bytes body, objects) ; str = route key
    status: int = 200


class Stats:
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


class AppState:
    """The instance state of :class:`licensing.sandbox.graph_api.GraphApp`, declared for the parts it is built of."""

    tenant: SandboxTenant
    base_url: str
    latency_ms: float
    sent_mail: list[dict[str, Any]]
    deleted: set[int]
    _lock: threading.Lock
    _stats: Stats
    _cache: dict[tuple[str, ...], Sequence[int]]
    _fragments: dict[tuple[int, tuple[str, ...] | None, bool, bool], bytes]
    _ru_log: deque[tuple[float, int]]
    _ru_sum: int
    _throttle_pct: str | None
    _faults: Faults
    _fault_seen: list[int]
    _rng: random.Random
    _error_groups: dict[int, list[int]] | None
    _body_fault_now: str | None


def in_index(indices: set[int]) -> Callable[[GroupDef], bool]:
    return lambda g: g.index in indices


def guid_of(text: str) -> str:
    return str(uuid.UUID(bytes=hashlib.blake2b(text.encode(), digest_size=16).digest(), version=4))


def require_advanced(query: Query) -> None:
    if not (query.eventual and query.count):
        # Graph's answer to an advanced-only filter sent without ConsistencyLevel: eventual and $count=true.
        raise unsupported("Unsupported Query.")


def split_and(text: str) -> list[str]:
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
        raise bad_request("Syntax error in $filter: unbalanced quotes or parentheses.")
    out.append("".join(buf))
    return [c for c in out if c.strip()]


def service_plans(sku: Any) -> list[dict[str, Any]]:
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


def select_dict(obj: dict[str, Any], select: tuple[str, ...] | None) -> dict[str, Any]:
    if not select:
        return obj
    lower = {k.lower(): k for k in obj}
    for p in select:
        if p.lower() not in lower:
            raise bad_request(f"Could not find a property named '{p}' on the requested type.")
    return {lower[p.lower()]: obj[lower[p.lower()]] for p in select}


def encode_token(offset: int, sig: int) -> str:
    # Opaque like Graph's: the reader must pass it back untouched, never parse it.
    raw = f"sbx1|{offset}|{sig:08x}|{zlib.crc32(f'{offset}{sig}'.encode()):08x}".encode()
    return "RFNwdAIAAQAAAC" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, sig: int) -> int:
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
    """An HTTP-date ``Retry-After`` value (RFC 9110), for tests of that form.

    The wall clock on purpose: the client measures the wait against its own clock, as it would against Graph."""
    return format_datetime(datetime.now(UTC) + timedelta(seconds=seconds_from_now), usegmt=True)
