"""The tenant-wide users scan: independent UPN-prefix chains on a big tenant, its completeness proved by a count.

One ``/users`` scan is one ``@odata.nextLink`` chain: with signInActivity selected Graph serves at most 500 users a
page (https://learn.microsoft.com/graph/api/user-list, "Get users including their last sign-in time"), so 100,000
users are 200 sequential pages, about a minute, while the resource units they cost fit in a second of Graph's
budget. The same users are read here as several chains that run side by side, one per first character of the
``userPrincipalName``:

* ``startswith(userPrincipalName,'x')`` is a default filter, no advanced query parameters needed (the userPrincipalName
  row of the $filter table, https://learn.microsoft.com/graph/aad-advanced-queries: eq, startsWith "Default"; the user
  resource, https://learn.microsoft.com/graph/api/resources/user, lists eq, ne, not, ge, le, in, startsWith,
  endsWith). ``ge``/``le`` ranges are not used: the advanced-queries table leaves ``ge`` blank for userPrincipalName
  while the resource page lists it, and a prefix needs no ordering (collation) assumption.
* The prefixes cover every character a UPN may hold: "Only the following characters are allowed A - Z, a - z,
  0 - 9, ' . - _ ! # ^ ~" (the user resource, userPrincipalName; the same list in Microsoft Entra's username policies,
  https://learn.microsoft.com/entra/identity/authentication/concept-password-policies#username-policies).
* Assumption (the pages are silent): startsWith on userPrincipalName compares without regard to case, as directory
  names are case-insensitive; only lower-case letters are asked, so a case-insensitive Graph returns each user once.
* A filter beside ``$select=…,signInActivity`` is Microsoft's own example (user-list, beta, "List the last sign-in
  time of users with a specific display name": ``$filter=startswith(displayName,'Eric')&$select=displayName,
  signInActivity``); the v1.0 note restricts filtering *on* signInActivity with other properties, not this.

Completeness is proved, not assumed: users are kept by id (a user two chains return is one user) and their number
must equal ``GET /users/$count`` (``ConsistencyLevel: eventual``, user-list example 3). Anything else (a UPN outside
the documented characters, a case-sensitive match, a chain that ended early, a refused filter, no count) falls back
to the single documented scan, the read of every round before this one: slower, never incomplete. Because the count
is eventually consistent, a user created or deleted during the read can cause that fallback too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from licensing.errors import BadRequestError, GraphError, GraphPermissionError, GraphResponseError
from licensing.graph.client import EVENTUAL, CollectionRequest, GraphClient, query
from licensing.graph.members import member_kind
from licensing.graph.responses import SIGN_IN_ROUTE

__all__ = [
    "PAGE",
    "SIGN_IN_PAGE",
    "SPLIT_FROM",
    "SPLIT_PAGE",
    "UPN_PREFIXES",
    "USERS_KEY",
    "USER_FIELDS",
    "ScanResult",
    "UsersScan",
    "is_users_key",
    "parse_count",
    "read_count",
    "sign_ins_refused",
    "tenant_user_count",
    "upn_filter",
    "user_select",
]

log = logging.getLogger(__name__)

PAGE: Final = 999  # the $top maximum for users, groups and members
USER_FIELDS: Final = (
    "id,displayName,userPrincipalName,userType,externalUserState,creationType,"
    "accountEnabled,usageLocation,assignedLicenses,licenseAssignmentStates,createdDateTime"
)
# signInActivity in the same scan: "returned only on $select", needs AuditLog.Read.All and a tenant with Entra ID
# P1 or P2; "the maximum page size for $top is 500. Requests with $top set higher than 500 return pages with up to
# 500 users" (https://learn.microsoft.com/graph/api/user-list, "Get users including their last sign-in time").
SIGN_IN_PAGE: Final = 500
USERS_KEY: Final = "\x00users"  # the users scan's keys among collection reads start so (never a group id)
# The first characters a UPN may hold (see the module docstring); letters once, lower case.
UPN_PREFIXES: Final = (*"abcdefghijklmnopqrstuvwxyz0123456789", "'", ".", "-", "_", "!", "#", "^", "~")
# Below this many users one chain is short (10 pages of 500): it is not split, and no count is compared.
SPLIT_FROM: Final = 5_000
# Users a page in the split chains. read_collections packs up to 20 pending pages into one $batch, and with 44
# chains they are mostly users pages: at 500 a page one answer held 10,000 users (the reader's peak RSS went from
# 250 to 315 MB at 100k users); at 200 it holds 4,000. Each page costs 1 RU: 100,000 users are ~550 RU instead of
# ~220, under a second of Graph's 8,000 RU per 10 s, and the longest chain stays far below the members' (bench).
SPLIT_PAGE: Final = 200


def is_users_key(key: str) -> bool:
    return key.startswith(USERS_KEY)


def upn_filter(prefix: str) -> str:
    """``startswith(userPrincipalName,'p')`` with the OData quote doubled (``'`` is ``''''``)."""
    return "startswith(userPrincipalName,'" + prefix.replace("'", "''") + "')"


def user_select(sign_ins: bool) -> tuple[str, str]:
    """The ``$select`` of a users read and the route its refusal is named by: with signInActivity a refusal names
    AuditLog.Read.All (or P1), not User.Read.All."""
    return (USER_FIELDS + ",signInActivity", SIGN_IN_ROUTE) if sign_ins else (USER_FIELDS, "/users")


def _request(prefix: str | None, sign_ins: bool) -> CollectionRequest:
    fields, route = user_select(sign_ins)
    top = SIGN_IN_PAGE if sign_ins else PAGE
    params: dict[str, str | int] = {"$select": fields, "$top": top}
    if prefix is not None:
        params = {"$filter": upn_filter(prefix), "$select": fields, "$top": min(top, SPLIT_PAGE)}
    return CollectionRequest(USERS_KEY + (prefix or ""), "/users?" + query(params), route)


def sign_ins_refused(exc: object) -> bool:
    """What a users read with signInActivity takes for "sign-in activity refused" (AuditLog.Read.All, no Entra ID
    P1/P2, or a 400 on the pair): the users are then read again without it."""
    return isinstance(exc, GraphPermissionError | BadRequestError | GraphResponseError)


@dataclass(frozen=True, slots=True)
class ScanResult:
    error: GraphError | None  # None: every user was read
    sign_ins_read: bool
    sign_ins_note: str | None  # why signInActivity was not read
    chains: int  # of the read that counted (1: the single scan)
    counted: int | None  # GET /users/$count, when asked
    users: int  # distinct users the read that counted returned
    fallbacks: tuple[str, ...] = ()  # why a split read was read again as one chain


def parse_count(content: bytes) -> int:
    """A ``/$count`` answer: the number as plain text ("Content-type: text/plain", ``893`` in Microsoft's "Get only a
    count of users", https://learn.microsoft.com/graph/api/user-list). ValueError when it is not one."""
    value = int(content.decode("utf-8-sig").strip())
    if value < 0:
        raise ValueError(f"a negative count: {value}")
    return value


async def read_count(graph: GraphClient, path: str, route: str, what: str) -> int | None:
    """A ``/$count`` read with ``ConsistencyLevel: eventual`` (counting directory objects "is only supported using
    the advanced queries parameters", https://learn.microsoft.com/graph/aad-advanced-queries); None when it cannot be
    read (B2C tenants have no $count)."""
    try:
        return parse_count((await graph.send("GET", path, route=route, headers=EVENTUAL)).content)
    except (GraphError, ValueError, UnicodeDecodeError) as exc:
        log.info("%s is not readable (%s)", what, exc)
        return None


async def tenant_user_count(graph: GraphClient) -> int | None:
    """The tenant's user count, ``GET /users/$count`` (user-list, example 3); None when it cannot be read."""
    return await read_count(graph, "/users/$count", "/users/$count", "the tenant's user count")


class UsersScan:
    """One users scan: the count, the chains (read beside whatever else the caller reads), then the fallbacks.

    ``await count()``, then ``requests()`` into a :meth:`GraphClient.read_collections` whose ``on_items`` hands the
    pages of :func:`is_users_key` keys to :meth:`items`, then ``await finish(results)``: it reads again, alone, when
    signInActivity was refused (without it) or the split read is not proved complete (as one chain)."""

    def __init__(
        self,
        graph: GraphClient,
        on_items: Callable[[list[dict[str, Any]]], None],
        *,
        on_restart: Callable[[], None] | None = None,
        split_from: int = SPLIT_FROM,
        prefixes: Sequence[str] = UPN_PREFIXES,
    ) -> None:
        self.graph = graph
        self.on_items = on_items
        self.on_restart = on_restart
        self.split_from = split_from
        self.prefixes = tuple(prefixes)
        self.ids: set[str] = set()
        self.counted: int | None = None
        self.split = False
        self.sign_ins = True
        self.note: str | None = None
        self.fallbacks: list[str] = []

    async def count(self) -> int | None:
        """``GET /users/$count`` (:func:`tenant_user_count`); None when Graph does not answer one. Decides the split."""
        self.counted = await tenant_user_count(self.graph)
        self.split = self.counted is not None and self.counted >= self.split_from
        return self.counted

    def requests(self) -> list[CollectionRequest]:
        """The chains of the next attempt (one per prefix, or the single scan)."""
        self.ids = set()
        prefixes: Sequence[str | None] = self.prefixes if self.split else (None,)
        return [_request(p, self.sign_ins) for p in prefixes]

    def items(self, items: list[dict[str, Any]]) -> None:
        for item in items:
            ident = item.get("id")
            if isinstance(ident, str) and member_kind(item) in (None, "user"):  # as Members.add_users keeps them
                self.ids.add(ident.lower())
        self.on_items(items)

    async def finish(self, results: Mapping[str, list[dict[str, Any]] | GraphError]) -> ScanResult:
        """Judge the attempt whose outcomes are in ``results``; read again until one is complete or nothing is left."""
        while True:
            errors = [r for k, r in results.items() if is_users_key(k) and isinstance(r, GraphError)]
            # A permission refusal first: it is the one that says signInActivity is not readable.
            error = next((e for e in errors if isinstance(e, GraphPermissionError)), errors[0] if errors else None)
            if not self._again(error):
                chains = len(self.prefixes) if self.split else 1
                return ScanResult(
                    error, self.sign_ins and error is None, self.note, chains, self.counted, len(self.ids),
                    tuple(self.fallbacks),
                )  # fmt: skip
            if self.on_restart is not None:
                self.on_restart()
            results = await self.graph.read_collections(self.requests(), on_items=lambda _k, page: self.items(page))

    def _again(self, error: GraphError | None) -> bool:
        """Whether (and how) to read again after an attempt that ended with ``error`` (None: every chain ended)."""
        if error is None and self.split and len(self.ids) != self.counted:
            self._unsplit(f"the {len(self.prefixes)} UPN chains read {len(self.ids):,} users, /users/$count says "
                          f"{self.counted:,}")  # fmt: skip
            return True
        if error is None:
            return False
        if self.sign_ins and (isinstance(error, GraphPermissionError) or (not self.split and sign_ins_refused(error))):
            # signInActivity refused (403 for AuditLog.Read.All, or a tenant without P1/P2): the license scan goes on
            # without it, in the same shape.
            self.note = f"sign-in activity not readable: {error}"
            log.info("%s; reading users without it", self.note)
            self.sign_ins = False
            return True
        if self.split:
            self._unsplit(f"a UPN chain failed ({error})")
            return True
        return False

    def _unsplit(self, why: str) -> None:
        log.warning("%s: reading the users again as one chain", why)
        self.fallbacks.append(why)
        self.split = False
