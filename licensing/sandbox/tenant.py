"""Deterministic generation of a simulated tenant (users, groups, SKUs, assignment states) and its ground truth.

Storage is columnar so that 300,000 users fit in tens of MB: one flag byte and one location byte per
user, members as ``array('i')`` per group, a CSR index from user to groups, and sparse dicts for the
few users with direct assignments or errors. Names and GUIDs are derived on demand from index + seed.

The ground truth applies docs/findings.md (default settings, tenant scope) to the generated data,
independently of ``licensing.rules``; the integration tests compare the two.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from licensing.errors import ConfigurationError
from licensing.model import FindingKind, Severity, finding_id
from licensing.sandbox.catalog import (
    ERROR_KINDS,
    FIRST_NAMES,
    LAST_NAMES,
    ODD_GROUP_NAMES,
    ODD_USER_NAMES,
    SKU_CATALOG,
    USAGE_LOCATIONS,
    CatalogSku,
    ServicePlan,
)
from licensing.settings import DEFAULT_EXPECTED_GROUP_SKUS

__all__ = [
    "MIN_GROUPS",
    "MIN_USERS",
    "SHAPES",
    "ExpectedFinding",
    "GroupDef",
    "SandboxTenant",
    "SkuState",
    "TenantSpec",
    "generate_tenant",
]

MIN_USERS: Final = 60
MIN_GROUPS: Final = 12
SHAPES: Final = ("flat", "realistic")
# Realistic shape: the share of users in some department group, and the SKU set of each department group.
DEPARTMENT_SHARE: Final = 0.5

# User flag bits (one byte per user).
ENABLED: Final = 1
GUEST: Final = 2  # userType Guest
EXT_PENDING: Final = 4  # externalUserState PendingAcceptance
EXT_ACCEPTED: Final = 8  # externalUserState Accepted
INVITED: Final = 16  # creationType Invitation
EXT_UPN: Final = 32  # #EXT# in the UPN
ODD_NAME: Final = 64  # display name from ODD_USER_NAMES

PROCESSING_COMPLETE: Final = "ProcessingComplete"
NO_GROUP: Final = -1
_MULT: Final = 0x9E3779B1  # odd: index -> 32-bit head of a GUID is a bijection
_MULT_INV: Final = pow(_MULT, -1, 1 << 32)

# Special groups (indices); generic groups follow from FIRST_GENERIC on.
G_SHORT, G_E5, G_E3, G_EMS5, G_BI, G_EMPTY, G_PROC, G_GUESTS, G_NESTED, G_KIOSK = range(10)
FIRST_GENERIC: Final = 10
# Special users (indices); generic users follow from FIRST_GENERIC_USER on.
U_B2B = range(5)  # one per B2B signal, the last one with all of them
U_GUEST_UNLICENSED = 5
U_DISABLED = (6, 7, 8)
U_ERRORS = range(9, 14)  # one per ERROR_KINDS entry
U_REDUNDANT_E3 = (15, 16)
U_REDUNDANT_BI = 17
U_DIRECT_ONLY = 18
U_DIRECT_E5P_MEMBER = 19
U_MULTI = range(20, 24)
U_PROCESSING = range(24, 28)
U_NESTED_ONLY = range(28, 32)
U_EMS5 = range(32, 36)
U_ODD = range(36, 40)
FIRST_GENERIC_USER: Final = 40


@dataclass(frozen=True, slots=True)
class TenantSpec:
    """What to generate. The same spec always yields the same tenant, byte for byte."""

    seed: int = 1
    users: int = 200
    groups: int = 20
    tenant_name: str = "Contoso Sandbox"
    guest_rate: float = 0.02
    disabled_rate: float = 0.03
    second_group_rate: float = 0.15
    direct_rate: float = 0.06
    # "flat": every user in one or two small groups (the largest licensed group has tens of members).
    # "realistic": as flat, plus a few large licensed groups holding most users, as tenants usually
    # license: one "All staff" group (``big_group_share`` of the users) and ``big_groups - 1``
    # department groups (half of the users, Zipf-sized: thousands each at 100k users).
    shape: str = "flat"
    big_groups: int = 10
    big_group_share: float = 0.7

    def validate(self) -> None:
        problems = []
        if self.users < MIN_USERS:
            problems.append(f"sandbox users must be at least {MIN_USERS} (got {self.users})")
        if self.users > 2_000_000:
            problems.append(f"sandbox users must be at most 2000000 (got {self.users})")
        if self.groups < MIN_GROUPS:
            problems.append(f"sandbox groups must be at least {MIN_GROUPS} (got {self.groups})")
        if self.groups > 100_000:
            problems.append(f"sandbox groups must be at most 100000 (got {self.groups})")
        for name in ("guest_rate", "disabled_rate", "second_group_rate", "direct_rate", "big_group_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"sandbox {name} must be between 0 and 1")
        if self.shape not in SHAPES:
            problems.append(f"sandbox shape must be one of {', '.join(SHAPES)} (got {self.shape!r})")
        elif self.shape == "realistic" and not 1 <= self.big_groups <= len(_big_candidates(self.groups)):
            problems.append(
                f"sandbox big_groups must be between 1 and {len(_big_candidates(self.groups))} "
                f"for {self.groups} groups (got {self.big_groups})"
            )
        if problems:
            raise ConfigurationError(problems)


@dataclass(frozen=True, slots=True)
class SkuState:
    """A subscribedSku with Graph-consistent counters."""

    index: int
    sku_id: str
    part_number: str
    applies_to: str
    capability_status: str
    enabled: int
    suspended: int
    warning: int
    locked_out: int
    consumed: int
    plans: tuple[ServicePlan, ...]

    @property
    def available(self) -> int:
        return self.enabled - self.consumed


@dataclass(frozen=True, slots=True)
class GroupDef:
    index: int
    id: str
    display_name: str
    sku_indices: tuple[int, ...]  # assignedLicenses
    disabled_plans: tuple[tuple[str, ...], ...]  # per assigned SKU
    processing_state: str | None  # None for unlicensed groups
    users: array[int]  # direct user members, user indices
    member_groups: tuple[int, ...]
    devices: int
    description: str

    @property
    def licensed(self) -> bool:
        return bool(self.sku_indices)

    @property
    def processed(self) -> bool:
        return self.processing_state == PROCESSING_COMPLETE

    @property
    def member_count(self) -> int:
        return len(self.users) + len(self.member_groups) + self.devices


@dataclass(frozen=True, slots=True)
class ExpectedFinding:
    """A finding the audit must produce on this tenant under default settings (docs/findings.md)."""

    kind: str
    severity: Severity
    sku_id: str | None = None
    group_id: str | None = None
    user_id: str | None = None
    member_group_id: str | None = None
    error: str | None = None

    @property
    def subject(self) -> tuple[str | None, ...]:
        k = self.kind
        if k in ("seat_shortage", "seat_low", "seat_forecast", "units_expiring", "expected_sku_not_group_assigned"):
            return (self.sku_id,)
        if k in ("b2b_member", "disabled_user_licensed"):
            return (self.group_id, self.user_id)
        if k == "nested_group":
            return (self.group_id, self.member_group_id)
        if k == "license_error":
            return (self.group_id, self.user_id, self.sku_id, self.error)
        if k in ("processing_incomplete", "empty_licensed_group"):
            return (self.group_id,)
        if k == "redundant_direct_assignment":
            return (self.user_id, self.sku_id)
        raise ValueError(f"unknown finding kind {k!r}")

    @property
    def id(self) -> str:
        return finding_id(self.kind, *self.subject)


@dataclass(frozen=True, slots=True)
class AssignmentState:
    sku: int
    group: int  # NO_GROUP for a direct assignment
    error: str | None
    active: bool = False  # the user keeps the license despite the error (a removal that failed)

    @property
    def state(self) -> str:
        # https://learn.microsoft.com/graph/api/resources/licenseassignmentstate: Active | ActiveWithError | Error
        if not self.error:
            return "Active"
        return "ActiveWithError" if self.active else "Error"

    @property
    def holds_seat(self) -> bool:
        return not self.error or self.active


def _h(*parts: object) -> bytes:
    return hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=16).digest()


class _Ids:
    """Deterministic GUIDs whose first 8 hex digits encode the index, so lookups need no dict."""

    __slots__ = ("_offset", "_seed", "kind")

    def __init__(self, seed: int, kind: str) -> None:
        self._seed = seed
        self.kind = kind
        self._offset = int.from_bytes(_h(seed, kind, "offset")[:4], "big")

    def make(self, index: int) -> str:
        head = (index * _MULT + self._offset) & 0xFFFFFFFF
        t = _h(self._seed, self.kind, index).hex()
        return f"{head:08x}-{t[0:4]}-4{t[5:8]}-{'89ab'[int(t[8], 16) & 3]}{t[9:12]}-{t[12:24]}"

    def index(self, guid: str, limit: int) -> int | None:
        """The index of ``guid`` when it is one of ours (below ``limit``), else None."""
        if len(guid) != 36:
            return None
        try:
            head = int(guid[:8], 16)
        except ValueError:
            return None
        idx = ((head - self._offset) * _MULT_INV) & 0xFFFFFFFF
        if idx >= limit or self.make(idx) != guid.lower():
            return None
        return idx


class SandboxTenant:
    """A generated tenant: columnar users, groups, SKUs; everything the server and the tests need."""

    def __init__(
        self,
        spec: TenantSpec,
        skus: tuple[SkuState, ...],
        groups: tuple[GroupDef, ...],
        flags: bytearray,
        locations: bytearray,
        direct: dict[int, tuple[int, ...]],
        errors: dict[tuple[int, int, int], str],
        removed: dict[int, tuple[tuple[int, int, str], ...]],
        user_ids: _Ids,
        group_ids: _Ids,
        ug_offsets: array[int],
        ug_groups: array[int],
    ) -> None:
        self.spec = spec
        self.skus = skus
        self.groups = groups
        self.flags = flags
        self.locations = locations
        self.direct = direct
        self.errors = errors
        # user -> (group, sku, error): users who left a licensed group and still hold its seat because removing
        # the license failed (DependencyViolation, or a proxy-address conflict: UniquenessViolation).
        self.removed = removed
        self._uids = user_ids
        self._gids = group_ids
        self._ug_offsets = ug_offsets
        self._ug_groups = ug_groups
        self.tenant_id = _Ids(spec.seed, "tenant").make(0)
        self.tenant_name = spec.tenant_name
        slug = "".join(c for c in spec.tenant_name.lower() if c.isalnum())[:20] or "sandbox"
        self.domain = f"{slug}{spec.seed}.onmicrosoft.com"
        self.ground_truth: tuple[ExpectedFinding, ...] = _ground_truth(self)

    # -------------------------------------------------------------- identities and names

    @property
    def user_count(self) -> int:
        return len(self.flags)

    @property
    def sku_ids(self) -> tuple[str, ...]:
        return tuple(s.sku_id for s in self.skus)

    @property
    def licensed_group_ids(self) -> tuple[str, ...]:
        return tuple(g.id for g in self.groups if g.licensed)

    def sku_by_part(self, part_number: str) -> SkuState:
        for s in self.skus:
            if s.part_number.lower() == part_number.lower():
                return s
        raise KeyError(part_number)

    def group_by_id(self, group_id: str) -> GroupDef | None:
        idx = self._gids.index(group_id, len(self.groups))
        return None if idx is None else self.groups[idx]

    def user_id(self, index: int) -> str:
        return self._uids.make(index)

    def user_index(self, user_id: str) -> int | None:
        return self._uids.index(user_id, self.user_count)

    def user_names(self, index: int) -> tuple[str, str, str, str]:
        """(displayName, givenName, surname, userPrincipalName)."""
        first = FIRST_NAMES[(index * 7 + self.spec.seed) % len(FIRST_NAMES)]
        last = LAST_NAMES[(index * 13 + self.spec.seed * 3) % len(LAST_NAMES)]
        f = self.flags[index]
        display = ODD_USER_NAMES[index % len(ODD_USER_NAMES)] if f & ODD_NAME else f"{first} {last}"
        local = f"{first}.{last}{index}".lower()
        upn = f"{local}_fabrikam.example#EXT#@{self.domain}" if f & EXT_UPN else f"{local}@{self.domain}"
        return display, first, last, upn

    def user_groups(self, index: int) -> array[int]:
        return self._ug_groups[self._ug_offsets[index] : self._ug_offsets[index + 1]]

    def user_states(self, index: int) -> list[AssignmentState]:
        """The user's licenseAssignmentStates: direct first, then one per SKU of each processed licensed group,
        then what groups the user left still hold (ActiveWithError)."""
        out = [AssignmentState(s, NO_GROUP, None) for s in self.direct.get(index, ())]
        for g in self.user_groups(index):
            group = self.groups[g]
            if group.processed:
                out.extend(AssignmentState(s, g, self.errors.get((index, g, s))) for s in group.sku_indices)
        out.extend(AssignmentState(s, g, err, active=True) for g, s, err in self.removed.get(index, ()))
        return out

    def iter_users(self) -> Iterator[int]:
        return iter(range(self.user_count))


# ---------------------------------------------------------------------------------- generation


def _group_name(index: int, rng_pick: int) -> tuple[str, str]:
    special = {
        G_SHORT: ("SG-Lic-Office365-E3", "Office 365 E3 + EMS E3 for all staff"),
        G_E5: ("SG-Lic-Microsoft365-E5", "Microsoft 365 E5 for executives"),
        G_E3: ("SG-Lic-Microsoft365-E3", "Microsoft 365 E3 (Yammer disabled)"),
        G_EMS5: ("SG-Lic-EMS-E5", "EMS E5 for admins"),
        G_BI: ("SG-Lic-PowerBI-Pro", "Power BI Pro"),
        G_EMPTY: ("SG-Lic-Contractors-Empty", "Licensed, nobody left in it"),
        G_PROC: ("SG-Lic-NewHires", "Licensed, still processing"),
        G_GUESTS: ("Partners and guests", "Unlicensed: guests here must not alert"),
        G_NESTED: ("Team Nested", "Nested in a licensed group: its members get nothing"),
        G_KIOSK: ("SG-Lic-Kiosk-Devices", "Licensed, devices only"),
    }
    if index in special:
        return special[index]
    j = index - FIRST_GENERIC
    if j < len(ODD_GROUP_NAMES):
        return ODD_GROUP_NAMES[j], "Odd name"
    depts = ("Sales", "Marketing", "Engineering", "Finance", "HR", "Legal", "Support", "Operations", "IT", "Research")
    return f"{depts[rng_pick % len(depts)]} Team {j:04d}", "Department team"


def _big_candidates(groups: int) -> list[int]:
    """Generic groups that may become big ones: no odd name, not nesting another group."""
    out = []
    for g in range(FIRST_GENERIC + len(ODD_GROUP_NAMES), groups):
        j = g - FIRST_GENERIC
        if j % 3 != 2 and j % 7 != 3:
            out.append(g)
    return out


def generate_tenant(spec: TenantSpec) -> SandboxTenant:
    """Generate the tenant for ``spec``: deterministic, seconds for 300,000 users."""
    spec.validate()
    n, m = spec.users, spec.groups
    rng = random.Random(spec.seed)
    part = {c.part_number: i for i, c in enumerate(SKU_CATALOG)}
    e3, e5, m365e3, ems, ems5 = part["ENTERPRISEPACK"], part["SPE_E5"], part["SPE_E3"], part["EMS"], part["EMSPREMIUM"]
    o365e5, bi, flow = part["ENTERPRISEPREMIUM"], part["POWER_BI_PRO"], part["FLOW_FREE"]
    yammer = next(p.id for p in SKU_CATALOG[m365e3].plans if p.name == "YAMMER_ENTERPRISE")

    flags = bytearray([ENABLED]) * n
    locations = bytearray(n)
    direct: dict[int, tuple[int, ...]] = {}
    members: list[list[int]] = [[] for _ in range(m)]
    member_groups: list[list[int]] = [[] for _ in range(m)]

    # Special users: every situation of docs/findings.md, whatever the size.
    b2b_flags = (GUEST, EXT_ACCEPTED, INVITED, EXT_UPN, GUEST | EXT_PENDING | INVITED | EXT_UPN)
    for u, f in zip(U_B2B, b2b_flags, strict=True):
        flags[u] |= f
        members[G_E5].append(u)
    members[G_GUESTS] += [U_B2B[-1], U_GUEST_UNLICENSED]
    flags[U_GUEST_UNLICENSED] |= GUEST | EXT_ACCEPTED | INVITED | EXT_UPN
    for u in U_DISABLED:
        flags[u] &= ~ENABLED
    members[G_E5] += [U_DISABLED[0], U_DISABLED[1]]
    members[G_E3].append(U_DISABLED[2])
    errors: dict[tuple[int, int, int], str] = {}
    for u, err in zip(U_ERRORS, ERROR_KINDS, strict=True):
        members[G_E3].append(u)
        errors[(u, G_E3, m365e3)] = err
        if err == "ProhibitedInUsageLocationViolation":
            locations[u] = USAGE_LOCATIONS.index("KP")
    members[G_E3].append(14)  # a plain member
    for u in U_REDUNDANT_E3:
        direct[u] = (m365e3,)
        members[G_E3].append(u)
    direct[U_REDUNDANT_BI] = (bi,)
    members[G_BI].append(U_REDUNDANT_BI)
    direct[U_DIRECT_ONLY] = (o365e5,)
    direct[U_DIRECT_E5P_MEMBER] = (o365e5,)
    members[G_E3].append(U_DIRECT_E5P_MEMBER)
    for u in U_MULTI:
        members[G_SHORT].append(u)
        members[G_E3].append(u)
        members[G_BI].append(u)
    members[G_PROC] += list(U_PROCESSING)
    members[G_NESTED] += list(U_NESTED_ONLY)
    members[G_EMS5] += list(U_EMS5)
    for u in U_ODD:
        members[G_SHORT].append(u)
    for u in range(U_PROCESSING[0], U_ODD[-1] + 1):  # 16 users: every odd name at least once, whatever the size
        flags[u] |= ODD_NAME
    member_groups[G_E5].append(G_NESTED)  # a group nested in a licensed group
    member_groups[G_E3].append(G_EMS5)  # a licensed group nested in another licensed group

    generic = list(range(FIRST_GENERIC, m))
    # Licensed generic groups get one of these SKU sets; one in three generic groups stays unlicensed.
    sku_sets = ((m365e3,), (m365e3, bi), (flow,), (e3,), (e5,), (ems,))
    group_skus: list[tuple[int, ...]] = [
        (e3, ems),
        (e5,),
        (m365e3,),
        (ems5,),
        (bi,),
        (m365e3,),
        (m365e3,),
        (),
        (),
        (flow,),
    ]
    for g in generic:
        j = g - FIRST_GENERIC
        group_skus.append(() if j % 3 == 2 else sku_sets[j % len(sku_sets)])
        if j % 7 == 3:
            member_groups[g].append(g - 1)
    big: list[int] = []
    big_names: dict[int, tuple[str, str]] = {}
    dept_weights: list[float] = []
    if spec.shape == "realistic":
        big = _big_candidates(m)[: spec.big_groups]
        # "All staff" carries the tenant's base license; departments add one SKU set each.
        dept_skus = ((ems,), (bi,), (flow,), (e5,), (m365e3, bi), (e3,))
        group_skus[big[0]] = (m365e3,)
        big_names[big[0]] = ("SG-Lic-All-Staff-M365-E3", "Microsoft 365 E3 for every employee")
        depts = ("Sales", "Engineering", "Operations", "Support", "Finance", "Marketing", "HR", "Legal", "IT")
        for k, g in enumerate(big[1:]):
            group_skus[g] = dept_skus[k % len(dept_skus)]
            big_names[g] = (f"SG-Lic-Dept-{depts[k % len(depts)]}-{k:02d}", "Department license group")
        dept_weights = list(itertools.accumulate(1.0 / (k + 1) for k in range(len(big) - 1)))
    # Big groups get their members below only, so that no user is listed twice in one group.
    fill = [G_SHORT, G_E5, G_E3, G_EMS5, G_BI, G_GUESTS, G_NESTED, *(g for g in generic if g not in big_names)]
    # A separate stream: the flat shape's draws (and so its tenants) stay exactly what they were.
    shape_rng = random.Random(spec.seed * 1_000_003 + 17)

    for u in range(FIRST_GENERIC_USER, n):
        r = rng.random
        if r() < spec.guest_rate:
            flags[u] |= GUEST | (EXT_ACCEPTED if r() < 0.7 else EXT_PENDING) | INVITED | EXT_UPN
        if r() < spec.disabled_rate:
            flags[u] &= ~ENABLED
        if u % 97 == 0:
            flags[u] |= ODD_NAME
        locations[u] = rng.randrange(len(USAGE_LOCATIONS) - 1)
        primary = fill[rng.randrange(len(fill))]
        members[primary].append(u)
        if r() < spec.second_group_rate:
            second = fill[rng.randrange(len(fill))]
            if second != primary:
                members[second].append(u)
        if big:
            if shape_rng.random() < spec.big_group_share:
                members[big[0]].append(u)
            if dept_weights and shape_rng.random() < DEPARTMENT_SHARE:
                members[big[1 + bisect.bisect(dept_weights, shape_rng.random() * dept_weights[-1])]].append(u)
        d = r()
        if d < spec.direct_rate:
            direct[u] = (bi,) if d < spec.direct_rate * 0.6 else (m365e3,) if d < spec.direct_rate * 0.85 else (o365e5,)

    # Users in several licensed groups appear in order of first membership; keep member lists sorted.
    processing = {G_PROC: "QueuedForProcessing"}
    gids = _Ids(spec.seed, "group")
    groups = []
    for g in range(m):
        name, desc = _group_name(g, rng.randrange(1000))
        name, desc = big_names.get(g, (name, desc))
        skus = group_skus[g]
        groups.append(
            GroupDef(
                index=g,
                id=gids.make(g),
                display_name=name,
                sku_indices=skus,
                disabled_plans=tuple((yammer,) if (g == G_E3 and s == m365e3) else () for s in skus),
                processing_state=(processing.get(g, PROCESSING_COMPLETE) if skus else None),
                users=array("i", members[g]),
                member_groups=tuple(member_groups[g]),
                devices=2 if g == G_KIOSK else 0,
                description=desc,
            )
        )

    # user -> groups (CSR)
    counts = array("i", bytes(4 * (n + 1)))
    for grp in groups:
        for u in grp.users:
            counts[u + 1] += 1
    for i in range(n):
        counts[i + 1] += counts[i]
    ug_groups = array("i", bytes(4 * counts[n]))
    cursor = array("i", counts)
    for grp in groups:
        gi = grp.index
        for u in grp.users:
            ug_groups[cursor[u]] = gi
            cursor[u] += 1

    removed = _removal_errors(groups, direct, n, {G_E3: m365e3, G_BI: bi})
    sku_states = _allocate_seats(spec, groups, direct, errors, removed, n)
    return SandboxTenant(
        spec,
        sku_states,
        tuple(groups),
        flags,
        locations,
        direct,
        errors,
        removed,
        _Ids(spec.seed, "user"),
        gids,
        counts,
        ug_groups,
    )


def _removal_errors(
    groups: list[GroupDef], direct: dict[int, tuple[int, ...]], n: int, cases: dict[int, int]
) -> dict[int, tuple[tuple[int, int, str], ...]]:
    """One former member per case (group -> SKU) who still holds the group's seat: removing the license failed.

    "This error [DependencyViolation] occurs when Microsoft Entra ID attempts to remove the underlying service
    plan. For example, this can happen when you remove the user from the group"; removal also fails on a
    proxy-address conflict (https://learn.microsoft.com/entra/identity/users/licensing-groups-resolve-problems).
    """
    errors = ("DependencyViolation", "UniquenessViolation")
    out: dict[int, tuple[tuple[int, int, str], ...]] = {}
    taken: set[int] = set()
    for (g, k), err in zip(sorted(cases.items()), errors, strict=False):
        holders = {u for grp in groups if k in grp.sku_indices for u in grp.users}
        for u in range(FIRST_GENERIC_USER, n):
            if u not in holders and u not in taken and k not in direct.get(u, ()):
                out[u] = ((g, k, err),)
                taken.add(u)
                break
    return out


def _allocate_seats(
    spec: TenantSpec,
    groups: list[GroupDef],
    direct: dict[int, tuple[int, ...]],
    errors: dict[tuple[int, int, int], str],
    removed: dict[int, tuple[tuple[int, int, str], ...]],
    n: int,
) -> tuple[SkuState, ...]:
    """Set each SKU's counters the way Graph keeps them, adding CountViolation where seats ran out.

    A user consumes one unit of a SKU when at least one assignment of it (direct, through a processed
    group, or left behind by a failed removal) holds a seat. Direct assignments come first (they cannot
    exceed seats); group members are served in group order; for the short SKU the last users to arrive
    wait. Group licensing is all or nothing: "If Microsoft Entra ID can't assign one of the products ...
    it won't assign the other licenses in the group either" (licensing-groups-resolve-problems), so a user
    waiting for the short SKU of a group gets none of that group's other SKUs either. Which error Graph
    records on those other products is not documented: the sandbox records CountViolation (docs/sandbox.md).
    """
    out: dict[int, SkuState] = {}
    blocked: set[tuple[int, int]] = set()  # (user, group) waiting for a short SKU of that group
    # Short SKUs first: their waiting users are then kept out of the group's other SKUs.
    order_k = sorted(range(len(SKU_CATALOG)), key=lambda k: SKU_CATALOG[k].plan != "shortage")
    for k in order_k:
        cat = SKU_CATALOG[k]
        holders = bytearray(n)
        order: list[int] = []  # users served through groups, in arrival order, not already holders
        for u, ss in direct.items():
            if k in ss:
                holders[u] = 1
        for u, states in removed.items():
            if any(s == k for _g, s, _e in states):
                holders[u] = 1
        # The multi-product group is served last for the short SKU, so that its members are among those who wait
        # and the all-or-nothing case is in every tenant.
        served = sorted(groups, key=lambda grp: cat.plan == "shortage" and grp.index == G_SHORT)
        for grp in served:
            if k not in grp.sku_indices or not grp.processed:
                continue
            gi = grp.index
            for u in grp.users:
                if (u, gi) in blocked:
                    errors[(u, gi, k)] = "CountViolation"
                    continue
                if not holders[u] and (u, gi, k) not in errors:
                    holders[u] = 1
                    order.append(u)
        demand = sum(holders)
        waiting: list[int] = []
        if cat.plan == "shortage" and order:
            waiting = order[-max(1, demand // 20) :]
            wait_set = set(waiting)
            for grp in groups:
                if k in grp.sku_indices and grp.processed:
                    gi = grp.index
                    for u in grp.users:
                        if u in wait_set:
                            errors[(u, gi, k)] = "CountViolation"
                            blocked.add((u, gi))
        consumed = demand - len(waiting)
        out[k] = _counters(k, cat, consumed, spec.seed)
    return tuple(out[k] for k in range(len(SKU_CATALOG)))


def _counters(k: int, cat: CatalogSku, consumed: int, seed: int) -> SkuState:
    spare = max(10, math.ceil(consumed * 0.2))
    enabled, suspended, warning, locked, status = consumed + spare, 0, 0, 0, "Enabled"
    if cat.plan == "shortage":
        enabled = consumed  # every seat taken; the waiting users have CountViolation
    elif cat.plan == "low":
        enabled = consumed + 2
    elif cat.plan == "warning":
        # A second, expired subscription in grace beside an active one: capabilityStatus stays Enabled, which
        # "indicates that the prepaidUnits property has at least one unit that is enabled" (subscribedSku).
        warning = 5 + seed % 5
    elif cat.plan == "suspended":
        # Microsoft's List subscribedSkus example: "Suspended", enabled 0, suspended 25, consumed 14.
        enabled, suspended, status = 0, consumed + 11, "Suspended"
    elif cat.plan == "over":
        enabled = max(consumed - 1, 0)  # seats removed at renewal while still assigned
    elif cat.plan == "free":
        enabled = max(10_000, consumed + spare)
    elif cat.plan == "locked":
        enabled, locked, status = 0, 5, "LockedOut"
    elif cat.plan == "company":
        enabled, warning = 1, 1  # would look bad as a User SKU: Company SKUs never alert
    return SkuState(
        k,
        cat.sku_id,
        cat.part_number,
        cat.applies_to,
        status,
        enabled,
        suspended,
        warning,
        locked,
        consumed,
        cat.plans,
    )


# ---------------------------------------------------------------------------------- ground truth


def is_b2b(tenant: SandboxTenant, u: int) -> bool:
    return bool(tenant.flags[u] & (GUEST | EXT_PENDING | EXT_ACCEPTED | INVITED | EXT_UPN))


def _lifecycle_only(s: SkuState) -> bool:
    """docs/findings.md: a SKU without active units (all in grace, suspended or locked out, or not Enabled)."""
    return s.capability_status != "Enabled" or (s.enabled <= 0 and s.warning + s.suspended + s.locked_out > 0)


def _ground_truth(t: SandboxTenant) -> tuple[ExpectedFinding, ...]:
    """docs/findings.md, default settings, tenant scope, no SKU history (so no seat_forecast)."""
    out: list[ExpectedFinding] = []
    crit, warn, info = Severity.CRITICAL, Severity.WARNING, Severity.INFO
    licensed = [g for g in t.groups if g.licensed]
    waiting: dict[int, set[int]] = {}

    def short(k: int) -> bool:
        sku = t.skus[k]
        return sku.available <= 0 or _lifecycle_only(sku)

    for g in licensed:
        gid = g.id
        if g.processing_state != PROCESSING_COMPLETE:
            out.append(ExpectedFinding(FindingKind.PROCESSING_INCOMPLETE, info, group_id=gid))
        if g.member_count == 0:
            out.append(ExpectedFinding(FindingKind.EMPTY_LICENSED_GROUP, info, group_id=gid))
        out.extend(
            ExpectedFinding(FindingKind.NESTED_GROUP, warn, group_id=gid, member_group_id=t.groups[mg].id)
            for mg in g.member_groups
        )
        for u in g.users:
            uid = t.user_id(u)
            if is_b2b(t, u):
                out.append(ExpectedFinding(FindingKind.B2B_MEMBER, warn, group_id=gid, user_id=uid))
            mine = [st for st in t.user_states(u) if st.group == g.index]
            counted = {st.sku for st in mine if st.error == "CountViolation"}
            causes = {k for k in counted if short(k)}
            active_here = False
            for st in mine:
                if st.error:
                    sku = t.skus[st.sku]
                    sev = crit if st.error == "CountViolation" else warn
                    out.append(ExpectedFinding(FindingKind.LICENSE_ERROR, sev, sku.sku_id, gid, uid, error=st.error))
                    # All or nothing: waiting for a SKU with seats because another SKU of the group has none.
                    blocked = bool(causes) and causes != counted and st.sku not in causes
                    if st.error == "CountViolation" and not blocked:
                        waiting.setdefault(st.sku, set()).add(u)
                else:
                    active_here = True
            if active_here and not t.flags[u] & ENABLED:
                out.append(ExpectedFinding(FindingKind.DISABLED_USER_LICENSED, info, group_id=gid, user_id=uid))
    # Former members still holding a group's seat because the removal failed (license_error, any membership).
    for u, left in sorted(t.removed.items()):
        for g_index, k, err in left:
            gid, sku_id = t.groups[g_index].id, t.skus[k].sku_id
            out.append(ExpectedFinding(FindingKind.LICENSE_ERROR, warn, sku_id, gid, t.user_id(u), error=err))
    for u in range(t.user_count):
        states = t.user_states(u)
        direct = {s.sku for s in states if s.group == NO_GROUP}
        if not direct:
            continue
        via_group = {s.sku for s in states if s.group != NO_GROUP and s.state == "Active"}
        out.extend(
            ExpectedFinding(FindingKind.REDUNDANT_DIRECT_ASSIGNMENT, info, t.skus[k].sku_id, user_id=t.user_id(u))
            for k in sorted(direct & via_group)
        )
    expected = {e.lower() for e in DEFAULT_EXPECTED_GROUP_SKUS}
    assigned = {k for g in licensed for k in g.sku_indices}
    for s in t.skus:
        if s.applies_to != "User":
            continue
        w = len(waiting.get(s.index, ()))
        lifecycle = _lifecycle_only(s)
        shortage = not lifecycle and (s.consumed > s.enabled + s.warning or (w > 0 and w > max(s.available, 0)))
        if shortage:
            out.append(ExpectedFinding(FindingKind.SEAT_SHORTAGE, crit, s.sku_id))
        elif not lifecycle and s.enabled > 0 and s.available < max(5, 5 / 100 * s.enabled):
            out.append(ExpectedFinding(FindingKind.SEAT_LOW, warn, s.sku_id))
        if s.suspended > 0 or s.locked_out > 0 or s.capability_status in ("Suspended", "LockedOut", "Deleted"):
            out.append(ExpectedFinding(FindingKind.UNITS_EXPIRING, crit, s.sku_id))
        elif s.warning > 0 or s.capability_status == "Warning":
            out.append(ExpectedFinding(FindingKind.UNITS_EXPIRING, warn, s.sku_id))
        in_expected = s.part_number.lower() in expected or s.sku_id.lower() in expected
        if in_expected and s.enabled > 0 and s.index not in assigned:
            out.append(ExpectedFinding(FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED, warn, s.sku_id))
    return tuple(sorted(out, key=lambda f: (f.kind, f.id)))
