"""``licensing-audit migrate`` (the dry run): which direct assignments of a group's products can go, and why not.

Microsoft's procedure after licensing a group (https://learn.microsoft.com/entra/identity/users/licensing-groups-
migrate-users): check the group's processing and that no assignment failed, check that "the direct and group
licenses enable exactly the same services", then remove the direct assignments gradually, a subset first. Per member
with a direct assignment of a product the group assigns, ``licenseAssignmentStates`` (one state per source, each
with its ``disabledPlans``) decide: safe to remove, would lose services (named), not yet inherited (wait), or kept on
purpose (``direct_assignments`` of the desired state). The comparison of plans is the one behind
``redundant_direct_assignment`` (licensing.rules.reclaim.plans_lost). Nothing here writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Final

from licensing.changes import last_applied
from licensing.configure.desired import DesiredState
from licensing.configure.diff import EXCHANGE_HOLD
from licensing.configure.journal import Journal
from licensing.configure.reprocess import user_label
from licensing.configure.tenant import CurrentGroup, TenantSku, match_sku, read_group, read_skus, read_tenant_id
from licensing.errors import BadRequestError, GraphError
from licensing.graph.candidates import read_candidate
from licensing.graph.client import GraphClient
from licensing.model import LicenseAssignment, User
from licensing.rules.reclaim import plans_lost

__all__ = ["MIGRATE_SCHEMA", "Migration", "MigrationStatus", "Removal", "Verdict", "classify", "plan_migration"]

MIGRATE_SCHEMA: Final = "licensing-migrate/1"
COMPLETE: Final = "ProcessingComplete"


class Verdict(StrEnum):
    SAFE = "safe_to_remove"
    WOULD_LOSE = "would_lose"
    NOT_YET = "not_yet_inherited"
    KEPT = "kept_on_purpose"


class MigrationStatus(StrEnum):
    NOTHING_TO_DO = "nothing_to_do"
    REMOVALS_PENDING = "removals_pending"
    NOTHING_SAFE = "nothing_safe"


@dataclass(frozen=True, slots=True)
class Removal:
    """One member's direct assignment of one of the group's products, and what to do with it."""

    user_id: str
    label: str
    sku_id: str
    part_number: str
    verdict: Verdict
    remove: bool  # removed by --confirm (safe, or would lose with --accept-loss)
    disabled_plans: tuple[str, ...]  # the direct assignment's (servicePlanIds): what rollback restores
    lost: tuple[str, ...] = ()  # plan names the user would lose
    keeps: tuple[str, ...] = ()  # servicePlanIds still enabled through groups (what the wave's check expects)
    reason: str = ""
    warnings: tuple[tuple[str, str], ...] = ()  # (kind, message)
    account_enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class Migration:
    id: str
    tenant_id: str
    group: CurrentGroup
    created: datetime
    accept_loss: bool
    waves: tuple[int | None, ...]  # sizes; None = all the rest
    removals: tuple[Removal, ...]
    skus: Mapping[str, TenantSku]
    notes: tuple[str, ...] = ()

    @property
    def to_remove(self) -> tuple[Removal, ...]:
        return tuple(r for r in self.removals if r.remove)

    @property
    def status(self) -> MigrationStatus:
        if self.to_remove:
            return MigrationStatus.REMOVALS_PENDING
        if any(r.verdict is not Verdict.KEPT for r in self.removals):
            return MigrationStatus.NOTHING_SAFE
        return MigrationStatus.NOTHING_TO_DO

    def wave_users(self) -> list[list[str]]:
        """The users to change, wave by wave (a user's products go together): the first waves small."""
        users = list(dict.fromkeys(r.user_id for r in self.to_remove))
        out: list[list[str]] = []
        sizes = list(self.waves)
        while users:
            size = sizes.pop(0) if len(sizes) > 1 else sizes[0] if sizes else None
            take = len(users) if size is None else size
            out.append(users[:take])
            users = users[take:]
        return out


def parse_waves(text: str) -> tuple[int | None, ...]:
    """``10,100,all``: each a wave size (the last one repeats), ``all`` the rest. BadRequestError names --waves."""
    sizes: list[int | None] = []
    for part in (p.strip().lower() for p in text.split(",")):
        if part == "all":
            sizes.append(None)
            break
        if not part.isdigit() or int(part) < 1:
            raise BadRequestError(f"--waves {text}: each wave is a number of users (1 or more) or 'all'")
        sizes.append(int(part))
    if not sizes or len(sizes) != len([p for p in text.split(",") if p.strip()]):
        raise BadRequestError(f"--waves {text}: 'all' can only be the last wave")
    return tuple(sizes)


def _enabled(sku: TenantSku | None, states: Sequence[LicenseAssignment]) -> set[str]:
    """servicePlanIds some of ``states`` enables (a plan is enabled unless the state lists it disabled)."""
    plans = set(sku.plans) if sku else set()
    return {p for p in plans if any(p not in a.disabled_plans for a in states)}


def _holds_mailbox(user: User, skus: Mapping[str, TenantSku], without: tuple[str, str] | None) -> bool:
    """Whether an Exchange Online plan stays enabled through any assignment but the direct ``(user, sku)``."""
    for a in user.assignments:
        if a.state.casefold() not in ("active", "activewitherror"):
            continue
        if without and a.assigned_by_group is None and a.sku_id == without[1]:
            continue
        sku = skus.get(a.sku_id)
        if sku and any(n.startswith("EXCHANGE_") for p, n in sku.plans.items() if p not in a.disabled_plans):
            return True
    return False


def classify(
    user: User,
    group: CurrentGroup,
    sku: TenantSku,
    skus: Mapping[str, TenantSku],
    *,
    kept: bool,
    accept_loss: bool,
    group_changed: datetime | None,
) -> Removal | None:
    """The verdict on the user's direct assignment of ``sku`` (None when the user has none). Pure."""
    direct = next((a for a in user.assignments if a.sku_id == sku.sku_id and a.assigned_by_group is None), None)
    if direct is None:
        return None
    base = Removal(user.id, user_label(user), sku.sku_id, sku.part_number, Verdict.KEPT, False,
                   direct.disabled_plans, account_enabled=user.account_enabled)  # fmt: skip
    if kept:
        return replace(base, verdict=Verdict.KEPT, remove=False, reason="listed under direct_assignments")
    mine = next((a for a in user.assignments if a.sku_id == sku.sku_id and a.assigned_by_group == group.id), None)
    if group.processing_state != COMPLETE:
        why = f"the group's licence processing is {group.processing_state or 'not started'}: wait"
    elif mine is None:
        why = "no assignment from the group yet: wait (or reprocess the user)"
    elif mine.in_error or mine.state.casefold() != "active":
        why = f"the group's assignment is {mine.state} ({mine.error}): fix it first"
    else:
        why = ""
    if why:
        return replace(base, verdict=Verdict.NOT_YET, remove=False, reason=why)
    inherited = [
        a for a in user.assignments
        if a.sku_id == sku.sku_id and a.assigned_by_group is not None and a.state.casefold() == "active"
    ]  # fmt: skip
    lost = sorted(sku.plan_name(p) for p in plans_lost(direct, inherited) or ())
    keeps = tuple(sorted(_enabled(sku, inherited)))
    warnings: list[tuple[str, str]] = []
    if user.account_enabled is False:
        warnings.append(("disabled_account", "the account is disabled: consider removing its licences instead"))
    if _holds_mailbox(user, skus, None) and not _holds_mailbox(user, skus, (user.id, sku.sku_id)):
        warnings.append(("exchange_data_hold", f'ends with no mailbox licence. Microsoft: "{EXCHANGE_HOLD}"'))
    # lastUpdatedDateTime is served to the second: the change's time is compared at the same precision.
    changed = group_changed.replace(microsecond=0) if group_changed is not None else None
    if changed is not None and mine is not None and mine.last_updated and mine.last_updated < changed:
        warnings.append(("stale_inherited_state",
                         f"the inherited state ({mine.last_updated:%Y-%m-%d %H:%M}) is older than the group's last "
                         f"change ({group_changed:%Y-%m-%d %H:%M}): reprocess the user first"))  # fmt: skip
    if lost:
        return replace(base, verdict=Verdict.WOULD_LOSE, remove=accept_loss, lost=tuple(lost), keeps=keeps,
                       reason=f"would lose {', '.join(lost)}" + ("" if accept_loss else ": kept (--accept-loss)"),
                       warnings=tuple(warnings))  # fmt: skip
    return replace(base, verdict=Verdict.SAFE, remove=True, keeps=keeps, reason="the group enables every service",
                   warnings=tuple(warnings))  # fmt: skip


def _kept(desired: DesiredState | None, skus: Mapping[str, TenantSku], tenant_id: str) -> set[tuple[str, str]]:
    if desired is None:
        return set()
    problems = []
    if desired.tenant != tenant_id:
        problems.append(f"--desired {desired.source}:{desired.tenant_line}: tenant {desired.tenant} is not the tenant "
                        f"signed in to ({tenant_id})")  # fmt: skip
    kept: set[tuple[str, str]] = set()
    for d in desired.direct_assignments:
        sku = match_sku(skus, d.sku)
        if sku is None:
            problems.append(f"--desired {desired.source}:{d.line}: unknown SKU {d.sku!r}")
        else:
            kept.add((d.user, sku.sku_id))
    if problems:
        raise BadRequestError("; ".join(problems))
    return kept


async def plan_migration(
    graph: GraphClient,
    group_id: str,
    sku_refs: Sequence[str],
    *,
    waves: tuple[int | None, ...],
    accept_loss: bool,
    desired: DesiredState | None,
    journal: Journal | None,
    now: datetime,
) -> Migration:
    """Read the group, its members and the SKUs, and classify every direct assignment of its products."""
    tenant_id = await read_tenant_id(graph)
    group = await read_group(graph, group_id.strip().lower())
    if group is None:
        raise BadRequestError(f"--group {group_id}: the tenant has no such group")
    skus = await read_skus(graph)
    assigned = {p.sku_id for p in group.products}
    chosen: list[TenantSku] = []
    for ref in sku_refs:
        sku = match_sku(skus, ref)
        if sku is None or sku.sku_id not in assigned:
            raise BadRequestError(f"--sku {ref}: the group does not assign it")
        chosen.append(sku)
    if not sku_refs:
        chosen = [skus[s] for s in sorted(assigned) if s in skus]
    kept = _kept(desired, skus, tenant_id)
    notes: list[str] = []
    group_changed = None
    if journal is not None:
        last = last_applied(journal.changes(tenant_id))  # the group's own changes (apply, rollback)
        change = last.get(group.id)
        group_changed = (change.finished or change.when) if change else None
    if group_changed is None:
        notes.append("the group's last change is not in the journal: inherited states not compared with it")
    removals: list[Removal] = []
    if chosen:
        candidate = await read_candidate(graph, group.id, [s.sku_id for s in chosen])
        if candidate.unreadable:
            raise GraphError(f"the group's members could not be read: {candidate.unreadable[0].reason}")
        for uid in candidate.group.user_ids:
            user = candidate.members.get(uid)
            for sku in chosen if user is not None else ():
                assert user is not None
                r = classify(user, group, sku, skus, kept=(uid, sku.sku_id) in kept, accept_loss=accept_loss,
                             group_changed=group_changed)  # fmt: skip
                if r is not None:
                    removals.append(r)
    return Migration(str(uuid.uuid4()), tenant_id, group, now, accept_loss, waves, tuple(removals), skus,
                     tuple(notes))  # fmt: skip
