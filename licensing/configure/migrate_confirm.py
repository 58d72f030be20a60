"""``migrate --confirm`` and the rollback of a migration: direct assignments removed (or re-added) user by user.

The call is ``POST /users/{id}/assignLicense`` (https://learn.microsoft.com/graph/api/user-assignlicense) with
``removeLicenses`` (skuIds) and ``addLicenses: []``, answered ``200 OK`` with the user; a rollback sends
``addLicenses`` with the former ``disabledPlans``. Waves, the first small: before each user the user is read again
(still a member, still holding the product through the group); each removal is journalled before and after (kind
``migrate``); after each wave every user of the wave is read again and must still hold each product through the
group, Active, with no error and every service expected. The first problem stops everything after it. A lost
answer is never retried: the user is read again and the journal says what happened.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import quote

import orjson

from licensing.changes import ChangeKind, ChangeOutcome, LicenseChange, Product
from licensing.configure.journal import Journal
from licensing.configure.migrate import Migration, Removal
from licensing.configure.reprocess import read_user
from licensing.configure.writer import WritePolicy, assign_body
from licensing.errors import BadRequestError, GraphError, GraphOutcomeUnknownError
from licensing.graph.client import GraphClient
from licensing.model import User

__all__ = ["Done", "migrate_confirmed", "migration_changes", "restore_confirmed"]

_HOLDING: Final = frozenset({"active"})


@dataclass(frozen=True, slots=True)
class Done:
    """What happened to one user: outcome, the change id, and the problem that stopped the run (if any)."""

    user_id: str
    label: str
    outcome: ChangeOutcome
    change_id: str
    wave: int
    problem: str = ""


async def _post(graph: GraphClient, user_id: str, body: dict[str, object], label: str) -> None:
    await graph.send(
        "POST", f"/users/{quote(user_id, safe='')}/assignLicense", route="/users/{id}/assignLicense",
        body=orjson.dumps(body), what=f"assignLicense on {label}", idempotent=False,  # the re-read decides
    )  # fmt: skip


def _direct(user: User | None, sku_id: str) -> tuple[str, ...] | None:
    """The disabled plans of the user's direct assignment of ``sku_id``; None when there is none."""
    if user is None:
        return None
    a = next((a for a in user.assignments if a.sku_id == sku_id and a.assigned_by_group is None), None)
    return None if a is None else a.disabled_plans


def check_inherited(user: User | None, group_id: str, r: Removal) -> str:
    """Empty when the user holds ``r``'s product through the group, Active, no error, every expected service on;
    otherwise what is wrong (the wave's check)."""
    if user is None:
        return "the user is gone"
    mine = next((a for a in user.assignments if a.sku_id == r.sku_id and a.assigned_by_group == group_id), None)
    if mine is None:
        return f"holds no {r.part_number} through the group"
    if mine.in_error or mine.state.casefold() not in _HOLDING:
        return f"{r.part_number} through the group is {mine.state} ({mine.error})"
    groups = [a for a in user.assignments if a.sku_id == r.sku_id and a.assigned_by_group and not a.in_error]
    off = [p for p in r.keeps if all(p in a.disabled_plans for a in groups)]
    return f"{r.part_number}: {len(off)} service(s) no longer enabled" if off else ""


async def migrate_confirmed(
    graph: GraphClient, run: Migration, journal: Journal, policy: WritePolicy
) -> tuple[list[Done], str]:
    """Remove the direct assignments wave by wave; ([per user], the problem that stopped it or "")."""
    gid = run.group.id
    by_user: dict[str, list[Removal]] = {}
    for r in run.to_remove:
        by_user.setdefault(r.user_id, []).append(r)
    done: list[Done] = []
    for n, users in enumerate(run.wave_users(), start=1):
        policy.progress(f"wave {n}: {len(users)} user(s)")
        wave: list[tuple[str, LicenseChange]] = []
        for uid in users:
            rs = by_user[uid]
            label = rs[0].label
            now_user = await read_user(graph, uid)
            # Never touch a user outside the group, nor a licence the group does not assign: re-read first.
            why = "; ".join(x for r in rs if (x := check_inherited(now_user, gid, r)))
            if why:
                return done, f"{label}: changed since the dry run ({why}); nothing sent, the rest untouched"
            current = {r.sku_id: _direct(now_user, r.sku_id) for r in rs}
            rs = [r for r in rs if current[r.sku_id] is not None]
            if not rs:
                continue
            before = tuple(Product(r.sku_id, current[r.sku_id] or ()) for r in rs)
            change = LicenseChange(
                id=str(uuid.uuid4()), tenant_id=run.tenant_id, group_id=gid, group_name=run.group.name,
                before=before, after=(), who=policy.who, when=policy.now(), dry_run_id=run.id,
                kind=ChangeKind.MIGRATE, user_id=uid, detail=f"wave {n}",
            )  # fmt: skip
            journal.record(change)  # before the call
            try:
                await _post(graph, uid, assign_body(before, ()), label)
            except GraphOutcomeUnknownError as exc:
                seen = await read_user(graph, uid)
                if any(_direct(seen, p.sku_id) is not None for p in before):
                    msg = f"no answer ({exc}); the re-read shows the direct assignment still there: not retried"
                    journal.record(replace(change, outcome=ChangeOutcome.REFUSED, finished=policy.now(), detail=msg))
                    done.append(Done(uid, label, ChangeOutcome.REFUSED, change.id, n, msg))
                    return done, f"{label}: {msg}"
                policy.progress(f"{label}: no answer ({exc}); the re-read shows it removed")
            except GraphError as exc:
                msg = f"Graph refused the removal: {exc}"
                journal.record(replace(change, outcome=ChangeOutcome.REFUSED, finished=policy.now(), detail=msg))
                done.append(Done(uid, label, ChangeOutcome.REFUSED, change.id, n, msg))
                return done, f"{label}: {msg}"
            wave.append((uid, change))
            await policy.sleep(0)
        # After the wave: every user of it still holds each product through the group, as expected.
        problem = ""
        for uid, change in wave:
            rs = by_user[uid]
            user = await read_user(graph, uid)
            wrong = "; ".join(x for r in rs if (x := check_inherited(user, gid, r)))
            outcome = ChangeOutcome.FAILED if wrong else ChangeOutcome.VERIFIED
            detail = f"wave {n}: " + (wrong or "holds it through the group with the same services")
            journal.record(replace(change, outcome=outcome, finished=policy.now(), detail=detail))
            done.append(Done(uid, rs[0].label, outcome, change.id, n, wrong))
            if wrong and not problem:
                problem = f"wave {n}: {rs[0].label}: {wrong}; the later waves are not started"
        if problem:
            return done, problem
    return done, ""


def migration_changes(journal: Journal, change_id: str, tenant_id: str) -> list[LicenseChange] | None:
    """The removals a rollback restores: one (a removal's change id) or all of a migration (its migration id);
    None when ``change_id`` is neither (then it is a group's change: the apply rollback)."""
    ref = change_id.strip()
    one = journal.find(ref)
    if one is not None and one.kind is not ChangeKind.MIGRATE:
        return None
    found = [one] if one is not None else [
        c for c in journal.changes(tenant_id) if c.dry_run_id == ref and c.kind is ChangeKind.MIGRATE
    ]  # fmt: skip
    if one is None and not found:
        return None
    # A pending record (a crash mid-call) is included: the re-read before re-adding decides.
    found = [c for c in found if c.outcome.accepted or c.outcome is ChangeOutcome.PENDING]
    if not found:
        raise BadRequestError(f"CHANGE_ID {change_id}: Graph removed nothing in it: nothing to restore")
    return found


async def restore_confirmed(
    graph: GraphClient, changes: Sequence[LicenseChange], journal: Journal, policy: WritePolicy
) -> tuple[list[Done], str]:
    """Re-add each removed direct assignment with its former disabled plans (journalled as a rollback)."""
    done: list[Done] = []
    for c in changes:
        assert c.user_id is not None
        user = await read_user(graph, c.user_id)
        missing = tuple(p for p in c.before if _direct(user, p.sku_id) != p.disabled_plans)
        if not missing:
            continue
        change = replace(c, id=str(uuid.uuid4()), before=(), after=missing, who=policy.who, when=policy.now(),
                         kind=ChangeKind.ROLLBACK, rollback_of=c.id, outcome=ChangeOutcome.PENDING, finished=None,
                         detail="")  # fmt: skip
        journal.record(change)
        try:
            await _post(graph, c.user_id, assign_body((), missing), c.user_id)
        except GraphOutcomeUnknownError as exc:
            policy.progress(f"{c.user_id}: no answer ({exc}); the re-read decides")
        except GraphError as exc:
            msg = f"Graph refused: {exc}"
            journal.record(replace(change, outcome=ChangeOutcome.REFUSED, finished=policy.now(), detail=msg))
            done.append(Done(c.user_id, c.user_id, ChangeOutcome.REFUSED, change.id, 0, msg))
            return done, msg
        seen = await read_user(graph, c.user_id)
        wrong = [p.sku_id for p in missing if _direct(seen, p.sku_id) != p.disabled_plans]
        outcome = ChangeOutcome.FAILED if wrong else ChangeOutcome.VERIFIED
        detail = f"not restored: {', '.join(wrong)}" if wrong else "direct assignment restored"
        journal.record(replace(change, outcome=outcome, finished=policy.now(), detail=detail))
        done.append(Done(c.user_id, c.user_id, outcome, change.id, 0, detail if wrong else ""))
        if wrong:
            return done, f"{c.user_id}: {detail}"
    return done, ""
