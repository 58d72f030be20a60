"""The sandbox's userPrincipalName filters (startsWith, endsWith) as Graph documents them, indexed by first character.

https://learn.microsoft.com/graph/aad-advanced-queries, the $filter table, userPrincipalName: ``eq`` and
``startsWith`` work by default; ``endsWith`` "is supported only with advanced query parameters by mail, otherMails,
userPrincipalName, and proxyAddresses" and without them Graph answers 400 ``Request_UnsupportedQuery`` with the
message below (the page's own example, ``endsWith(userPrincipalName,'%23EXT%23@contoso.com')``).
Comparisons ignore case: an assumption (the pages are silent), the way directory names are matched.
"""

from __future__ import annotations

import weakref
from array import array
from collections.abc import Callable
from typing import Final

from licensing.sandbox.tenant import SandboxTenant
from licensing.sandbox.wire import Query, unsupported

__all__ = ["ENDSWITH_REFUSED", "upn_ends", "upn_starts"]

ENDSWITH_REFUSED: Final = (
    "Operator 'endsWith' is not supported because the required parameters might be missing. Try adding $count=true "
    "query parameter and ConsistencyLevel:eventual header. Refer to https://aka.ms/graph-docs/advanced-queries for "
    "more information"
)

# tenant -> first character of the lower-cased UPN -> users: a prefix filter reads one bucket, not every user
# (a split users scan asks 44 prefixes of a 100,000-user tenant).
_BUCKETS: weakref.WeakKeyDictionary[SandboxTenant, dict[str, array[int]]] = weakref.WeakKeyDictionary()


def _buckets(tenant: SandboxTenant) -> dict[str, array[int]]:
    found = _BUCKETS.get(tenant)
    if found is None:
        found = {}
        for u in range(tenant.user_count):
            upn = tenant.user_names(u)[3].lower()
            found.setdefault(upn[:1], array("i")).append(u)
        _BUCKETS[tenant] = found
    return found


def upn_starts(tenant: SandboxTenant, prefix: str) -> Callable[[int], bool]:
    """``startswith(userPrincipalName,'prefix')`` (default: no advanced query parameters needed)."""
    p = prefix.lower()
    if not p:
        return lambda u: True
    bucket = _buckets(tenant).get(p[:1], array("i"))
    chosen = frozenset(u for u in bucket if len(p) == 1 or tenant.user_names(u)[3].lower().startswith(p))
    return chosen.__contains__


def upn_ends(tenant: SandboxTenant, suffix: str, query: Query) -> Callable[[int], bool]:
    """``endswith(userPrincipalName,'suffix')``: advanced query parameters required, refused with Graph's message."""
    if not (query.eventual and query.count):
        raise unsupported(ENDSWITH_REFUSED)
    s = suffix.lower()
    return lambda u: tenant.user_names(u)[3].lower().endswith(s)
