"""The dry run of one group: what changes (adds, removes, disabled plans), the seats it needs, the services members
gain and lose, and every ``plan`` blocker for the products it gains. Pure: read data in, a frozen record out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from licensing.changes import Product
from licensing.configure.tenant import TenantSku
from licensing.graph.candidates import GroupCandidate
from licensing.model import User
from licensing.plan import assess
from licensing.text import one_line

__all__ = ["EXCHANGE_HOLD", "ChangeKind", "GroupPlan", "Issue", "ProductChange", "SeatNeed", "plan_group_change"]

# https://learn.microsoft.com/microsoft-365/commerce/licenses/remove-licenses-from-users ("What happens to a user's
# data when you remove their license?"), quoted where a change removes Exchange Online from members.
EXCHANGE_HOLD: Final = (
    "When a license is removed from a user, Exchange Online data that is associated with that account is held for "
    "30 days. After the 30-day grace period, the data is deleted and can't be recovered."
)
_HOLDING: Final = frozenset({"active", "activewitherror"})


class ChangeKind(StrEnum):
    ADD = "add"
    REMOVE = "remove"
    PLANS = "plans"  # the product stays; its disabled plans change


@dataclass(frozen=True, slots=True)
class ProductChange:
    kind: ChangeKind
    sku_id: str
    part_number: str
    enable: tuple[str, ...] = ()  # plan names turned on (PLANS)
    disable: tuple[str, ...] = ()  # plan names turned off (PLANS)


@dataclass(frozen=True, slots=True)
class SeatNeed:
    sku_id: str
    part_number: str
    needed: int  # members who do not already hold it through another group or directly
    free: int

    @property
    def short(self) -> int:
        return max(0, self.needed - max(self.free, 0))


@dataclass(frozen=True, slots=True)
class Issue:
    kind: str  # a plan Blocker/Warning value, or all_or_nothing / exchange_data_hold / max_loss
    message: str
    user_id: str | None = None


@dataclass(frozen=True, slots=True)
class GroupPlan:
    group_id: str
    name: str
    before: tuple[Product, ...]
    after: tuple[Product, ...]
    changes: tuple[ProductChange, ...] = ()
    seats: tuple[SeatNeed, ...] = ()
    gains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # plan name -> user ids
    losses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    blockers: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # user id -> "Name (upn)"
    errors_before: frozenset[tuple[str, str, str]] = frozenset()  # (user, sku, error) before the change
    members: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    @property
    def users_losing(self) -> tuple[str, ...]:
        return tuple(sorted({u for users in self.losses.values() for u in users}))


def _label(user: User) -> str:
    # Tenant strings reach a terminal: controls and invisible characters never do (licensing.text).
    name, upn = one_line(user.display_name), one_line(user.user_principal_name)
    return f"{name} ({upn})" if name and upn and name != upn else (name or upn or user.id)


def _plans(skus: Mapping[str, TenantSku], sku_id: str, disabled: Sequence[str]) -> set[str]:
    sku = skus.get(sku_id)
    return {name for pid, name in sku.plans.items() if pid not in set(disabled)} if sku else set()


def changes_between(
    before: Sequence[Product], after: Sequence[Product], skus: Mapping[str, TenantSku]
) -> list[ProductChange]:
    old = {p.sku_id: p for p in before}
    new = {p.sku_id: p for p in after}
    part = {k: (skus[k].part_number if k in skus else k) for k in old.keys() | new.keys()}
    out = [ProductChange(ChangeKind.ADD, k, part[k]) for k in sorted(new.keys() - old.keys())]
    out += [ProductChange(ChangeKind.REMOVE, k, part[k]) for k in sorted(old.keys() - new.keys())]
    for k in sorted(old.keys() & new.keys()):
        was, will = set(old[k].disabled_plans), set(new[k].disabled_plans)
        if was != will:
            name = skus[k].plan_name if k in skus else str
            out.append(
                ProductChange(
                    ChangeKind.PLANS,
                    k,
                    part[k],
                    enable=tuple(sorted(name(p) for p in was - will)),
                    disable=tuple(sorted(name(p) for p in will - was)),
                )
            )
    return out


def plan_group_change(
    group_id: str,
    name: str,
    before: tuple[Product, ...],
    after: tuple[Product, ...],
    skus: Mapping[str, TenantSku],
    candidate: GroupCandidate | None,
) -> GroupPlan:
    """The dry run of one group. ``candidate`` (the group, its members, the SKUs) is None only when nothing
    changes, so nothing was read."""
    changes = changes_between(before, after, skus)
    if not changes or candidate is None:
        return GroupPlan(group_id, name, before, after, tuple(changes))
    members = [candidate.members[u] for u in candidate.group.user_ids if u in candidate.members]
    old = {p.sku_id for p in before}
    gains: dict[str, set[str]] = {}
    losses: dict[str, set[str]] = {}
    seats: list[SeatNeed] = []
    errors_before: set[tuple[str, str, str]] = set()
    for user in members:
        now: set[str] = set()
        elsewhere: set[str] = set()
        for a in user.assignments:
            if a.error != "None":
                errors_before.add((user.id, a.sku_id, a.error))
            if a.state.casefold() not in _HOLDING:
                continue
            plans = _plans(skus, a.sku_id, a.disabled_plans)
            now |= plans
            if a.assigned_by_group != group_id:
                elsewhere |= plans
        will = elsewhere | {p for prod in after for p in _plans(skus, prod.sku_id, prod.disabled_plans)}
        for plan in will - now:
            gains.setdefault(plan, set()).add(user.id)
        for plan in now - will:
            losses.setdefault(plan, set()).add(user.id)
    for prod in after:
        if prod.sku_id in old:
            continue
        others = sum(
            any(
                a.sku_id == prod.sku_id and a.assigned_by_group != group_id and a.state.casefold() in _HOLDING
                for a in u.assignments
            )
            for u in members
        )
        sku = skus.get(prod.sku_id)
        seats.append(
            SeatNeed(
                prod.sku_id, sku.part_number if sku else prod.sku_id, len(members) - others, sku.free if sku else 0
            )
        )
    blockers: list[Issue] = []
    warnings: list[Issue] = []
    gained = {p.sku_id for p in after} - old
    if gained:
        # Every `plan` blocker for the products the group gains: the same assessment as `licensing-audit plan`.
        verdict = assess(
            dataclasses.replace(candidate, skus=tuple(s for s in candidate.tenant_skus if s.sku_id in gained))
        )
        blockers += [Issue(str(r.kind), r.message, r.user_id) for r in verdict.blockers]
        warnings += [Issue(str(r.kind), r.message, r.user_id) for r in verdict.warnings]
        if len(after) > 1:
            warnings.append(
                Issue(
                    "all_or_nothing",
                    f"the group will carry {len(after)} products: Entra assigns none of them to a member short of "
                    "one of them (a seat, a usage location, a conflicting plan)",
                )
            )
    if any(p.startswith("EXCHANGE_") for p in losses):
        warnings.append(Issue("exchange_data_hold", f'members lose Exchange Online. Microsoft: "{EXCHANGE_HOLD}"'))
    return GroupPlan(
        group_id=group_id,
        name=name,
        before=before,
        after=after,
        changes=tuple(changes),
        seats=tuple(seats),
        gains={p: tuple(sorted(u)) for p, u in sorted(gains.items())},
        losses={p: tuple(sorted(u)) for p, u in sorted(losses.items())},
        blockers=tuple(blockers),
        warnings=tuple(warnings),
        labels={u.id: _label(u) for u in members},
        errors_before=frozenset(errors_before),
        members=tuple(u.id for u in members),
    )
