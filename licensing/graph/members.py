"""Turn member pages and users-scan pages into records, and tell untyped members apart once both are in.

Thousands of users carry the same SKU ids, group ids and assignment states: one shared object each
instead of one per user keeps a 100k-user snapshot in tens of MB.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import replace
from typing import Any, Final

from licensing.graph.parse import is_limited, parse_user, text
from licensing.model import GroupRef, LicenseAssignment, LicensedGroup, Part, Unreadable, User

__all__ = ["Members", "prune_users", "resolve_members"]

USER_TYPE: Final = "#microsoft.graph.user"
GROUP_TYPE: Final = "#microsoft.graph.group"
# The type a directoryObject's @odata.id names when @odata.type is absent (Microsoft's group-list example:
# ".../directoryObjects/{id}/Microsoft.DirectoryServices.Group").
_GROUP_ID_SUFFIX: Final = "/microsoft.directoryservices.group"
_USER_ID_SUFFIX: Final = "/microsoft.directoryservices.user"


def member_kind(item: Mapping[str, Any]) -> str | None:
    """ "user", "group", "other", or None when the object does not say (resolved against the users scan)."""
    kind = item.get("@odata.type")
    if isinstance(kind, str) and kind:
        k = kind.strip().casefold()
        return "user" if k == USER_TYPE else "group" if k == GROUP_TYPE else "other"
    odata_id = item.get("@odata.id")
    if isinstance(odata_id, str):
        lowered = odata_id.casefold()
        if lowered.endswith(_GROUP_ID_SUFFIX):
            return "group"
        if lowered.endswith(_USER_ID_SUFFIX):
            return "user"
    if isinstance(item.get("securityEnabled"), bool) or isinstance(item.get("groupTypes"), list):
        return "group"  # group-only properties that every group has
    if text(item.get("userPrincipalName")):
        return "user"  # a user-only property that every user has
    return None


class Members:
    """Accumulates member pages (``add``) and users-scan pages (``add_users``) into ``users`` as they arrive."""

    def __init__(self, users: MutableMapping[str, User]) -> None:
        self.users = users
        self.scanned: set[str] = set()  # user ids the users scan returned (authoritative)
        self.limited = 0  # users the scan returned with limited information
        self.user_ids: dict[str, list[str]] = {}
        self.member_groups: dict[str, dict[str, GroupRef]] = {}
        self.unknown: dict[str, list[str]] = {}
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
                (
                    s.get("skuId"),
                    s.get("assignedByGroup"),
                    s.get("state"),
                    s.get("error"),
                    s.get("lastUpdatedDateTime"),
                    tuple(p for p in s.get("disabledPlans") or () if isinstance(p, str)),
                )
                for s in states
                if isinstance(s, dict)
            )
            found = shared.get(key)
            if found is None:
                found = shared[key] = parse_user({"id": "", "licenseAssignmentStates": states}).assignments
            assignments = found
        user = parse_user({**item, "licenseAssignmentStates": None})
        if user.assigned_sku_ids:
            found = shared.get(("skus", *user.assigned_sku_ids))
            if found is None:
                found = shared[("skus", *user.assigned_sku_ids)] = user.assigned_sku_ids
            user = replace(user, assigned_sku_ids=found)
        return replace(
            user,
            user_type=shared.setdefault(user.user_type, user.user_type),
            usage_location=shared.setdefault(user.usage_location, user.usage_location),
            assignments=assignments,
        )

    def add_users(self, items: Iterable[dict[str, Any]]) -> None:
        """One page of the users scan: the user records (they replace what member pages said of them)."""
        for item in items:
            ident = text(item.get("id"))
            if ident is None or member_kind(item) not in (None, "user"):
                continue  # not a user: an object type this code does not know, in a page of users
            ident = ident.lower()
            if is_limited(item):
                self.limited += 1
            self.users[ident] = self._user({**item, "id": ident})
            self.scanned.add(ident)

    def forget_scanned(self) -> None:
        """The users scan reads again (users_scan): forget what its failed attempt brought, so that a user deleted
        between the two reads is not kept from the first (a member the second does not return is then unreadable)."""
        for ident in self.scanned:
            self.users.pop(ident, None)
        self.scanned.clear()
        self.limited = 0

    def add(self, group_id: str, items: Iterable[dict[str, Any]]) -> None:
        """One page of a group's direct members."""
        user_ids = self.user_ids.setdefault(group_id, [])
        groups = self.member_groups.setdefault(group_id, {})
        for item in items:
            raw = text(item.get("id"))
            if raw is None:  # an object without an id cannot be a usable user or group
                self.other[group_id] = self.other.get(group_id, 0) + 1
                continue
            ident = raw.lower()
            kind = member_kind(item)
            if kind == "user":
                if ident not in self.users:  # a stand-in until (unless) the scan brings the user
                    self.users[ident] = self._user({**item, "id": ident})
                user_ids.append(ident)
            elif kind == "group":
                groups[ident] = GroupRef(ident, text(item.get("displayName")) or "")
            elif kind is None:
                self.unknown.setdefault(group_id, []).append(ident)
            else:  # devices, service principals, contacts, and types this code does not know
                self.other[group_id] = self.other.get(group_id, 0) + 1

    def group(self, group: LicensedGroup) -> LicensedGroup:
        # A member listed twice (page boundaries under concurrent change) counts once.
        return replace(
            group,
            user_ids=tuple(dict.fromkeys(self.user_ids.get(group.id, ()))),
            member_groups=tuple(self.member_groups.get(group.id, {}).values()),
            other_members=self.other.get(group.id, 0),
            unknown_members=tuple(dict.fromkeys(self.unknown.get(group.id, ()))),
        )


def resolve_members(
    groups: Iterable[LicensedGroup], users: Mapping[str, User], *, scanned: bool
) -> tuple[list[LicensedGroup], list[Unreadable]]:
    """Members without a type become users when the users scan knows them, else other objects.

    With ``scanned`` (the users scan was read), a user member the scan did not return is listed as
    unreadable: its type, state and licenses are unknown (it may have been created during the read).
    """
    out: list[LicensedGroup] = []
    missing: dict[str, None] = {}
    for original in groups:
        group = original
        if group.unknown_members:
            found = [u for u in group.unknown_members if u in users]
            group = replace(
                group,
                user_ids=tuple(dict.fromkeys((*group.user_ids, *found))),
                other_members=group.other_members + len(group.unknown_members) - len(found),
                unknown_members=(),
            )
        if scanned:
            for uid in group.user_ids:
                user = users.get(uid)
                if user is None or (not user.assignments and user.account_enabled is None and user.user_type is None):
                    missing[uid] = None
        out.append(group)
    unreadable = [
        Unreadable(Part.USER, uid, "a member the users scan did not return (created or changed during the read?)")
        for uid in missing
    ]
    return out, unreadable


def prune_users(users: dict[str, User], groups: Iterable[LicensedGroup]) -> None:
    """Keep the users a rule can use: members of the groups read, and users holding a state one of them assigned.

    The users scan returns every user of the tenant; a user outside every group read and holding nothing from
    one of them is in no finding of this scope, and dropping it keeps a large tenant's snapshot small.
    """
    groups = list(groups)
    members = {uid for g in groups for uid in g.user_ids}
    read = {g.id for g in groups}
    for uid in [
        u
        for u, user in users.items()
        if u not in members and not any(a.assigned_by_group in read for a in user.assignments)
    ]:
        del users[uid]
