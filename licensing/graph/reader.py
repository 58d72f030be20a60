"""Read a tenant's licensing from Graph into a :class:`~licensing.model.TenantSnapshot` (tenant, group or SKU scope).

Query strategy (docs/graph-fidelity.md has every page this relies on):

* **Users: one tenant-wide scan** (``/users?$select=…,licenseAssignmentStates,signInActivity&$top=500``, 1 RU a
  page), read as 44 ``startswith(userPrincipalName,'x')`` chains beside the members on a tenant of 5,000 users or
  more, proved complete by ``/users/$count`` or read again as one chain (:mod:`licensing.graph.users_scan`).
  It is the only read that sees a user who *left* a licensed group and still holds its seat in an
  error state: removal fails with ``DependencyViolation`` or on a proxy-address conflict, and the
  user keeps a ``licenseAssignmentStates`` entry whose ``assignedByGroup`` is the group
  (https://learn.microsoft.com/entra/identity/users/licensing-groups-resolve-problems). The
  group-centric member read never sees them. The user-list page documents ``$select`` of these
  properties (https://learn.microsoft.com/graph/api/user-list); whether ``/groups/{id}/members``
  serves ``licenseAssignmentStates`` is not documented, so nothing depends on it any more.
* **Members: group-centric**, ``/groups/{id}/members?$select=id,displayName,userPrincipalName,
  securityEnabled``, first pages packed 20 to a ``$batch``, next pages ahead of first pages. They say
  who is a *member* (users whose assignment failed hold no license; nested groups and devices are
  invisible to the scan). Members come typed by ``@odata.type``; Microsoft's own examples of this
  route omit it, so an untyped member is told apart by the scan (a user id) or by its properties.
* **Limited information.** Without ``User.Read.All`` Graph still lists users, with only ``id`` and
  ``@odata.type`` (or, with ``User.ReadBasic.All``, the basic profile) and every other property null
  (https://learn.microsoft.com/graph/api/group-list-members, "limited information"). Users that come back
  so make the users part unreadable: user rules are "not evaluated", never passed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from licensing import telemetry
from licensing.clock import utcnow
from licensing.errors import (
    BadRequestError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphResponseError,
)
from licensing.graph.client import EVENTUAL, CollectionRequest, GraphClient, query
from licensing.graph.members import Members, prune_users, resolve_members
from licensing.graph.parse import lifecycles, parse_group, parse_sku, parse_subscription, tenant_of_sku, text
from licensing.graph.users_scan import PAGE, SIGN_IN_PAGE, USER_FIELDS, USERS_KEY, UsersScan, is_users_key
from licensing.model import (
    UNKNOWN_TENANT,
    AuditRequest,
    GraphStats,
    LicensedGroup,
    Part,
    Scope,
    Sku,
    Subscription,
    TenantSnapshot,
    Unreadable,
    User,
)
from licensing.settings import is_guid

__all__ = [
    "GROUP_FIELDS",
    "MEMBER_FIELDS",
    "SIGN_IN_PAGE",
    "USER_FIELDS",
    "ProgressFn",
    "merge_snapshot",
    "read_members",
    "read_overview",
    "read_snapshot",
    "read_users",
    "resolve_members",
    "task_group",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

# Members: who is in the group; the users' properties come from the users scan. userPrincipalName and
# securityEnabled tell a user from a group when a page omits @odata.type (see members.member_kind).
MEMBER_FIELDS: Final = "id,displayName,userPrincipalName,securityEnabled"
# securityEnabled, groupTypes, membershipRule and membershipRuleProcessingState are "Returned by default" on the group
# resource (https://learn.microsoft.com/graph/api/resources/group); assignedLicenses and licenseProcessingState
# only on $select. All are $select-able on List groups and Get group.
GROUP_FIELDS: Final = (
    "id,displayName,assignedLicenses,licenseProcessingState,securityEnabled,groupTypes,membershipRule,"
    "membershipRuleProcessingState"
)
# id is "{tenantId}_{skuId}": the tenant when /organization is not readable (see parse.tenant_of_sku).
# servicePlans: "Information about the service plans that are available with the SKU" (subscribedSku), as in
# Microsoft's List subscribedSkus example: the P1 coverage rule and the plan command read which SKUs grant Entra ID P1.
SKU_FIELDS: Final = (
    "id,skuId,skuPartNumber,appliesTo,capabilityStatus,consumedUnits,prepaidUnits,servicePlans,accountId,accountName"
)


def _member_request(group_id: str) -> CollectionRequest:
    """One chain of /groups/{id}/members: one request per page for users, groups and every other type
    (instead of the microsoft.graph.user and microsoft.graph.group casts plus a $count for the rest)."""
    path = f"/groups/{quote(group_id, safe='')}/members?" + query({"$select": MEMBER_FIELDS, "$top": PAGE})
    return CollectionRequest(group_id, path, "/groups/{id}/members")


def _unreadable(what: Part, subject: str | None, exc: GraphError) -> Unreadable:
    permission = exc.permission if isinstance(exc, GraphPermissionError) else None
    reason = exc.message
    if isinstance(exc, GraphNotFoundError) and what == "members":
        reason = f"the group was deleted or is gone (404): {exc.message}"
    return Unreadable(what=what, subject_id=subject, reason=reason, permission=permission)


# ---------------------------------------------------------------- phases


# Groups that assign a license. Microsoft's List groups example uses assignedLicenses/any() (no advanced
# query needed); the $count form is the advanced-query form documented for users
# (https://learn.microsoft.com/graph/aad-advanced-queries). Each is tried in turn on Request_UnsupportedQuery
# (400), the last reads every group and keeps those with licenses: slower, never an aborted audit.
_GROUP_QUERIES: Final[tuple[tuple[Mapping[str, str | int], Mapping[str, str]], ...]] = (
    ({"$filter": "assignedLicenses/any()", "$select": GROUP_FIELDS, "$top": PAGE}, {}),
    (
        {"$filter": "assignedLicenses/$count ne 0", "$count": "true", "$select": GROUP_FIELDS, "$top": PAGE},
        EVENTUAL,
    ),
    ({"$select": GROUP_FIELDS, "$top": PAGE}, {}),
)


class _Reader:
    def __init__(self, graph: GraphClient, progress: ProgressFn | None) -> None:
        self.graph = graph
        self.progress = progress
        self.unreadable: list[Unreadable] = []
        self.org_tenant: str | None = None
        self.sku_tenant: str | None = None
        self.tenant_name = ""
        self.subscriptions: tuple[Subscription, ...] = ()
        self.subscriptions_read = False
        self.sign_ins_read = False
        self.sign_ins_note: str | None = None

    @property
    def tenant_id(self) -> str:
        """The configured tenant, else /organization's id, else the tenant part of a subscribedSku id."""
        configured = self.graph.settings.azure_tenant_id
        return configured or self.org_tenant or self.sku_tenant or UNKNOWN_TENANT

    def _progress(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

    async def organization(self) -> None:
        """Tenant id and name (Organization.Read.All, granted by default: docs/deploy.md). Optional."""
        try:
            page = await self.graph.get_json(
                "/organization?" + query({"$select": "id,displayName"}), route="/organization"
            )
        except GraphError as exc:
            log.info("tenant name not readable: %s", exc)
            return
        orgs = page.get("value") if isinstance(page, dict) else None
        if isinstance(orgs, list) and orgs and isinstance(orgs[0], dict):
            self.org_tenant = text(orgs[0].get("id"))
            self.tenant_name = text(orgs[0].get("displayName")) or self.tenant_name

    async def skus(self) -> list[Sku] | None:
        with telemetry.span("graph.read_skus"):
            self._progress("skus", 0, 1)
            try:
                items = await self.graph.get_collection(
                    "/subscribedSkus?" + query({"$select": SKU_FIELDS}), route="/subscribedSkus", what="subscribedSkus"
                )
            except GraphError as exc:
                self.unreadable.append(_unreadable(Part.SKUS, None, exc))
                return None
            self.sku_tenant = next((t for t in map(tenant_of_sku, items) if t), None)
            skus = [parse_sku(item) for item in items if text(item.get("skuId"))]
            try:
                subs = await self.graph.get_collection(
                    "/directory/subscriptions", route="/directory/subscriptions", what="directory subscriptions"
                )
                self.subscriptions_read = True
            except GraphPermissionError as exc:
                # Lifecycle dates are a bonus: without Organization.Read.All the seat rules still work (and
                # subscription_renewal says it was not evaluated).
                log.info("subscription lifecycle dates not readable: %s", exc)
                subs = []
            except GraphError as exc:
                self.unreadable.append(_unreadable(Part.SUBSCRIPTIONS, None, exc))
                subs = []
            self.subscriptions = tuple(s for s in map(parse_subscription, subs) if s is not None)
            dates = lifecycles(subs)
            self._progress("skus", 1, 1)
            return [replace(s, next_lifecycle=dates[s.sku_id]) if s.sku_id in dates else s for s in skus]

    def consistent(self, skus: list[Sku] | None, groups: Sequence[LicensedGroup]) -> list[Sku] | None:
        """The SKU list, or None (and an unreadable part) when it contradicts the groups just read.

        A single empty or truncated subscribedSkus answer (a broken proxy, a hostile redirect target)
        would otherwise read as "no shortage anywhere" and resolve every open SKU alert. A tenant whose
        groups assign licenses has those SKUs subscribed (https://learn.microsoft.com/graph/api/subscribedsku-list
        lists every commercial subscription the organization has acquired), so either contradiction makes
        the SKUs unreadable: the run is partial and nothing SKU-related resolves.
        """
        if skus is None:
            return None
        assigning = [g for g in groups if g.sku_ids]
        if not assigning:
            return skus
        known = {s.sku_id for s in skus}
        if not skus:
            reason = (
                f"Graph returned no subscribed SKUs while licensed groups ({len(assigning)}) assign licenses; "
                "the answer is inconsistent and not trusted"
            )
        else:
            missing = sorted({sku for g in assigning for sku in g.sku_ids} - known)
            if not missing:
                return skus
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            reason = (
                f"licensed groups assign SKU {shown}, which subscribedSkus did not return; "
                "the SKU list is incomplete and not trusted"
            )
        log.warning("subscribed SKUs not trusted: %s", reason)
        self.unreadable.append(Unreadable(Part.SKUS, None, reason))
        return None

    async def licensed_groups(self) -> list[LicensedGroup]:
        """Every group that assigns a license. Raises GraphError: without groups there is nothing to audit."""
        with telemetry.span("graph.read_groups"):
            for params, headers in _GROUP_QUERIES:
                try:
                    items = await self.graph.get_collection(
                        "/groups?" + query(params), route="/groups", headers=headers, what="the licensed groups"
                    )
                    break
                except GraphResponseError as exc:
                    if exc.code != "Request_UnsupportedQuery" or params is _GROUP_QUERIES[-1][0]:
                        raise
                    log.warning(
                        "Graph does not support the groups query %r; trying the next form", params.get("$filter")
                    )
            groups = [parse_group(i) for i in items if text(i.get("id"))]
            self._progress("groups", len(groups), len(groups))
            return [g for g in groups if g.sku_ids]

    async def one_group(self, group_id: str) -> list[LicensedGroup]:
        with telemetry.span("graph.read_groups"):
            path = f"/groups/{quote(group_id, safe='')}?" + query({"$select": GROUP_FIELDS})
            try:
                item = await self.graph.get_json(path, route="/groups/{id}", what=f"group {group_id}")
            except GraphNotFoundError:
                # Like an unknown SKU: the request names something the tenant does not have (not retryable).
                raise BadRequestError(f"the tenant has no group {group_id} (Graph answered 404)") from None
            group = parse_group(item)
            self._progress("groups", 1, 1)
            return [group] if group.sku_ids else []  # a group that assigns nothing is not a licensed group

    async def read(
        self, groups: Sequence[LicensedGroup], users: dict[str, User], *, scan: bool, prune: bool = True
    ) -> list[LicensedGroup]:
        """The members of ``groups`` and (``scan``) the users scan, side by side; untyped members resolved.
        ``prune=False`` keeps every scanned user (the plan command counts who benefits from group licensing)."""
        with telemetry.span("graph.read_members", {"graph.groups": len(groups)}):
            acc = Members(users)
            done = 0
            total = len(groups)
            if groups:
                self._progress("members", 0, total)
            if scan:
                self._progress("users", 0, 1)

            def on_done(key: str) -> None:
                nonlocal done
                if not is_users_key(key):
                    done += 1
                    self._progress("members", done, total)

            users_read = 0

            def add_users(items: list[dict[str, Any]]) -> None:
                nonlocal users_read
                acc.add_users(items)
                # The scan's total is unknown until its last page: show how many are read (issue 30, item 7).
                users_read += len(items)
                self._progress("users", users_read, 0)

            def restart() -> None:  # the scan reads again (users_scan): count afresh, keep nothing of the failed read
                nonlocal users_read
                users_read = 0
                acc.forget_scanned()

            def on_items(key: str, items: list[dict[str, Any]]) -> None:
                if is_users_key(key):
                    users_scan.items(items)
                else:
                    acc.add(key, items)

            # The users scan: split into UPN-prefix chains on a big tenant, read beside the members (users_scan).
            users_scan = UsersScan(self.graph, add_users, on_restart=restart)
            requests = [_member_request(g.id) for g in groups]
            if scan:
                await users_scan.count()
                requests += users_scan.requests()
            results = await self.graph.read_collections(requests, on_done=on_done, on_items=on_items)
            scanned = False
            if scan:
                scan_result = await users_scan.finish(results)
                self._progress("users", users_read, users_read)
                self.sign_ins_read, self.sign_ins_note = scan_result.sign_ins_read, scan_result.sign_ins_note
                if scan_result.error is not None:
                    self.unreadable.append(_unreadable(Part.USERS, None, scan_result.error))
                elif acc.limited:
                    self.unreadable.append(_limited(acc.limited))
                else:
                    scanned = True
            out: list[LicensedGroup] = []
            for group in groups:
                outcome = results[group.id]
                if isinstance(outcome, GraphError):
                    self.unreadable.append(_unreadable(Part.MEMBERS, group.id, outcome))
                    out.append(replace(group, members_read=False))
                else:
                    out.append(acc.group(group))
            if not scan:
                return out  # a fan-out chunk: resolved when the parts are merged
            resolved, missing = resolve_members(out, users, scanned=scanned)
            self.unreadable.extend(missing)
            if groups and prune:  # a users scan of its own (a fan-out chunk) keeps everyone until the merge
                prune_users(users, resolved)
            return resolved


@asynccontextmanager
async def task_group() -> AsyncIterator[asyncio.TaskGroup]:
    """An asyncio.TaskGroup that raises the first failure itself, not wrapped in an ExceptionGroup: callers catch
    GraphError and BadRequestError, and the siblings of a failed read are cancelled either way."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise _first_error(failed) from None


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]


def _limited(count: int) -> Unreadable:
    return Unreadable(
        what=Part.USERS,
        subject_id=None,
        reason=(
            f"Graph returned {count} users with limited information (accountEnabled and licenseAssignmentStates "
            "withheld): the app cannot read users' licensing properties"
        ),
        permission="User.Read.All",
    )


def _match_sku(skus: list[Sku] | None, wanted: str) -> Sku | None:
    w = wanted.lower()
    for sku in skus or ():
        if sku.sku_id.lower() == w or sku.sku_part_number.lower() == w:
            return sku
    return None


async def read_snapshot(
    graph: GraphClient, request: AuditRequest, progress: ProgressFn | None = None
) -> TenantSnapshot:
    """Everything the audit needs for ``request``'s scope; unreadable parts are listed, never silently lost.

    The one way a tenant is read, whatever the front door (the CLI, a queue request, a fan-out): the
    overview (organization, SKUs, the groups in scope), then the members of those groups beside the
    users scan, merged by :func:`merge_snapshot`. Raises GraphError only when nothing useful can be read
    (the list of licensed groups, or a credential problem); BadRequestError for a group or SKU the tenant
    does not have.
    """
    with telemetry.span("graph.read", {"audit.scope": request.scope.value}):
        overview = await read_overview(graph, progress, request=request)
        async with task_group() as reads:
            members = reads.create_task(read_members(graph, overview.groups, progress=progress))
            users = reads.create_task(read_users(graph, progress=progress))
    # One client read every part: its figures are the snapshot's (the parts' would count twice).
    return replace(merge_snapshot(overview, [members.result(), users.result()]), stats=graph.stats)


# ---------------------------------------------------------------- staged reads (the queue pipeline, fan-out)


async def read_overview(
    graph: GraphClient, progress: ProgressFn | None = None, *, request: AuditRequest | None = None
) -> TenantSnapshot:
    """Organization, SKUs and the licensed groups in ``request``'s scope (tenant by default) *without their
    members* (``user_ids`` empty): what decides whether a tenant audit fans out, and what its chunks share.

    Raises GraphError when the groups are unreadable; BadRequestError for a group or SKU the tenant lacks.
    """
    request = request or AuditRequest(scope=Scope.TENANT)
    reader = _Reader(graph, progress)
    scope_id: str | None = None
    with telemetry.span("graph.read_overview"):
        async with task_group() as tasks:
            tasks.create_task(reader.organization())
            skus_task = tasks.create_task(reader.skus())
            if request.scope is Scope.GROUP:
                if not request.group_id:
                    raise BadRequestError("a group-scoped audit needs group_id")
                scope_id = request.group_id.lower()
                groups = await reader.one_group(request.group_id)
            else:
                groups = await reader.licensed_groups()
    skus = reader.consistent(skus_task.result(), groups)
    if request.scope is Scope.SKU:
        if not request.sku:
            raise BadRequestError("a SKU-scoped audit needs sku")
        sku = _match_sku(skus, request.sku)
        if sku is not None:
            scope_id = sku.sku_id
            skus = [sku]
        elif skus is not None and not is_guid(request.sku):
            raise BadRequestError(f"the tenant has no subscribed SKU {request.sku!r}")
        else:  # SKUs unreadable (or a GUID not subscribed): still show the groups that assign it
            scope_id = request.sku.lower()
            skus = [] if skus is not None else None
        groups = [g for g in groups if scope_id in g.sku_ids]
    if request.scope is Scope.GROUP and skus is not None:
        assigned = {s for g in groups for s in g.sku_ids}
        skus = [s for s in skus if s.sku_id in assigned]
    return TenantSnapshot(
        tenant_id=reader.tenant_id,
        tenant_name=reader.tenant_name,
        scope=request.scope,
        scope_id=scope_id,
        read_at=utcnow(),
        skus=tuple(skus or ()),
        groups=tuple(groups),
        unreadable=tuple(reader.unreadable),
        stats=graph.stats,
        subscriptions=reader.subscriptions,
        subscriptions_read=reader.subscriptions_read,
    )


async def read_members(
    graph: GraphClient, groups: Sequence[LicensedGroup], progress: ProgressFn | None = None
) -> TenantSnapshot:
    """The direct members of ``groups`` (the same group-centric read as :func:`read_snapshot`): a partial
    snapshot holding only those groups, the users their pages named and what could not be read; no SKUs.
    Untyped members stay in ``unknown_members`` until :func:`merge_snapshot` resolves them."""
    reader = _Reader(graph, progress)
    users: dict[str, User] = {}
    read = await reader.read(list(groups), users, scan=False)
    return _part(graph, read, users, reader.unreadable)


async def read_users(graph: GraphClient, progress: ProgressFn | None = None) -> TenantSnapshot:
    """The users scan alone (a fan-out chunk of its own): every user, and whether the users were readable."""
    reader = _Reader(graph, progress)
    users: dict[str, User] = {}
    await reader.read([], users, scan=True)
    part = _part(graph, [], users, reader.unreadable, users_read=not reader.unreadable)
    return replace(part, sign_ins_read=reader.sign_ins_read, sign_ins_note=reader.sign_ins_note)


def _part(
    graph: GraphClient,
    groups: Sequence[LicensedGroup],
    users: Mapping[str, User],
    unreadable: Sequence[Unreadable],
    *,
    users_read: bool = False,
) -> TenantSnapshot:
    return TenantSnapshot(
        tenant_id=graph.settings.azure_tenant_id or UNKNOWN_TENANT,
        scope=Scope.TENANT,
        scope_id=USERS_KEY if users_read else None,  # marks the part that holds a complete users scan
        read_at=utcnow(),
        groups=tuple(groups),
        users=MappingProxyType(dict(users)),
        unreadable=tuple(unreadable),
        stats=graph.stats,
    )


def merge_snapshot(overview: TenantSnapshot, parts: Sequence[TenantSnapshot]) -> TenantSnapshot:
    """One tenant snapshot from an overview and the reads of its groups and users (in any split).

    Groups keep the overview's order; a user appears once, the users scan's record winning over what a
    member page said; every unreadable part is kept and the Graph figures add up. A group no part read
    stays member-less and is listed as unreadable; untyped members are resolved against the users.
    """
    read: dict[str, LicensedGroup] = {}
    users: dict[str, User] = {}
    unreadable = list(overview.unreadable)
    requests = throttled = retried = 0
    units = 0.0
    for stats in (overview.stats, *(p.stats for p in parts)):
        requests += stats.requests
        throttled += stats.throttled
        retried += stats.retried
        units += stats.resource_units
    scanned = any(p.scope_id == USERS_KEY for p in parts)
    scan_part = next((p for p in parts if p.scope_id == USERS_KEY), None)
    sign_ins = (scan_part.sign_ins_read, scan_part.sign_ins_note) if scan_part else (False, "users not read")
    for part in parts:
        for group in part.groups:
            read[group.id] = group
        if part.scope_id == USERS_KEY:
            users.update(part.users)
        else:
            for user_id, user in part.users.items():
                users.setdefault(user_id, user)
        unreadable.extend(part.unreadable)
    groups: list[LicensedGroup] = []
    for group in overview.groups:
        found = read.get(group.id)
        if found is None:
            unreadable.append(Unreadable(Part.MEMBERS, group.id, "the members of this group were not read"))
            found = replace(group, members_read=False)
        groups.append(found)
    groups, missing = resolve_members(groups, users, scanned=scanned)
    unreadable.extend(missing)
    prune_users(users, groups)
    return replace(
        overview,
        groups=tuple(groups),
        users=MappingProxyType(users),
        unreadable=tuple(unreadable),
        stats=GraphStats(requests=requests, throttled=throttled, retried=retried, resource_units=units),
        sign_ins_read=sign_ins[0],
        sign_ins_note=sign_ins[1],
    )
