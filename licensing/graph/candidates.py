"""Read one group, licensed or not, with its members, the tenant's SKUs and the users scan: what ``plan`` assesses.

The same reads as the audit (licensing.graph.reader): ``GET /groups/{id}`` with the group fields, the group-centric
member pages and the tenant-wide users scan side by side, so a member's licenses come from the one source that
documents ``licenseAssignmentStates`` (https://learn.microsoft.com/graph/api/user-list). The scan is kept whole
(not pruned to the group): who benefits from group-based licensing today is counted from it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final
from urllib.parse import quote

from licensing import telemetry
from licensing.errors import BadRequestError, GraphError, GraphNotFoundError
from licensing.graph.client import GraphClient, query
from licensing.graph.group_scope import read_group_parts, tenant_user_count
from licensing.graph.parse import parse_group, text
from licensing.graph.reader import (
    GROUP_FIELDS,
    PAGE,
    ProgressFn,
    _Reader,
    _unreadable,
    merge_snapshot,
    task_group,
)
from licensing.model import GraphStats, LicensedGroup, Part, Sku, TenantSnapshot, Unreadable, User
from licensing.settings import is_guid

__all__ = ["CANDIDATE_LIMIT", "Candidates", "GroupCandidate", "match_sku", "read_candidate", "read_candidates"]

# --candidates reads every member of this many unlicensed security groups at most (by name): a report section,
# not a second audit. The count of the others is reported.
CANDIDATE_LIMIT: Final = 200


@dataclass(frozen=True, slots=True)
class GroupCandidate:
    """A group and what assessing it needs; ``unreadable`` non-empty means no verdict can be given."""

    tenant_id: str
    group: LicensedGroup
    members: Mapping[str, User]  # the group's direct user members, as the users scan returned them
    skus: tuple[Sku, ...]  # the SKUs asked for, resolved
    tenant_skus: tuple[Sku, ...]  # every subscribed SKU (P1 coverage counts all of them)
    # Users holding at least one license state from a group that assigns licenses today (the users scan's
    # licenseAssignmentStates): the direct members of licensed groups, and those who left one and still hold its seat.
    # Empty when the scan was not read because the tenant has no more users than P1 seats (read_candidate).
    group_licensed_users: frozenset[str]
    unreadable: tuple[Unreadable, ...] = ()
    tenant_name: str = ""
    stats: GraphStats = field(default_factory=GraphStats)


def match_sku(skus: Sequence[Sku], wanted: str) -> Sku | None:
    """The subscribed SKU that ``wanted`` names: a skuId or a skuPartNumber, any case."""
    w = wanted.strip().lower()
    for sku in skus:
        if sku.sku_id.lower() == w or sku.sku_part_number.lower() == w:
            return sku
    return None


async def _group(graph: GraphClient, group_id: str) -> LicensedGroup:
    path = f"/groups/{quote(group_id, safe='')}?" + query({"$select": GROUP_FIELDS})
    try:
        item = await graph.get_json(path, route="/groups/{id}", what=f"group {group_id}")
    except GraphNotFoundError:
        # Get group answers 404 for an id the tenant does not have, a deleted group included.
        raise BadRequestError(
            f"the tenant has no group {group_id} (deleted, or never existed; Graph answered 404)"
        ) from None
    return parse_group(item)


async def _read_targeted(
    graph: GraphClient, reader: _Reader, group: LicensedGroup, p1: int | None, progress: ProgressFn | None
) -> tuple[LicensedGroup, dict[str, User]] | None:
    """The group's members and only their users (licensing.graph.group_scope), or None: read the users scan instead.

    The scan serves two things: the members' licence states, which the targeted read gives, and who holds a licence
    through some group tenant-wide (``group_licensed_users``, for the ``p1_not_covered`` warning: more such users,
    with this group's members, than ``p1`` seats). That count never exceeds the tenant's users, so when
    ``/users/$count`` is at most ``p1`` the warning cannot fire whoever they are, and the scan is not needed.
    """
    if p1 is None:
        return None
    total = await tenant_user_count(graph)
    if total is None or total > p1:
        return None
    parts, scan = await read_group_parts(graph, group, (), progress, tenant_users=total)
    if scan:
        return None  # so large a group that the scan costs less
    snapshot = merge_snapshot(TenantSnapshot(tenant_id=reader.tenant_id, groups=(group,)), parts)
    reader.unreadable.extend(snapshot.unreadable)
    return snapshot.groups[0], dict(snapshot.users)


async def read_candidate(
    graph: GraphClient,
    group_id: str,
    sku_refs: Sequence[str],
    progress: ProgressFn | None = None,
    *,
    p1_seats: Callable[[Sequence[Sku]], int] | None = None,
) -> GroupCandidate:
    """The group ``group_id`` and the SKUs ``sku_refs`` name. Raises BadRequestError for a group id that is not a
    GUID, a group the tenant lacks or a SKU it has not subscribed; GraphError when the SKUs cannot be read.

    ``p1_seats`` (the seats that license group-based licensing among the tenant's SKUs, licensing.plan): when the
    tenant has no more users than that, only the group's members are read (:func:`_read_targeted`), not the scan."""
    group_id = group_id.strip()
    if not is_guid(group_id):
        raise BadRequestError(
            f"the group id {group_id!r} is not a GUID (an object id looks like 00000000-0000-0000-0000-000000000000)"
        )
    if not sku_refs:
        raise BadRequestError("name at least one SKU to plan for (--sku skuId or skuPartNumber)")
    reader = _Reader(graph, progress)
    with telemetry.span("graph.read_candidate"):
        async with task_group() as tasks:
            tasks.create_task(reader.organization())
            skus_task = tasks.create_task(reader.skus())
            licensed_task = tasks.create_task(reader.licensed_groups())
            group = await _group(graph, group_id)
        # One empty subscribedSkus answer while groups assign licences is not "no such SKU": unreadable, retried
        # (issue 27, item 9), never a rejection for good.
        tenant_skus = reader.consistent(skus_task.result(), licensed_task.result())
        if tenant_skus is None:
            part = next((u for u in reader.unreadable if u.what is Part.SKUS), None)
            raise GraphError(f"the subscribed SKUs could not be read: {part.reason if part else 'unknown reason'}")
        wanted: list[Sku] = []
        for ref in sku_refs:
            sku = match_sku(tenant_skus, ref)
            if sku is None:
                raise BadRequestError(f"the tenant has no subscribed SKU {ref.strip()!r}")
            if sku not in wanted:
                wanted.append(sku)
        users: dict[str, User] = {}
        licensing = {g.id for g in licensed_task.result()}
        targeted = await _read_targeted(graph, reader, group, p1_seats(tenant_skus) if p1_seats else None, progress)
        if targeted is not None:
            read, users = targeted
            licensed: frozenset[str] = frozenset()  # not needed: see _read_targeted
        else:
            try:
                [read] = await reader.read([group], users, scan=True, prune=False)
            except GraphError as exc:  # a credential problem mid-read: nothing to assess
                reader.unreadable.append(_unreadable(Part.MEMBERS, group.id, exc))
                read = group
            licensed = frozenset(
                uid for uid, u in users.items() if any(a.assigned_by_group in licensing for a in u.assignments)
            )
    members = {uid: users[uid] for uid in read.user_ids if uid in users}
    return GroupCandidate(
        tenant_id=reader.tenant_id,
        group=read,
        members=MappingProxyType(members),
        skus=tuple(wanted),
        tenant_skus=tuple(tenant_skus),
        group_licensed_users=licensed,
        unreadable=tuple(reader.unreadable),
        tenant_name=reader.tenant_name,
        stats=graph.stats,
    )


@dataclass(frozen=True, slots=True)
class Candidates:
    """The unlicensed security groups read for the report's Candidates section."""

    groups: tuple[GroupCandidate, ...]
    total: int  # unlicensed security groups in the tenant (``groups`` holds at most CANDIDATE_LIMIT of them)
    skus: tuple[Sku, ...]  # what they were assessed for
    missing_skus: tuple[str, ...] = ()  # SKUs asked for that the tenant has not subscribed


async def read_candidates(graph: GraphClient, sku_refs: Sequence[str], *, limit: int = CANDIDATE_LIMIT) -> Candidates:
    """Every security group that assigns no license (``$filter=securityEnabled eq true``: the group resource's
    securityEnabled "Supports $filter (eq, ne, NOT, in)", https://learn.microsoft.com/graph/api/resources/group),
    the first ``limit`` by name with their members, for the SKUs of ``sku_refs`` the tenant has."""
    reader = _Reader(graph, None)
    path = "/groups?" + query({"$filter": "securityEnabled eq true", "$select": GROUP_FIELDS, "$top": PAGE})
    with telemetry.span("graph.read_candidates"):
        async with task_group() as tasks:
            tasks.create_task(reader.organization())
            skus_task = tasks.create_task(reader.skus())
            licensed_task = tasks.create_task(reader.licensed_groups())
            items = await graph.get_collection(path, route="/groups", what="the security groups")
        tenant_skus = skus_task.result() or []
        wanted: list[Sku] = []
        missing: list[str] = []
        for ref in sku_refs:
            sku = match_sku(tenant_skus, ref)
            if sku is None or sku.applies_to.casefold() != "user" or sku.enabled <= 0:
                missing.append(ref)
            elif sku not in wanted:
                wanted.append(sku)
        unlicensed = sorted(
            (g for g in (parse_group(i) for i in items if text(i.get("id"))) if not g.sku_ids and g.security_enabled),
            key=lambda g: (g.display_name.casefold(), g.id),
        )
        chosen = unlicensed[:limit]
        users: dict[str, User] = {}
        read = await reader.read(chosen, users, scan=True, prune=False) if chosen and wanted else []
    licensing = {g.id for g in licensed_task.result()}
    licensed = frozenset(
        uid for uid, u in users.items() if any(a.assigned_by_group in licensing for a in u.assignments)
    )
    groups = tuple(
        GroupCandidate(
            tenant_id=reader.tenant_id,
            group=g,
            members=MappingProxyType({uid: users[uid] for uid in g.user_ids if uid in users}),
            skus=tuple(wanted),
            tenant_skus=tuple(tenant_skus),
            group_licensed_users=licensed,
            unreadable=tuple(u for u in reader.unreadable if u.subject_id in (None, g.id)),
            tenant_name=reader.tenant_name,
        )
        for g in read
    )
    return Candidates(groups, len(unlicensed), tuple(wanted), tuple(missing))
