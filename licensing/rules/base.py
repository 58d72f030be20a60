"""The rule record, the evaluation context, and the one-pass index of a snapshot that every rule reads.

Rules are data plus a pure function (as Maester's tests are): they never do I/O. The expensive
part, walking 300k users and their assignment states, happens once in :func:`build_facts`;
each rule then reads small dictionaries, so no rule costs O(groups x users).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

from licensing.changes import Product
from licensing.kinds import CATALOGUE, KindSpec
from licensing.model import (
    Finding,
    FindingKind,
    LicensedGroup,
    Scope,
    Severity,
    Sku,
    SkuDay,
    TenantSnapshot,
    User,
    finding_id,
)
from licensing.skus import product_name

if TYPE_CHECKING:
    from licensing.settings import Settings

__all__ = [
    "Facts",
    "Rule",
    "RuleContext",
    "RuleResult",
    "build_facts",
    "make_finding",
    "subject_of",
]

NO_ERROR: Final = frozenset({"", "None", "none"})
SERVING_STATES: Final = frozenset({"Active", "ActiveWithError"})
COUNT_VIOLATION: Final = "CountViolation"

_EMPTY_HISTORY: Final[Mapping[str, Sequence[SkuDay]]] = MappingProxyType({})
_EMPTY_SINCE: Final[Mapping[str, datetime]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RuleContext:
    """Thresholds from the settings plus what the store knows (SKU history, processing first seen)."""

    now: datetime
    seat_min_free: int = 5
    seat_min_free_pct: float = 5.0
    forecast_days: int = 30
    processing_stuck_hours: int = 24
    expected_group_skus: tuple[str, ...] = (
        "ENTERPRISEPACK",
        "ENTERPRISEPREMIUM",
        "EMS",
        "EMSPREMIUM",
        "SPE_E3",
        "SPE_E5",
    )
    history: Mapping[str, Sequence[SkuDay]] | None = None  # None: no store, the forecast is not evaluated
    processing_since: Mapping[str, datetime] = field(default_factory=lambda: _EMPTY_SINCE)
    group_drop_pct: float = 20.0
    renewal_warn_days: int = 30
    inactive_days: int = 90
    renewal_watch_skus: tuple[str, ...] = ()
    # Member counts of the licensed groups in the last tenant run the store holds (group id -> members); None: no
    # store, licensed_group_shrank is not evaluated; empty: no earlier run, nothing to compare with.
    previous_members: Mapping[str, int] | None = None
    # The last applied desired state of every group licensing-audit apply manages (the journal in the store, group id
    # -> products); None: no journal, license_drift is not evaluated ("no journal, no drift, no noise").
    applied: Mapping[str, tuple[Product, ...]] | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        now: datetime,
        history: Mapping[str, Sequence[SkuDay]] | None = None,
        processing_since: Mapping[str, datetime] | None = None,
        previous_members: Mapping[str, int] | None = None,
        applied: Mapping[str, tuple[Product, ...]] | None = None,
    ) -> RuleContext:
        return cls(
            now=now,
            seat_min_free=settings.seat_min_free,
            seat_min_free_pct=settings.seat_min_free_pct,
            forecast_days=settings.forecast_days,
            processing_stuck_hours=settings.processing_stuck_hours,
            expected_group_skus=tuple(settings.expected_group_skus),
            history=history,
            processing_since=processing_since if processing_since is not None else _EMPTY_SINCE,
            group_drop_pct=settings.group_drop_pct,
            renewal_warn_days=settings.renewal_warn_days,
            inactive_days=settings.inactive_days,
            renewal_watch_skus=tuple(settings.renewal_watch_skus),
            previous_members=previous_members,
            applied=applied,
        )

    def is_expected(self, sku: Sku) -> bool:
        wanted = {s.casefold() for s in self.expected_group_skus}
        return sku.sku_part_number.casefold() in wanted or sku.sku_id.casefold() in wanted


@dataclass(slots=True)
class RuleResult:
    """What one rule produced.

    ``blocked``: the whole rule could not be evaluated because data was not read (an error of the run).
    ``skipped``: parts not evaluated because their data was not read (also errors of the run).
    ``not_applicable``: the rule does not apply here (scope, no store): not evaluated, but not an error.
    ``note``: a caveat on a rule that ran (e.g. waiting users may be undercounted).
    """

    findings: list[Finding] = field(default_factory=list)
    blocked: str | None = None
    skipped: list[str] = field(default_factory=list)
    not_applicable: str | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One check: its catalogue entry (id, title, default severity, remediation) and its evaluator."""

    spec: KindSpec
    evaluate: Callable[[Facts, RuleContext], RuleResult]

    @property
    def id(self) -> str:
        return self.spec.kind.value

    @property
    def title(self) -> str:
        return self.spec.title

    @property
    def severity(self) -> Severity:
        """The default severity of the rule's findings (make_finding uses it unless told otherwise)."""
        return self.spec.severity

    @property
    def remediation(self) -> str:
        return self.spec.remediation


@dataclass(slots=True)
class Facts:
    """A snapshot indexed once, restricted to the audit's scope."""

    snapshot: TenantSnapshot
    scope: Scope
    skus: tuple[Sku, ...]  # the SKUs in scope (User and Company)
    groups: tuple[LicensedGroup, ...]  # the licensed groups in scope
    scope_sku_ids: frozenset[str] | None  # SKU scope: the SKU(s) it resolved to
    scope_group_id: str | None
    skus_unreadable: str | None = None
    groups_unreadable: str | None = None
    users_unreadable: str | None = None
    unreadable_members: dict[str, str] = field(default_factory=dict)  # group id -> reason
    b2b: set[str] = field(default_factory=set)
    waiting: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    group_assigned: defaultdict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    errors_by_group: defaultdict[str, list[tuple[str, str, str]]] = field(default_factory=lambda: defaultdict(list))
    disabled_by_group: defaultdict[str, dict[str, None]] = field(default_factory=lambda: defaultdict(dict))
    redundant: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # user, sku, groups
    # (user, group, sku) -> the SKU of the same group that is really short: "If Microsoft Entra ID can't assign
    # one of the products [of a group] ... it won't assign the other licenses in the group either"
    # (https://learn.microsoft.com/entra/identity/users/licensing-groups-resolve-problems).
    blocked_by: dict[tuple[str, str, str], str] = field(default_factory=dict)
    unscanned_users: dict[str, str] = field(default_factory=dict)  # members the users scan did not return
    group_names: dict[str, str] = field(default_factory=dict)
    sku_index: dict[str, Sku] = field(default_factory=dict)  # every SKU of the snapshot, by id

    # ------------------------------------------------------------ helpers for rules and messages

    @property
    def users(self) -> Mapping[str, User]:
        return self.snapshot.users

    def sku_in_scope(self, sku_id: str) -> bool:
        return self.scope_sku_ids is None or sku_id in self.scope_sku_ids

    def part_number(self, sku_id: str) -> str | None:
        sku = self.sku_index.get(sku_id)
        return sku.sku_part_number if sku else None

    def product(self, sku_id: str) -> str:
        return product_name(self.part_number(sku_id), sku_id)

    def group_name(self, group_id: str) -> str:
        return self.group_names.get(group_id) or group_id

    def user_label(self, user_id: str) -> str:
        """How a message names a user: "Display Name (upn)", or whichever is known."""
        user = self.users.get(user_id)
        if user is None:
            return user_id
        name, upn = user.display_name.strip(), user.user_principal_name.strip()
        if name and upn and name != upn:
            return f"{name} ({upn})"
        return name or upn or user_id

    def user_name(self, user_id: str) -> str:
        user = self.users.get(user_id)
        if user is None:
            return user_id
        return user.display_name.strip() or user.user_principal_name.strip() or user_id


def make_finding(
    kind: FindingKind,
    message: str,
    facts: Facts,
    *,
    severity: Severity | None = None,
    since: datetime | None = None,
    **fields: str | None,
) -> Finding:
    """A finding with its stable id from the kind's subject, its kind's default severity unless ``severity``
    says otherwise, and the display names filled in."""
    entry = CATALOGUE[kind]
    severity = severity or entry.severity
    subject = tuple(fields.get(name) for name in entry.subject)
    sku_id = fields.get("sku_id")
    group_id = fields.get("group_id")
    user_id = fields.get("user_id")
    member_group_id = fields.get("member_group_id")
    return Finding(
        id=finding_id(kind.value, *subject),
        kind=kind.value,
        severity=severity,
        message=message,
        sku_id=sku_id,
        sku_part_number=facts.part_number(sku_id) if sku_id else None,
        group_id=group_id,
        user_id=user_id,
        member_group_id=member_group_id,
        error=fields.get("error"),
        group_name=facts.group_name(group_id) if group_id else None,
        user_name=facts.user_name(user_id) if user_id else None,
        member_group_name=facts.group_name(member_group_id) if member_group_id else None,
        product_name=facts.product(sku_id) if sku_id else None,
        since=since,
    )


def subject_of(finding: Finding) -> tuple[str, ...]:
    """The subject tuple of a finding (``None`` parts as ""), for sorting and for checking ids."""
    entry = CATALOGUE.get(finding.kind)
    return tuple(getattr(finding, name) or "" for name in (entry.subject if entry else ()))


# ---------------------------------------------------------------- the one pass


def _resolve_scope(snapshot: TenantSnapshot) -> tuple[frozenset[str] | None, str | None]:
    if snapshot.scope is Scope.SKU:
        wanted = (snapshot.scope_id or "").casefold()
        ids = frozenset(
            s.sku_id for s in snapshot.skus if wanted in (s.sku_id.casefold(), s.sku_part_number.casefold())
        )
        # SKUs unreadable or not owned: the scope id is all we know (a skuId, normally).
        return (ids or frozenset({snapshot.scope_id or ""})), None
    if snapshot.scope is Scope.GROUP:
        return None, snapshot.scope_id
    return None, None


def build_facts(snapshot: TenantSnapshot) -> Facts:
    """Index the snapshot in one pass over users (and one over memberships), restricted to its scope."""
    scope_sku_ids, scope_group_id = _resolve_scope(snapshot)

    if snapshot.scope is Scope.GROUP:
        groups = tuple(g for g in snapshot.groups if g.id == scope_group_id)
        assigned = {sku_id for g in groups for sku_id in g.sku_ids}
        skus = tuple(s for s in snapshot.skus if s.sku_id in assigned)
    elif scope_sku_ids is not None:
        groups = tuple(g for g in snapshot.groups if scope_sku_ids.intersection(g.sku_ids))
        skus = tuple(s for s in snapshot.skus if s.sku_id in scope_sku_ids)
    else:
        groups = snapshot.groups
        skus = snapshot.skus

    facts = Facts(
        snapshot=snapshot,
        scope=snapshot.scope,
        skus=skus,
        groups=groups,
        scope_sku_ids=scope_sku_ids,
        scope_group_id=scope_group_id,
        sku_index={s.sku_id: s for s in snapshot.skus},
    )
    for part in snapshot.unreadable:
        reason = part.reason + (f" (missing permission {part.permission})" if part.permission else "")
        if part.what == "skus":
            facts.skus_unreadable = reason
        elif part.what == "groups":
            facts.groups_unreadable = reason
        elif part.what == "users" and not part.subject_id:
            facts.users_unreadable = reason
        elif part.what in ("members", "group") and part.subject_id:
            facts.unreadable_members[part.subject_id] = reason
        elif part.what == "user" and part.subject_id:
            facts.unscanned_users[part.subject_id] = reason
    for group in snapshot.groups:
        facts.group_names[group.id] = group.display_name
        for ref in group.member_groups:
            facts.group_names.setdefault(ref.id, ref.display_name)
        if not group.members_read and group.id not in facts.unreadable_members:
            facts.unreadable_members[group.id] = "members could not be read"

    _index_users(facts)
    return facts


def _index_users(facts: Facts) -> None:
    b2b, group_assigned = facts.b2b, facts.group_assigned
    errors_by_group, disabled_by_group, redundant = facts.errors_by_group, facts.disabled_by_group, facts.redundant
    only_group = facts.scope_group_id
    only_skus = facts.scope_sku_ids
    # sku -> (user, group) waiting with CountViolation; (user, group) -> the SKUs it waits for
    waiting_by: defaultdict[str, set[tuple[str, str | None]]] = defaultdict(set)
    counted: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for uid, user in facts.snapshot.users.items():
        if user.is_b2b:
            b2b.add(uid)
        if not user.assignments:
            continue
        disabled = user.account_enabled is False
        direct: set[str] | None = None
        active_from: dict[str, list[str]] | None = None
        for a in user.assignments:
            sku_id = a.sku_id
            group_id = a.assigned_by_group
            if a.error == COUNT_VIOLATION:
                waiting_by[sku_id].add((uid, group_id))
                if group_id is not None:
                    counted[(uid, group_id)].append(sku_id)
            if group_id is None:
                if direct is None:
                    direct = set()
                direct.add(sku_id)
                continue
            if a.state in SERVING_STATES:
                group_assigned[sku_id].add(uid)
                if disabled:
                    disabled_by_group[group_id][uid] = None
            if a.state == "Active" and (only_group is None or group_id == only_group):
                if active_from is None:
                    active_from = {}
                active_from.setdefault(sku_id, []).append(group_id)
            if a.error not in NO_ERROR:
                errors_by_group[group_id].append((uid, sku_id, a.error))
        if direct and active_from:
            for sku_id in sorted(direct.intersection(active_from)):
                if only_skus is None or sku_id in only_skus:
                    redundant.append((uid, sku_id, tuple(sorted(set(active_from[sku_id])))))
    _attribute_all_or_nothing(facts, counted)
    blocked = facts.blocked_by
    for sku_id, pairs in waiting_by.items():
        waiting = {uid for uid, gid in pairs if gid is None or (uid, gid, sku_id) not in blocked}
        if waiting:
            facts.waiting[sku_id] = waiting


def _attribute_all_or_nothing(facts: Facts, counted: Mapping[tuple[str, str], list[str]]) -> None:
    """A user waiting for several SKUs of one group waits for the short ones only; the others are blocked by it."""
    index = facts.sku_index

    def short(sku_id: str) -> bool:
        sku = index.get(sku_id)
        return sku is None or sku.available <= 0 or sku.in_lifecycle_only

    for (uid, gid), skus in counted.items():
        if len(skus) < 2:
            continue
        causes = sorted(s for s in skus if short(s))
        if not causes or len(causes) == len(skus):
            continue
        for sku_id in skus:
            if sku_id not in causes:
                facts.blocked_by[(uid, gid, sku_id)] = causes[0]


def as_utc(value: datetime) -> datetime:
    """Naive datetimes are UTC (the store and Graph speak UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def plural(count: int, word: str, many: str | None = None) -> str:
    return f"{count} {word if count == 1 else (many or word + 's')}"


def quote(name: str) -> str:
    return f"'{name}'"


def history_or_empty(ctx: RuleContext) -> Mapping[str, Sequence[SkuDay]]:
    return ctx.history if ctx.history is not None else _EMPTY_HISTORY
