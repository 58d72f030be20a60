"""Read what a group-scoped question needs: the group's members, the users in its error list, and only those users.

A group audit (``--scope group``, the queue's group requests) and ``plan`` used to run the tenant-wide users scan
(about 200 pages on a 100k tenant) to learn the states of a few dozen users. The scan existed for one reason
(licensing.graph.reader): a user who *left* a licensed group and still holds its seat in an error state
(``DependencyViolation``, a proxy-address conflict on removal) is not among the members. For one group, that user
is in the group's own error list instead:

* ``GET /groups/{id}/membersWithLicenseErrors``: "A list of group members with license errors from this
  group-based license assignment" (https://learn.microsoft.com/graph/api/resources/group, relationships), the
  Graph form of the portal's list of "all affected users" of a group
  (https://learn.microsoft.com/entra/identity/users/licensing-ps-examples, "Get all users with license errors in a
  group"). **Assumption** (the pages are silent on it): the list holds every user whose
  ``licenseAssignmentStates`` carry an error from the group, including one who left the group while its removal
  failed: the error is recorded "on the user object" against the group's assignment
  (https://learn.microsoft.com/entra/identity/users/licensing-groups-resolve-problems). The nightly tenant audit,
  which scans every user, stays the backstop (docs/graph-fidelity.md).
* The users themselves: ``GET /users?$filter=id in ('…', …)&$select=…,licenseAssignmentStates,signInActivity``.
  ``id`` "Supports $filter (eq, ne, not, in)" (https://learn.microsoft.com/graph/api/resources/user); "when using
  the in operator, the request is limited to 15 expressions in the filter clause by default"
  (https://learn.microsoft.com/graph/known-issues, query parameters): 15 ids a request, first pages packed 20 to a
  ``$batch`` by the client, so 50 members are 4 requests in one round trip. The user-list page documents
  ``$select`` of every property read here, signInActivity included (https://learn.microsoft.com/graph/api/user-list);
  ``/groups/{id}/members`` is never asked for ``licenseAssignmentStates`` (not documented there).

When the targeted read would cost more requests than the scan (a group holding a large share of the tenant), the
scan is read instead: see :func:`targeted_costs_less`. Both give the same snapshot (prune_users keeps the members and
the users holding a state from the group either way): the group's findings do not depend on the path taken.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Final
from urllib.parse import quote

from licensing import telemetry
from licensing.errors import GraphError, GraphPermissionError
from licensing.graph.client import CollectionRequest, GraphClient, query
from licensing.graph.members import Members, member_kind
from licensing.graph.parse import text
from licensing.graph.reader import (
    SIGN_IN_PAGE,
    USERS_KEY,
    ProgressFn,
    _limited,
    _part,
    _unreadable,
    merge_snapshot,
    read_members,
    read_overview,
    read_users,
    task_group,
)
from licensing.graph.reader import read_snapshot as read_whole
from licensing.graph.users_scan import (
    parse_count,
    read_count,
    sign_ins_refused,
    tenant_user_count,
    user_select,
)
from licensing.model import AuditRequest, LicensedGroup, Part, Scope, TenantSnapshot, Unreadable, User

__all__ = [
    "IDS_PER_REQUEST",
    "TARGETED_WITHOUT_COUNT",
    "error_ids",
    "parse_count",
    "read_group_parts",
    "read_group_snapshot",
    "read_group_users",
    "read_snapshot",
    "read_user_ids",
    "targeted_costs_less",
    "tenant_user_count",
]

log = logging.getLogger(__name__)

IDS_PER_REQUEST: Final = 15  # the documented default limit of an `in` filter (module docstring)
# Up to this many users the targeted read is one $batch round trip of 20 requests (300 users): cheaper than any
# scan of a tenant that has more users than that, so the tenant is not even counted.
TARGETED_WITHOUT_COUNT: Final = IDS_PER_REQUEST * 20


def targeted_costs_less(wanted: int, tenant_users: int) -> bool:
    """Whether reading ``wanted`` users by id costs fewer requests than scanning ``tenant_users`` users.

    Both are /users list requests, priced alike by Graph's resource units (the same route): the targeted read is
    ``ceil(wanted / 15)`` requests, the scan ``ceil(tenant_users / 500)`` pages (500 a page with signInActivity,
    https://learn.microsoft.com/graph/api/user-list). The targeted requests run side by side and the scan is one
    sequential chain, so at equal counts the targeted read is also the faster: ties go to it.
    """
    return math.ceil(wanted / IDS_PER_REQUEST) <= max(1, math.ceil(tenant_users / SIGN_IN_PAGE))


def _ids_request(key: str, ids: Sequence[str], sign_ins: bool) -> CollectionRequest:
    clause = "id in (" + ",".join(f"'{i}'" for i in ids) + ")"
    fields, route = user_select(sign_ins)
    return CollectionRequest(key, "/users?" + query({"$filter": clause, "$select": fields}), route)


async def read_user_ids(
    graph: GraphClient, ids: Iterable[str], users: dict[str, User]
) -> tuple[bool, str | None, list[Unreadable]]:
    """The users ``ids`` (lower-case GUIDs) by ``$filter=id in (…)``, into ``users``; ids that are not users are
    simply not returned. Returns (signInActivity read, why not, what could not be read)."""
    wanted = sorted(dict.fromkeys(i for i in ids if i))
    chunks = [wanted[k : k + IDS_PER_REQUEST] for k in range(0, len(wanted), IDS_PER_REQUEST)]
    acc = Members(users)
    note: str | None = None

    def on_items(_key: str, items: list[dict[str, Any]]) -> None:
        acc.add_users(items)

    async def read(sign_ins: bool) -> dict[str, Any]:
        requests = [_ids_request(f"{USERS_KEY}{k}", chunk, sign_ins) for k, chunk in enumerate(chunks)]
        return await graph.read_collections(requests, on_items=on_items)

    if not chunks:  # nobody to read: sign-in activity is not known to be readable (inactive_user_licensed not passed)
        return False, "sign-in activity not read: the group has no user to read", []
    results = await read(sign_ins=True)
    sign_ins = True
    # As in the scan: signInActivity refused. A 400 counts too: no Microsoft example selects signInActivity under an
    # `id in` filter, and if Graph refused the pair the users are still read, without it (docs/graph-fidelity.md,
    # "Where Microsoft's documentation is silent").
    refused = next((o for o in results.values() if sign_ins_refused(o)), None)
    if refused is not None:
        note = f"sign-in activity not readable: {refused}"
        log.info("%s; reading the group's users without it", note)
        sign_ins = False
        acc.forget_scanned()
        results = await read(sign_ins=False)
    failed = next((o for o in results.values() if isinstance(o, GraphError)), None)
    if failed is not None:
        return sign_ins, note, [_unreadable(Part.USERS, None, failed)]
    if acc.limited:
        return sign_ins, note, [_limited(acc.limited)]
    return sign_ins, note, []


async def _error_list(graph: GraphClient, group_id: str) -> list[str] | GraphError:
    """The ids of the users in the group's error list (members or not: the module docstring's assumption)."""
    path = f"/groups/{quote(group_id, safe='')}/membersWithLicenseErrors?" + query({"$select": "id", "$top": 999})
    try:
        items = await graph.get_collection(
            path, route="/groups/{id}/membersWithLicenseErrors", what=f"the users in error of group {group_id}"
        )
    except GraphError as exc:
        return exc
    return error_ids(items)


def error_ids(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """The user ids of an error-list page. Microsoft's only example of this route (licensing-ps-examples, "Get all
    users with license errors in a group") types its entries the Azure AD Graph way (``"odata.type":
    "Microsoft.DirectoryServices.User"``, ``"objectType": "User"``), not by ``@odata.type``: an entry is a user unless
    it says it is something else. The relationship is a collection of users (group resource)."""
    out: list[str] = []
    for item in items:
        ident = text(item.get("id"))
        if ident and member_kind(item) in (None, "user"):
            out.append(ident.lower())
    return out


async def _member_count(graph: GraphClient, group_id: str) -> int | None:
    """How many direct members the group has: ``/groups/{id}/members/$count`` with ConsistencyLevel eventual,
    Microsoft's own example in https://learn.microsoft.com/graph/api/group-list-members. None: not readable."""
    path = f"/groups/{quote(group_id, safe='')}/members/$count"
    return await read_count(graph, path, "/groups/{id}/members", f"the member count of group {group_id}")


async def read_group_users(
    graph: GraphClient,
    group: LicensedGroup,
    extra: Iterable[str] = (),
    progress: ProgressFn | None = None,
    *,
    tenant_users: int | None = None,
) -> TenantSnapshot | None:
    """The users part of one group's read (its members, untyped ones included, and ``extra``) as a users-scan part
    (``scope_id`` USERS_KEY); None when the targeted read would cost more than the scan (then read the scan).
    ``tenant_users``: the tenant's user count when the caller has read it already (not read twice)."""
    wanted = list(dict.fromkeys((*group.user_ids, *group.unknown_members, *extra)))
    if len(wanted) > TARGETED_WITHOUT_COUNT:
        total = tenant_users if tenant_users is not None else await tenant_user_count(graph)
        if total is None or not targeted_costs_less(len(wanted), total):
            log.info("group %s: %d users to read, the scan is cheaper", group.id, len(wanted))
            return None
    users: dict[str, User] = {}
    if progress is not None:
        progress("users", 0, len(wanted))
    sign_ins, note, unreadable = await read_user_ids(graph, wanted, users)
    if progress is not None:
        progress("users", len(users), len(wanted))
    part = _part(graph, [], users, unreadable, users_read=not unreadable)
    return replace(part, sign_ins_read=sign_ins and not unreadable, sign_ins_note=note)


async def read_group_parts(
    graph: GraphClient,
    group: LicensedGroup,
    extra: Iterable[str] = (),
    progress: ProgressFn | None = None,
    *,
    tenant_users: int | None = None,
) -> tuple[list[TenantSnapshot], bool]:
    """The group's members, then only the users they and ``extra`` name (:func:`read_group_users`). Returns those
    parts and whether the users scan is still needed (reading the users by id would cost more than it)."""
    members = await read_members(graph, [group], progress=progress)
    [read] = members.groups or [replace(group, members_read=False)]
    if not read.members_read:
        return [members], False
    users = await read_group_users(graph, read, extra, progress, tenant_users=tenant_users)
    return ([members], True) if users is None else ([members, users], False)


async def read_group_snapshot(
    graph: GraphClient, overview: TenantSnapshot, progress: ProgressFn | None = None
) -> TenantSnapshot:
    """A group-scoped snapshot from its overview: the group's members and error list side by side, then only the
    users they name (or the scan, when that is cheaper). The same snapshot as the scan would give."""
    groups = list(overview.groups)
    with telemetry.span("graph.read_group", {"graph.groups": len(groups)}):
        if not groups:  # a group that assigns no licence: nothing of group-based licensing to read
            return replace(merge_snapshot(overview, [_part(graph, [], {}, [], users_read=True)]), stats=graph.stats)
        [group] = groups
        async with task_group() as reads:
            size_task = reads.create_task(_member_count(graph, group.id))
            errors_task = reads.create_task(_error_list(graph, group.id))
        size, errors = size_task.result(), errors_task.result()
        parts: list[TenantSnapshot] = []
        if isinstance(errors, GraphError):
            # Who holds the group's seats in error without being a member is unknown: the user rules of the group
            # must not pass (nor resolve) on what was not read.
            reason = f"the users in error of group {group.id} could not be read: {errors.message}"
            permission = errors.permission if isinstance(errors, GraphPermissionError) else None
            parts.append(_part(graph, [], {}, [Unreadable(Part.USERS, None, reason, permission)]))
            errors = []
        scan = False
        total: int | None = None
        if size is not None and size + len(errors) > TARGETED_WITHOUT_COUNT:
            # A big group: decided before its members are read, so that the scan (when cheaper) runs beside the
            # member chain as in the tenant read, not after it.
            total = await tenant_user_count(graph)
            scan = total is None or not targeted_costs_less(size + len(errors), total)
        if scan:
            async with task_group() as reads:
                members_task = reads.create_task(read_members(graph, groups, progress=progress))
                scan_task = reads.create_task(read_users(graph, progress=progress))
            parts += [members_task.result(), scan_task.result()]
        else:
            group_parts, scan = await read_group_parts(graph, group, errors, progress, tenant_users=total)
            parts += group_parts
            if scan:
                parts.append(await read_users(graph, progress=progress))
    return replace(merge_snapshot(overview, parts), stats=graph.stats)


async def read_snapshot(
    graph: GraphClient, request: AuditRequest, progress: ProgressFn | None = None
) -> TenantSnapshot:
    """What ``request``'s scope needs (licensing.graph.read_snapshot): a group's question by the group's read above,
    the tenant and a SKU by the reader's (:func:`licensing.graph.reader.read_snapshot`, the users scan)."""
    if request.scope is not Scope.GROUP:
        return await read_whole(graph, request, progress)
    with telemetry.span("graph.read", {"audit.scope": request.scope.value}):
        overview = await read_overview(graph, progress, request=request)
        return await read_group_snapshot(graph, overview, progress)
