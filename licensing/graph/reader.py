"""Read a tenant's licensing from Graph into a :class:`~licensing.model.TenantSnapshot` (tenant, group or SKU scope).

Query strategy: group-centric. Every licensed group's direct members are read with the user
fields the rules need (``licenseAssignmentStates`` included), first pages packed 20 to a
``$batch``, next pages ahead of first pages. Why, measured against the sandbox
(docs/benchmarks.md: 100k users, 2,002 licensed groups; flat shape at 30 ms per response, and the
realistic shape, big groups, at 100 ms + 0.4 ms per object):

* the user-centric scan (``/users?$select=…,licenseAssignmentStates``) is one sequential chain
  of 101 pages: 3.9 s / 51.7 s alone, more than the whole group-centric read (2.8 s / 38.4 s);
* and it cannot replace it: it does not say who is a *member* of which group (users whose
  group assignment failed hold no license; nested groups and devices are invisible), so it
  could only be added on top, bringing its serial chain with it. Its one advantage, RU
  (101 against 4,011 / 4,237), does not matter within Graph's 8,000 RU per 10 s for large tenants.

The users in error need no query of their own: a group's license errors live in its
members' ``licenseAssignmentStates`` (``assignedByGroup`` + ``error``), which this read has,
and the ``hasMembersWithLicenseErrors`` filter is reported unreliable (DESIGN.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import quote

from licensing import telemetry
from licensing.errors import BadRequestError, GraphError, GraphNotFoundError, GraphPermissionError
from licensing.graph.client import EVENTUAL, CollectionRequest, GraphClient, query
from licensing.model import (
    AuditRequest,
    GraphStats,
    GroupRef,
    LicenseAssignment,
    LicensedGroup,
    Scope,
    Sku,
    TenantSnapshot,
    Unreadable,
    User,
)
from licensing.settings import is_guid

__all__ = [
    "GROUP_FIELDS",
    "USER_FIELDS",
    "ProgressFn",
    "merge_snapshot",
    "read_members",
    "read_overview",
    "read_snapshot",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]

USER_FIELDS: Final = (
    "id,displayName,userPrincipalName,userType,externalUserState,creationType,"
    "accountEnabled,usageLocation,assignedLicenses,licenseAssignmentStates"
)
GROUP_FIELDS: Final = "id,displayName,assignedLicenses,licenseProcessingState"
SKU_FIELDS: Final = "skuId,skuPartNumber,appliesTo,capabilityStatus,consumedUnits,prepaidUnits,accountId,accountName"
PAGE: Final = 999  # the $top maximum for users, groups and members

_USER_TYPE: Final = "#microsoft.graph.user"
_GROUP_TYPE: Final = "#microsoft.graph.group"


def _member_request(group_id: str) -> CollectionRequest:
    """One chain of /groups/{id}/members with the user fields $select-ed: users come with their fields,
    groups and every other object with their @odata.type. One request per page instead of three (the
    microsoft.graph.user and microsoft.graph.group casts plus a $count for the rest): a third of the batches."""
    path = f"/groups/{quote(group_id, safe='')}/members?" + query({"$select": USER_FIELDS, "$top": PAGE})
    return CollectionRequest(group_id, path, "/groups/{id}/members")


# ---------------------------------------------------------------- JSON -> records


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _sku_ids(licenses: Any) -> tuple[str, ...]:
    if not isinstance(licenses, list):
        return ()
    return tuple(s for a in licenses if isinstance(a, dict) and (s := _str(a.get("skuId"))))


def parse_user(item: Mapping[str, Any]) -> User:
    states = item.get("licenseAssignmentStates")
    assignments = tuple(
        LicenseAssignment(
            sku_id=sku,
            assigned_by_group=_str(s.get("assignedByGroup")),
            state=_str(s.get("state")) or "",
            error=_str(s.get("error")) or "None",
        )
        for s in (states if isinstance(states, list) else ())
        if isinstance(s, dict) and (sku := _str(s.get("skuId")))
    )
    enabled = item.get("accountEnabled")
    return User(
        id=str(item["id"]),
        display_name=_str(item.get("displayName")) or "",
        user_principal_name=_str(item.get("userPrincipalName")) or "",
        user_type=_str(item.get("userType")),
        external_user_state=_str(item.get("externalUserState")),
        creation_type=_str(item.get("creationType")),
        account_enabled=enabled if isinstance(enabled, bool) else None,
        usage_location=_str(item.get("usageLocation")),
        assigned_sku_ids=_sku_ids(item.get("assignedLicenses")),
        assignments=assignments,
    )


def parse_sku(item: Mapping[str, Any]) -> Sku:
    units = item.get("prepaidUnits")
    units = units if isinstance(units, dict) else {}
    return Sku(
        sku_id=str(item.get("skuId") or ""),
        sku_part_number=_str(item.get("skuPartNumber")) or "",
        applies_to=_str(item.get("appliesTo")) or "User",
        capability_status=_str(item.get("capabilityStatus")) or "Enabled",
        enabled=_int(units.get("enabled")),
        suspended=_int(units.get("suspended")),
        warning=_int(units.get("warning")),
        locked_out=_int(units.get("lockedOut")),
        consumed=_int(item.get("consumedUnits")),
    )


def parse_group(item: Mapping[str, Any]) -> LicensedGroup:
    state = item.get("licenseProcessingState")
    return LicensedGroup(
        id=str(item["id"]),
        display_name=_str(item.get("displayName")) or "",
        sku_ids=_sku_ids(item.get("assignedLicenses")),
        processing_state=_str(state.get("state")) if isinstance(state, dict) else None,
    )


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _lifecycles(subscriptions: Iterable[Mapping[str, Any]]) -> dict[str, datetime]:
    """Earliest nextLifecycleDateTime per skuId (companySubscription)."""
    out: dict[str, datetime] = {}
    for sub in subscriptions:
        sku = _str(sub.get("skuId"))
        when = _parse_time(sub.get("nextLifecycleDateTime"))
        if sku and when and (sku not in out or when < out[sku]):
            out[sku] = when
    return out


def _unreadable(what: str, subject: str | None, exc: GraphError) -> Unreadable:
    permission = exc.permission if isinstance(exc, GraphPermissionError) else None
    reason = exc.message
    if isinstance(exc, GraphNotFoundError) and what == "members":
        reason = f"the group was deleted or is gone (404): {exc.message}"
    return Unreadable(what=what, subject_id=subject, reason=reason, permission=permission)


# ---------------------------------------------------------------- phases


class _Reader:
    def __init__(self, graph: GraphClient, progress: ProgressFn | None) -> None:
        self.graph = graph
        self.progress = progress
        self.unreadable: list[Unreadable] = []
        self.tenant_id: str | None = None
        self.tenant_name = ""

    def _progress(self, phase: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(phase, done, total)

    async def organization(self) -> None:
        """Tenant id and name; optional (Organization.Read.All), the SKUs' accountId is the fallback."""
        try:
            page = await self.graph.get_json(
                "/organization?" + query({"$select": "id,displayName"}), route="/organization"
            )
        except GraphError as exc:
            log.info("tenant name not readable: %s", exc)
            return
        orgs = page.get("value") if isinstance(page, dict) else None
        if isinstance(orgs, list) and orgs and isinstance(orgs[0], dict):
            self.tenant_id = _str(orgs[0].get("id")) or self.tenant_id
            self.tenant_name = _str(orgs[0].get("displayName")) or self.tenant_name

    async def skus(self) -> list[Sku] | None:
        with telemetry.span("graph.read_skus"):
            self._progress("skus", 0, 1)
            try:
                items = await self.graph.get_collection(
                    "/subscribedSkus?" + query({"$select": SKU_FIELDS}), route="/subscribedSkus", what="subscribedSkus"
                )
            except GraphError as exc:
                self.unreadable.append(_unreadable("skus", None, exc))
                return None
            for item in items[:1]:
                self.tenant_id = self.tenant_id or _str(item.get("accountId"))
            skus = [parse_sku(item) for item in items if _str(item.get("skuId"))]
            try:
                subs = await self.graph.get_collection(
                    "/directory/subscriptions", route="/directory/subscriptions", what="directory subscriptions"
                )
            except GraphPermissionError as exc:
                # Lifecycle dates are a bonus: without the permission the seat rules still work.
                log.info("subscription lifecycle dates not readable: %s", exc)
                subs = []
            except GraphError as exc:
                self.unreadable.append(_unreadable("subscriptions", None, exc))
                subs = []
            dates = _lifecycles(subs)
            self._progress("skus", 1, 1)
            return [replace(s, next_lifecycle=dates[s.sku_id]) if s.sku_id in dates else s for s in skus]

    async def licensed_groups(self) -> list[LicensedGroup]:
        """Every group that assigns a license. Raises GraphError: without groups there is nothing to audit."""
        with telemetry.span("graph.read_groups"):
            params: dict[str, str | int] = {
                "$filter": "assignedLicenses/$count ne 0",
                "$count": "true",
                "$select": GROUP_FIELDS,
                "$top": PAGE,
            }
            # The $count filter is an advanced query: ConsistencyLevel eventual + $count=true are required.
            # https://learn.microsoft.com/graph/aad-advanced-queries
            items = await self.graph.get_collection(
                "/groups?" + query(params), route="/groups", headers=EVENTUAL, what="the licensed groups"
            )
            groups = [parse_group(i) for i in items if _str(i.get("id"))]
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

    async def members(self, groups: list[LicensedGroup], users: dict[str, User]) -> list[LicensedGroup]:
        with telemetry.span("graph.read_members", {"graph.groups": len(groups)}):
            acc = _Members(users)
            done = 0
            total = len(groups)
            self._progress("members", 0, total)

            def on_done(_group_id: str) -> None:
                nonlocal done
                done += 1
                self._progress("members", done, total)

            requests = [_member_request(g.id) for g in groups]
            results = await self.graph.read_collections(requests, on_done=on_done, on_items=acc.add)
            out: list[LicensedGroup] = []
            for group in groups:
                outcome = results[group.id]
                if isinstance(outcome, GraphError):
                    self.unreadable.append(_unreadable("members", group.id, outcome))
                    out.append(replace(group, members_read=False))
                else:
                    out.append(acc.group(group))
            return out


class _Members:
    """Turns member pages into records as they arrive, sharing the many identical small values.

    Thousands of users carry the same SKU ids, group ids and assignment states: one shared
    object each instead of one per user keeps a 100k-user snapshot in tens of MB.
    """

    def __init__(self, users: dict[str, User]) -> None:
        self.users = users
        self.user_ids: dict[str, list[str]] = {}
        self.member_groups: dict[str, dict[str, GroupRef]] = {}
        self.other: dict[str, int] = {}
        self._shared: dict[Any, Any] = {}

    def _user(self, item: Mapping[str, Any]) -> User:
        """parse_user, with the assignment tuples shared between users who have the same ones."""
        shared = self._shared
        states = item.get("licenseAssignmentStates")
        assignments: tuple[LicenseAssignment, ...] = ()
        key: tuple[Any, ...]
        if isinstance(states, list) and states:
            key = tuple(
                (s.get("skuId"), s.get("assignedByGroup"), s.get("state"), s.get("error"))
                for s in states
                if isinstance(s, dict)
            )
            found = shared.get(key)
            if found is None:
                found = shared[key] = parse_user({"id": "", "licenseAssignmentStates": states}).assignments
            assignments = found
        licenses = item.get("assignedLicenses")
        sku_ids: tuple[str, ...] = ()
        if isinstance(licenses, list) and licenses:
            key = ("skus", *(a.get("skuId") for a in licenses if isinstance(a, dict)))
            found = shared.get(key)
            if found is None:
                found = shared[key] = _sku_ids(licenses)
            sku_ids = found
        enabled = item.get("accountEnabled")
        user_type = item.get("userType")
        location = item.get("usageLocation")
        return User(
            id=str(item["id"]),
            display_name=_str(item.get("displayName")) or "",
            user_principal_name=_str(item.get("userPrincipalName")) or "",
            user_type=shared.setdefault(user_type, user_type) if isinstance(user_type, str) and user_type else None,
            external_user_state=_str(item.get("externalUserState")),
            creation_type=_str(item.get("creationType")),
            account_enabled=enabled if isinstance(enabled, bool) else None,
            usage_location=shared.setdefault(location, location) if isinstance(location, str) and location else None,
            assigned_sku_ids=sku_ids,
            assignments=assignments,
        )

    def add(self, group_id: str, items: list[dict[str, Any]]) -> None:
        user_ids = self.user_ids.setdefault(group_id, [])
        groups = self.member_groups.setdefault(group_id, {})
        for item in items:
            ident = _str(item.get("id"))
            kind = item.get("@odata.type")
            if ident is None:  # an object without an id cannot be a usable user or group
                self.other[group_id] = self.other.get(group_id, 0) + 1
            elif kind == _USER_TYPE:
                if ident not in self.users:
                    self.users[ident] = self._user(item)
                user_ids.append(ident)
            elif kind == _GROUP_TYPE:
                groups[ident] = GroupRef(ident, _str(item.get("displayName")) or "")
            else:  # devices, service principals, contacts, and types this code does not know
                self.other[group_id] = self.other.get(group_id, 0) + 1

    def group(self, group: LicensedGroup) -> LicensedGroup:
        # A member listed twice (page boundaries under concurrent change) counts once.
        return replace(
            group,
            user_ids=tuple(dict.fromkeys(self.user_ids.get(group.id, ()))),
            member_groups=tuple(self.member_groups.get(group.id, {}).values()),
            other_members=self.other.get(group.id, 0),
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

    Raises GraphError only when nothing useful can be read (the list of licensed groups, or a
    credential problem); BadRequestError for a SKU scope naming a SKU the tenant does not have.
    """
    import asyncio

    reader = _Reader(graph, progress)
    scope_id: str | None = None
    users: dict[str, User] = {}
    with telemetry.span("graph.read", {"audit.scope": request.scope.value}):
        org_task = asyncio.create_task(reader.organization())
        skus_task = asyncio.create_task(reader.skus())
        members_task: asyncio.Task[list[LicensedGroup]] | None = None
        try:
            if request.scope is Scope.GROUP:
                if not request.group_id:
                    raise BadRequestError("a group-scoped audit needs group_id")
                scope_id = request.group_id
                groups = await reader.one_group(request.group_id)
            else:
                groups = await reader.licensed_groups()
            if request.scope is not Scope.SKU:
                # The members do not depend on the SKUs: start them now, the SKU chain runs beside them.
                members_task = asyncio.create_task(reader.members(groups, users))
            skus = await skus_task
            await org_task
            if members_task is not None:
                groups = await members_task
        except BaseException:
            pending = [t for t in (org_task, skus_task, members_task) if t is not None]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            raise

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
                scope_id = request.sku
                skus = [] if skus is not None else None
            wanted = scope_id.lower()
            groups = await reader.members([g for g in groups if any(s.lower() == wanted for s in g.sku_ids)], users)
        elif request.scope is Scope.GROUP and skus is not None:
            assigned = {s.lower() for g in groups for s in g.sku_ids}
            skus = [s for s in skus if s.sku_id.lower() in assigned]

    return TenantSnapshot(
        tenant_id=reader.tenant_id or graph.settings.azure_tenant_id or "unknown",
        tenant_name=reader.tenant_name,
        scope=request.scope,
        scope_id=scope_id,
        read_at=datetime.now(UTC),
        skus=tuple(skus or ()),
        groups=tuple(groups),
        users=MappingProxyType(users),
        unreadable=tuple(reader.unreadable),
        stats=graph.stats,
    )


# ---------------------------------------------------------------- staged reads (the queue pipeline, fan-out)


async def read_overview(graph: GraphClient, progress: ProgressFn | None = None) -> TenantSnapshot:
    """Organization, SKUs and the licensed groups *without their members* (``user_ids`` empty): what decides
    whether a tenant audit fans out, and what its chunks share. Raises GraphError when the groups are unreadable."""
    import asyncio

    reader = _Reader(graph, progress)
    with telemetry.span("graph.read_overview"):
        tasks = (
            asyncio.create_task(reader.organization()),
            asyncio.create_task(reader.skus()),
            asyncio.create_task(reader.licensed_groups()),
        )
        try:
            _, skus, groups = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
    return TenantSnapshot(
        tenant_id=reader.tenant_id or graph.settings.azure_tenant_id or "unknown",
        tenant_name=reader.tenant_name,
        scope=Scope.TENANT,
        read_at=datetime.now(UTC),
        skus=tuple(skus or ()),
        groups=tuple(groups),
        unreadable=tuple(reader.unreadable),
        stats=graph.stats,
    )


async def read_members(
    graph: GraphClient, groups: Sequence[LicensedGroup], progress: ProgressFn | None = None
) -> TenantSnapshot:
    """The direct members of ``groups`` (the same group-centric read as :func:`read_snapshot`): a partial
    snapshot holding only those groups, their users and what could not be read; no SKUs."""
    reader = _Reader(graph, progress)
    users: dict[str, User] = {}
    read = await reader.members(list(groups), users)
    return TenantSnapshot(
        tenant_id=graph.settings.azure_tenant_id or "unknown",
        scope=Scope.TENANT,
        read_at=datetime.now(UTC),
        groups=tuple(read),
        users=MappingProxyType(users),
        unreadable=tuple(reader.unreadable),
        stats=graph.stats,
    )


def merge_snapshot(overview: TenantSnapshot, parts: Sequence[TenantSnapshot]) -> TenantSnapshot:
    """One tenant snapshot from an overview and the member reads of its groups (in any split).

    Groups keep the overview's order, each user appears once, every unreadable part is kept and
    the Graph figures add up. A group no part read stays member-less and is listed as unreadable.
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
    for part in parts:
        for group in part.groups:
            read[group.id] = group
        for user_id, user in part.users.items():
            users.setdefault(user_id, user)
        unreadable.extend(part.unreadable)
    groups: list[LicensedGroup] = []
    for group in overview.groups:
        found = read.get(group.id)
        if found is None:
            unreadable.append(Unreadable("members", group.id, "the members of this group were not read"))
            found = replace(group, members_read=False)
        groups.append(found)
    return replace(
        overview,
        groups=tuple(groups),
        users=MappingProxyType(users),
        unreadable=tuple(unreadable),
        stats=GraphStats(requests=requests, throttled=throttled, retried=retried, resource_units=units),
    )
