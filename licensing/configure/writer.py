"""``apply --confirm``: per group re-read, journal, one ``assignLicense``, wait, verify; stop at the first surprise.

The call (https://learn.microsoft.com/graph/api/group-assignlicense): ``POST /groups/{id}/assignLicense`` with the
adds and removes together, answered ``202 Accepted``; Entra processes the members in the background, and the group's
``licenseProcessingState`` says when it is done (https://learn.microsoft.com/graph/api/resources/licenseprocessingstate).
The answer's body is never relied on (Microsoft's example is not even valid JSON): the group is read again.

A write whose outcome is unknown (a timeout after sending, a 5xx) is never retried: the group is read again and
the journal says what happened (the group holds ``after``: accepted; ``before``: not carried out; else unknown).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

import orjson

from licensing.changes import ChangeKind, ChangeOutcome, LicenseChange, Product
from licensing.configure.diff import GroupPlan
from licensing.configure.dryrun import DryRun
from licensing.configure.journal import Journal
from licensing.configure.tenant import read_group, read_skus
from licensing.errors import GraphError, GraphOutcomeUnknownError
from licensing.graph.candidates import read_candidate
from licensing.graph.client import GraphClient
from licensing.text import one_line

__all__ = ["ApplyResult", "GroupResult", "apply_confirmed", "assign_body"]

COMPLETE: Final = "ProcessingComplete"


def assign_body(before: Sequence[Product], after: Sequence[Product]) -> dict[str, Any]:
    """The request body, in the shape of Microsoft's examples: ``addLicenses`` (each with ``disabledPlans`` and
    ``skuId``) for new products and products whose disabled plans change (an add replaces them), and
    ``removeLicenses`` (skuIds); both always present, ``[]`` when unused."""
    old = {p.sku_id: p for p in before}
    adds = [p for p in after if old.get(p.sku_id) != p]
    removes = sorted(set(old) - {p.sku_id for p in after})
    return {
        "addLicenses": [{"disabledPlans": list(p.disabled_plans), "skuId": p.sku_id} for p in adds],
        "removeLicenses": removes,
    }


@dataclass(frozen=True, slots=True)
class GroupResult:
    group_id: str
    name: str
    outcome: ChangeOutcome | None  # None: not attempted (stopped before: the tenant changed)
    change_id: str | None
    message: str
    error_users: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplyResult:
    groups: tuple[GroupResult, ...]

    @property
    def ok(self) -> bool:
        return all(g.outcome is ChangeOutcome.VERIFIED for g in self.groups)


@dataclass(frozen=True, slots=True)
class WritePolicy:
    who: str
    polls: int  # how many times the group's processing state is read before giving up (--wait / poll interval)
    poll_s: float
    sleep: Callable[[float], Awaitable[None]]
    now: Callable[[], datetime]
    progress: Callable[[str], None]
    kind: ChangeKind = ChangeKind.APPLY
    rollback_of: str | None = None


async def _post(graph: GraphClient, group_id: str, body: dict[str, Any]) -> None:
    await graph.send(
        "POST",
        f"/groups/{quote(group_id, safe='')}/assignLicense",
        route="/groups/{id}/assignLicense",
        body=orjson.dumps(body),
        what=f"assignLicense on group {group_id}",
        idempotent=False,  # never retried blindly: the re-read decides (module docstring)
    )


async def _verify(graph: GraphClient, plan: GroupPlan) -> tuple[str, ...]:
    """New assignment errors of the group's members (not there before the change), as "user sku: error"."""
    refs = sorted({p.sku_id for p in (*plan.after, *plan.before)})
    candidate = await read_candidate(graph, plan.group_id, refs)
    wanted = {p.sku_id for p in plan.after}
    problems: list[str] = []
    for uid in candidate.group.user_ids:
        user = candidate.members.get(uid)
        if user is None:
            continue
        mine = [a for a in user.assignments if a.assigned_by_group == plan.group_id]
        for sku in sorted(wanted):
            state = next((a for a in mine if a.sku_id == sku), None)
            if state is None:
                problems.append(f"{uid} {sku}: no assignment from the group after processing")
            elif state.error != "None" and (uid, sku, state.error) not in plan.errors_before:
                problems.append(f"{uid} {sku}: {state.error}")
        for a in mine:
            if a.sku_id not in wanted and a.error != "None" and (uid, a.sku_id, a.error) not in plan.errors_before:
                problems.append(f"{uid} {a.sku_id}: {a.error} (the removal failed; the user keeps it)")
    return tuple(problems)


async def _one(graph: GraphClient, run: DryRun, plan: GroupPlan, journal: Journal, policy: WritePolicy) -> GroupResult:
    label = one_line(plan.name) or plan.group_id
    # Re-read the group and the seats: stop if the tenant changed since the dry run in a way that matters.
    now_group = await read_group(graph, plan.group_id)
    if now_group is None:
        return GroupResult(plan.group_id, plan.name, None, None, f"{label}: the group is gone since the dry run")
    if now_group.products != plan.before:
        return GroupResult(
            plan.group_id,
            plan.name,
            None,
            None,
            f"{label}: its licences changed since the dry run; nothing sent (run the dry run again)",
        )
    skus = await read_skus(graph)
    for need in plan.seats:
        sku = skus.get(need.sku_id)
        free = sku.free if sku else 0
        if need.needed > max(free, 0):
            return GroupResult(
                plan.group_id,
                plan.name,
                None,
                None,
                f"{label}: {need.part_number} now has {free} free seats for {need.needed} members; nothing sent",
            )
    change = LicenseChange(
        id=str(uuid.uuid4()),
        tenant_id=run.tenant_id,
        group_id=plan.group_id,
        group_name=plan.name,
        before=plan.before,
        after=plan.after,
        who=policy.who,
        when=policy.now(),
        dry_run_id=run.id,
        kind=policy.kind,
        rollback_of=policy.rollback_of,
    )
    journal.record(change)  # before the call

    def done(outcome: ChangeOutcome, message: str, errors: tuple[str, ...] = ()) -> GroupResult:
        journal.record(replace(change, outcome=outcome, finished=policy.now(), detail=message, error_users=errors))
        return GroupResult(plan.group_id, plan.name, outcome, change.id, f"{label}: {message}", errors)

    try:
        await _post(graph, plan.group_id, assign_body(plan.before, plan.after))
    except GraphOutcomeUnknownError as exc:
        seen = await read_group(graph, plan.group_id)
        products = seen.products if seen is not None else None
        if products == plan.after:
            policy.progress(f"{label}: no answer ({exc}); the re-read shows the change was made")
        elif products == plan.before:
            return done(
                ChangeOutcome.REFUSED,
                f"no answer ({exc}); the re-read shows the group unchanged: not applied, and not retried",
            )
        else:
            return done(
                ChangeOutcome.UNKNOWN,
                f"no answer ({exc}); the group holds neither the old nor the new "
                "licences: look at it before anything else",
            )
    except GraphError as exc:
        return done(ChangeOutcome.REFUSED, f"Graph refused the change: {exc}")
    # Wait, bounded, for the members to be processed.
    state = None
    for attempt in range(max(1, policy.polls)):
        seen = await read_group(graph, plan.group_id)
        state = seen.processing_state if seen is not None else None
        policy.progress(f"{label}: {state or 'no processing state'} ({attempt + 1}/{max(1, policy.polls)})")
        if state == COMPLETE:
            break
        await policy.sleep(policy.poll_s)
    if state != COMPLETE:
        return done(
            ChangeOutcome.APPLIED,
            f"accepted; still {state or 'processing'} after --wait: not verified "
            "(run the same apply again later: nothing pending means it is done)",
        )
    errors = await _verify(graph, plan)
    if errors:
        return done(ChangeOutcome.FAILED, f"processed with {len(errors)} new assignment error(s)", errors)
    return done(ChangeOutcome.VERIFIED, f"verified: {len(plan.members)} members hold what was declared")


async def apply_confirmed(graph: GraphClient, run: DryRun, journal: Journal, policy: WritePolicy) -> ApplyResult:
    """Apply the dry run's changed groups in order; stop at the first one that does not end verified."""
    results: list[GroupResult] = []
    for plan in run.groups:
        if not plan.changed:
            continue
        policy.progress(f"{plan.name or plan.group_id}: applying")
        result = await _one(graph, run, plan, journal, policy)
        results.append(result)
        if result.outcome is not ChangeOutcome.VERIFIED:
            break  # the rest stay untouched
    return ApplyResult(tuple(results))
