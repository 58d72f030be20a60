"""The simulated tenant: its records (SKUs, groups, users, assignment states, expected findings), stored compactly.

Storage is columnar so that 300,000 users fit in tens of MB: one flag byte and one location byte per
user, members as ``array('i')`` per group, a CSR index from user to groups, and sparse dicts for the
few users with direct assignments or errors. Names and GUIDs are derived on demand from index + seed.

:mod:`licensing.sandbox.generate` builds one deterministically; :mod:`licensing.sandbox.truth` derives what
the audit must find in it.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from licensing.errors import ConfigurationError
from licensing.kinds import CATALOGUE
from licensing.model import Severity, finding_id
from licensing.sandbox.catalog import (
    FIRST_NAMES,
    LAST_NAMES,
    ODD_GROUP_NAMES,
    ODD_USER_NAMES,
    ServicePlan,
)

__all__ = [
    "MIN_GROUPS",
    "MIN_USERS",
    "SHAPES",
    "ExpectedFinding",
    "GroupDef",
    "SandboxTenant",
    "SkuState",
    "TenantSpec",
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
# Candidate groups for `licensing-audit plan`, none licensed, appended after the spec's groups (at spec.groups + k),
# so that adding them changed no licensed group and no generated tenant's audit: one per verdict and reason.
PLAN_GROUPS: Final = (
    "plan_ready",  # security group, enabled members with usage locations and no licenses: suitable
    "plan_nested",  # holds a group
    "plan_unified",  # a Microsoft 365 group without securityEnabled
    "plan_dynamic_open",  # dynamic rule that does not restrict user.userType
    "plan_dynamic_members",  # dynamic rule restricted to members: suitable
    "plan_warnings",  # missing usage location, disabled member, a conflicting product
    "plan_dynamic_paused",  # dynamic, restricted to members, processing paused (not licensed: nothing to find)
)
# Users without a usageLocation (they inherit the tenant's when licensed): among those who hold no license.
U_NO_LOCATION = (24, 25)
NO_LOCATION: Final = 255  # the location byte of a user without usageLocation
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
# First characters of the few generic users' UPNs that do not start with a letter (user_names).
ODD_UPN_STARTS: Final = ("2", "_", "'", "!", "#", "^", "~", "0")


def big_candidates(groups: int) -> list[int]:
    """Generic groups that may become big ones: no odd name, not nesting another group."""
    out = []
    for g in range(FIRST_GENERIC + len(ODD_GROUP_NAMES), groups):
        j = g - FIRST_GENERIC
        if j % 3 != 2 and j % 7 != 3:
            out.append(g)
    return out


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
    # False: the SKUs that license group-based licensing (Entra ID P1/P2, Office 365 E3/E5) have no seats beyond
    # those in use, so a tenant whose groups also serve other products is short of them (p1_coverage_short).
    premium_spare: bool = True
    # False: a tenant without Microsoft Entra ID P1/P2, which refuses signInActivity with 403
    # Authentication_RequestFromNonPremiumTenantOrB2CTenant (docs/sandbox.md).
    entra_premium: bool = True

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
        elif self.shape == "realistic" and not 1 <= self.big_groups <= len(big_candidates(self.groups)):
            problems.append(
                f"sandbox big_groups must be between 1 and {len(big_candidates(self.groups))} "
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
    security_enabled: bool = True
    group_types: tuple[str, ...] = ()  # "DynamicMembership" for a dynamic group, "Unified" for a Microsoft 365 group
    membership_rule: str | None = None
    rule_processing: str | None = None  # "On" | "Paused" for dynamic groups

    @property
    def dynamic(self) -> bool:
        return "DynamicMembership" in self.group_types

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
        entry = CATALOGUE.get(self.kind)
        if entry is None:
            raise ValueError(f"unknown finding kind {self.kind!r}")
        return tuple(getattr(self, name) for name in entry.subject)

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
        # (user, sku) -> the servicePlanIds a direct assignment leaves off (user assignLicense; none when absent).
        self.direct_disabled: dict[tuple[int, int], tuple[str, ...]] = {}
        # group -> when its last licence processing completed (the tenant's now then): its members' states date from it.
        self.processed_at: dict[int, datetime] = {}
        self._uids = user_ids
        self._gids = group_ids
        self._ug_offsets = ug_offsets
        self._ug_groups = ug_groups
        self.tenant_id = _Ids(spec.seed, "tenant").make(0)
        self.tenant_name = spec.tenant_name
        slug = "".join(c for c in spec.tenant_name.lower() if c.isalnum())[:20] or "sandbox"
        self.domain = f"{slug}{spec.seed}.onmicrosoft.com"
        # What the audit must find here; generate_tenant fills it in (licensing.sandbox.truth).
        self.ground_truth: tuple[ExpectedFinding, ...] = ()
        # lastUpdatedDateTime of the license states: states in error went wrong up to 14 days before it, each
        # user at its own time (license_error says how long a user waits). The demo moves it to its first night.
        self.states_as_of: datetime = datetime(2024, 3, 1, 9, 30, tzinfo=UTC)
        # The tenant's "now" (generate_tenant's as_of): subscriptions, sign-ins and creation dates are served
        # relative to it, so what the server answers never depends on the day the tests run.
        self.as_of: datetime = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)

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

    def plan_group(self, key: str) -> GroupDef:
        """One of the unlicensed PLAN_GROUPS candidates (after the spec's groups)."""
        return self.groups[self.spec.groups + PLAN_GROUPS.index(key)]

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
        if index >= FIRST_GENERIC_USER:
            # UPNs of real variety (the user resource allows A - Z, a - z, 0 - 9 and ' . - _ ! # ^ ~): a few start with
            # a digit or one of the symbols, some keep upper case. The index stays the last digits before '@' or '_'.
            k = index % 101
            if k < len(ODD_UPN_STARTS):
                local = ODD_UPN_STARTS[k] + local
            elif index % 7 == 3:
                local = f"{first}.{last}{index}"
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

    def state_updated(self, u: int, st: AssignmentState) -> datetime:
        """When the state last changed: deterministic per (user, SKU), hours to days before ``states_as_of``."""
        if not st.error:
            return self.processed_at.get(st.group, self.states_as_of)
        return self.states_as_of - timedelta(hours=(u * 37 + st.sku * 11) % (24 * 14) + 1)

    def sign_in_days_ago(self, u: int) -> int | None:
        """Days since the user's last successful sign-in, before the server's now: inactive users (200 days) and
        never-signed-in ones (None) among the active majority (under 20 days). Deterministic per user."""
        if u % 53 == 7:
            return None
        if u % 11 == 3:
            return 200
        return u % 20

    def no_success_shape(self, u: int) -> str:
        """How a user without a successful sign-in is served (rendering): "null", "attempts" (failed attempts
        only), "placeholder" (0001-01-01) or "empty" (""), in turn. All mean no successful sign-in."""
        return ("null", "attempts", "placeholder", "empty")[(u // 106) % 4]  # new hires and old accounts in each

    def created_recently(self, u: int) -> bool:
        """Half of the never-signed-in users were created 10 days ago (new hires: not inactive); the rest in 2024."""
        return u % 53 == 7 and u % 2 == 0

    def iter_users(self) -> Iterator[int]:
        return iter(range(self.user_count))
