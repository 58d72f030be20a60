"""Deterministic generation of a simulated tenant from a TenantSpec: users, groups, SKUs, assignment states.

Every situation the audit looks for is planted at fixed user indices (``U_*`` in
:mod:`licensing.sandbox.tenant`); the rest are generic users spread over the groups.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from array import array
from datetime import UTC, datetime
from typing import Any, Final

from licensing.clock import utcnow
from licensing.sandbox.catalog import (
    ERROR_KINDS,
    ODD_GROUP_NAMES,
    SKU_CATALOG,
    STANDARD_GROUP_NAMES,
    USAGE_LOCATIONS,
    CatalogSku,
    catalog_for,
)
from licensing.sandbox.tenant import (
    DEPARTMENT_SHARE,
    ENABLED,
    EXT_ACCEPTED,
    EXT_PENDING,
    EXT_UPN,
    FIRST_GENERIC,
    FIRST_GENERIC_USER,
    G_BI,
    G_E3,
    G_E5,
    G_EMPTY,
    G_EMS5,
    G_GUESTS,
    G_KIOSK,
    G_NESTED,
    G_PROC,
    G_SHORT,
    GUEST,
    INVITED,
    NO_LOCATION,
    ODD_NAME,
    PLAN_GROUPS,
    PROCESSING_COMPLETE,
    U_B2B,
    U_DIRECT_E5P_MEMBER,
    U_DIRECT_ONLY,
    U_DISABLED,
    U_EMS5,
    U_ERRORS,
    U_GUEST_UNLICENSED,
    U_MULTI,
    U_NESTED_ONLY,
    U_NO_LOCATION,
    U_ODD,
    U_PROCESSING,
    U_REDUNDANT_BI,
    U_REDUNDANT_E3,
    GroupDef,
    SandboxTenant,
    SkuState,
    TenantSpec,
    _Ids,
    big_candidates,
)
from licensing.sandbox.truth import ground_truth

__all__ = ["generate_tenant"]


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


def generate_tenant(spec: TenantSpec, as_of: datetime | None = None) -> SandboxTenant:
    """Generate the tenant for ``spec`` as it stands at ``as_of``: deterministic, seconds for 300,000 users.

    ``as_of`` is the tenant's "now": the server dates subscriptions, sign-ins and account creation from it, never
    from the wall clock, so the tenant and its ground truth are a pure function of (spec, as_of). Tests that
    evaluate at a fixed time pass that time. ``None`` takes the wall clock (to the minute): for the ``sandbox`` and
    ``demo`` commands, and for tests whose pipeline runs on the wall clock too (both then move together).
    """
    spec.validate()
    if as_of is None:
        as_of = utcnow().replace(second=0, microsecond=0)
    elif as_of.tzinfo is None:
        raise ValueError("as_of must be timezone-aware (UTC)")
    n, m = spec.users, spec.groups
    rng = random.Random(spec.seed)
    # SKU slots by their premium part numbers: without P1/P2 the same indices hold catalog.STANDARD_SUBSTITUTES.
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
        big = big_candidates(m)[: spec.big_groups]
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

    for u in U_NO_LOCATION:
        locations[u] = NO_LOCATION
    # Users in several licensed groups appear in order of first membership; keep member lists sorted.
    processing = {G_PROC: "QueuedForProcessing"}
    # Two licensed dynamic groups: the new hires' rule admits anyone (guests included) and Power BI's is paused.
    # Rules are written as admins write them: with and without the hyphen prefix, in any case (Microsoft: operators
    # "can be used with or without the hyphen (-) prefix", groups-dynamic-membership).
    dynamic = {
        G_PROC: ('(user.department eq "New Hires")', "On"),
        G_BI: ('(user.userType eq "Member") and (user.jobTitle eq "Analyst")', "Paused"),
    }
    gids = _Ids(spec.seed, "group")
    groups = []
    for g in range(m):
        name, desc = _group_name(g, rng.randrange(1000))
        name, desc = big_names.get(g, (name, desc))
        if not spec.entra_premium:  # named after the products they assign there
            name, desc = STANDARD_GROUP_NAMES.get(name, (name, desc))
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
                group_types=("DynamicMembership",) if g in dynamic else (),
                membership_rule=dynamic[g][0] if g in dynamic else None,
                rule_processing=dynamic[g][1] if g in dynamic else None,
            )
        )
    groups.extend(_plan_groups(m, gids))

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
    tenant = SandboxTenant(
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
    tenant.as_of = as_of.astimezone(UTC)
    tenant.ground_truth = ground_truth(tenant)
    return tenant


def _plan_groups(first: int, gids: _Ids) -> list[GroupDef]:
    """The unlicensed candidate groups of PLAN_GROUPS, at indices ``first`` on (docs/sandbox.md, "Plan candidates")."""
    ready = array("i", U_NESTED_ONLY)
    specs: dict[str, dict[str, Any]] = {
        "plan_ready": {"name": "SG-Plan-Ready-Sales", "users": ready},
        "plan_nested": {"name": "SG-Plan-Nested", "users": array("i", U_NESTED_ONLY[:2]), "member_groups": (G_NESTED,)},
        "plan_unified": {
            "name": "Project Falcon (Microsoft 365 group)",
            "users": array("i", U_NESTED_ONLY[:2]),
            "security_enabled": False,
            "group_types": ("Unified",),
        },
        "plan_dynamic_open": {
            "name": "SG-Plan-Dynamic-Everyone",
            "users": ready,
            "group_types": ("DynamicMembership",),
            "membership_rule": "(user.accountEnabled -eq true)",
            "rule_processing": "On",
        },
        "plan_dynamic_members": {
            "name": "SG-Plan-Dynamic-Employees",
            "users": ready,
            "group_types": ("DynamicMembership",),
            "membership_rule": 'user.usertype EQ "member" -AND user.department -eq "Sales"',
            "rule_processing": "On",
        },
        "plan_dynamic_paused": {
            "name": "SG-Plan-Dynamic-Paused",
            "users": array("i", U_NESTED_ONLY[2:]),
            "group_types": ("DynamicMembership",),
            "membership_rule": '(user.userType -eq "Member") -and (user.department -eq "Finance")',
            "rule_processing": "Paused",
        },
        "plan_warnings": {
            "name": "SG-Plan-Warnings",
            # no usage location, a disabled account, a user whose licenses conflict, and a plain one
            "users": array("i", sorted((U_NO_LOCATION[0], U_DISABLED[2], U_ERRORS[0], U_NESTED_ONLY[0]))),
        },
    }
    out = []
    for k, key in enumerate(PLAN_GROUPS):
        d = specs[key]
        g = first + k
        out.append(
            GroupDef(
                index=g,
                id=gids.make(g),
                display_name=d["name"],
                sku_indices=(),
                disabled_plans=(),
                processing_state=None,
                users=array("i", d["users"]),
                member_groups=d.get("member_groups", ()),
                devices=0,
                description=f"Plan candidate: {key}",
                security_enabled=d.get("security_enabled", True),
                group_types=d.get("group_types", ()),
                membership_rule=d.get("membership_rule"),
                rule_processing=d.get("rule_processing"),
            )
        )
    return out


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
    catalog = catalog_for(spec.entra_premium)  # without P1/P2: no SKU that carries it (catalog.STANDARD_SUBSTITUTES)
    out: dict[int, SkuState] = {}
    blocked: set[tuple[int, int]] = set()  # (user, group) waiting for a short SKU of that group
    # Short SKUs first: their waiting users are then kept out of the group's other SKUs.
    order_k = sorted(range(len(SKU_CATALOG)), key=lambda k: SKU_CATALOG[k].plan != "shortage")
    for k in order_k:
        cat = catalog[k]
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
        out[k] = _counters(k, cat, consumed, spec.seed, premium_spare=spec.premium_spare)
    return tuple(out[k] for k in range(len(SKU_CATALOG)))


# The catalogue's SKUs that license group-based licensing (an Entra ID P1/P2 plan, or Office 365 E3/E5).
_QUALIFYING: Final = frozenset({"ENTERPRISEPACK", "ENTERPRISEPREMIUM", "SPE_E3", "SPE_E5", "EMS", "EMSPREMIUM"})


def _counters(k: int, cat: CatalogSku, consumed: int, seed: int, *, premium_spare: bool = True) -> SkuState:
    spare = max(10, math.ceil(consumed * 0.2))
    if not premium_spare and cat.part_number in _QUALIFYING:
        spare = 0
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
