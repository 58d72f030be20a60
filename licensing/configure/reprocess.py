"""``licensing-audit reprocess``: the users waiting in an assignment error, reprocessed one by one, rate bounded.

``POST /users/{id}/reprocessLicenseAssignment`` "Reprocess[es] all group-based license assignments for the user"
(https://learn.microsoft.com/graph/api/user-reprocesslicenseassignment; no body, 200 with the user): after seats
were bought, the users in ``CountViolation`` get their licences without anyone touching the group. Each call is
journalled before and after; the users are read again afterwards and reported before -> after.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final
from urllib.parse import quote

from licensing.changes import ChangeKind, ChangeOutcome, LicenseChange
from licensing.configure.journal import Journal
from licensing.configure.tenant import read_group, read_tenant_id
from licensing.configure.writer import WritePolicy
from licensing.errors import BadRequestError, GraphError, GraphNotFoundError, GraphOutcomeUnknownError
from licensing.graph.candidates import read_candidate
from licensing.graph.client import GraphClient, query
from licensing.graph.parse import parse_user
from licensing.model import User
from licensing.text import one_line

__all__ = ["ERRORS", "Waiting", "find_waiting", "read_user", "reprocess_confirmed", "user_label"]

# https://learn.microsoft.com/graph/api/resources/licenseassignmentstate (error values)
ERRORS: Final = ("CountViolation", "MutuallyExclusiveViolation", "DependencyViolation",
                 "ProhibitedInUsageLocationViolation", "UniquenessViolation", "Other")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Waiting:
    user_id: str
    label: str
    errors: tuple[tuple[str, str, str], ...]  # (group id, sku id, error)

    def describe(self) -> str:
        return ", ".join(f"{sku} {err}" for _, sku, err in self.errors) or "no error"


def user_label(user: User) -> str:
    """``Name (upn)``, one clean line each (tenant strings)."""
    name, upn = one_line(user.display_name), one_line(user.user_principal_name)
    return f"{name} ({upn})" if name and upn and name != upn else (name or upn or user.id)


def _errors(user: User, group: str | None, kinds: frozenset[str]) -> tuple[tuple[str, str, str], ...]:
    return tuple(
        sorted(
            (a.assigned_by_group or "", a.sku_id, a.error)
            for a in user.assignments
            if a.assigned_by_group and a.error in kinds and (group is None or a.assigned_by_group == group)
        )
    )


async def read_user(graph: GraphClient, user_id: str) -> User | None:
    """One user with its licence states; None when the tenant has no such user (404)."""
    path = f"/users/{quote(user_id, safe='@')}?" + query(
        {"$select": "id,displayName,userPrincipalName,accountEnabled,licenseAssignmentStates"}
    )
    try:
        return parse_user(await graph.get_json(path, route="/users/{id}", what=f"user {user_id}"))
    except GraphNotFoundError:
        return None


def error_kinds(wanted: Sequence[str]) -> frozenset[str]:
    """``--error`` values, canonical; all of them when none is given."""
    canon = {e.lower(): e for e in ERRORS}
    bad = [w for w in wanted if w.strip().lower() not in canon]
    if bad:
        raise BadRequestError(f"--error {', '.join(bad)}: not an assignment error (one of {', '.join(ERRORS)})")
    return frozenset(canon[w.strip().lower()] for w in wanted) if wanted else frozenset(ERRORS)


async def find_waiting(
    graph: GraphClient, *, group: str | None, users: Sequence[str], kinds: frozenset[str]
) -> tuple[str, list[Waiting]]:
    """The tenant id and the users in one of ``kinds``: the group's members (its own assignments only), or the
    users named. BadRequestError for a group or user the tenant lacks."""
    tenant_id = await read_tenant_id(graph)
    found: list[Waiting] = []
    if group is not None:
        current = await read_group(graph, group.lower())
        if current is None:
            raise BadRequestError(f"--group {group}: the tenant has no such group")
        if not current.products:
            return tenant_id, []
        candidate = await read_candidate(graph, current.id, [p.sku_id for p in current.products])
        members = [candidate.members[u] for u in candidate.group.user_ids if u in candidate.members]
        gid: str | None = current.id
    else:
        members = []
        for uid in users:
            user = await read_user(graph, uid.strip())
            if user is None:
                raise BadRequestError(f"--user {uid}: the tenant has no such user")
            members.append(user)
        gid = None
    for user in members:
        errors = _errors(user, gid, kinds)
        if errors:
            found.append(Waiting(user.id, user_label(user), errors))
    return tenant_id, found


@dataclass(frozen=True, slots=True)
class Reprocessed:
    user: Waiting
    outcome: ChangeOutcome
    after: str
    change_id: str


async def reprocess_confirmed(
    graph: GraphClient,
    tenant_id: str,
    waiting: Sequence[Waiting],
    journal: Journal,
    policy: WritePolicy,
    *,
    kinds: frozenset[str],
    group: str | None,
    pause_s: float,
) -> list[Reprocessed]:
    """Reprocess each user (``pause_s`` between calls: rate bounded), then read them again until their errors are
    gone or ``policy.polls`` reads have passed; journal each before and after. Stops at the first refusal."""
    run_id = str(uuid.uuid4())
    sent: list[tuple[Waiting, LicenseChange]] = []
    results: list[Reprocessed] = []
    for w in waiting:
        change = LicenseChange(
            id=str(uuid.uuid4()), tenant_id=tenant_id, group_id=group or "", group_name="", before=(), after=(),
            who=policy.who, when=policy.now(), dry_run_id=run_id, kind=ChangeKind.REPROCESS, user_id=w.user_id,
            detail=f"before: {w.describe()}",
        )  # fmt: skip
        journal.record(change)
        try:
            await graph.send(
                "POST", f"/users/{quote(w.user_id, safe='')}/reprocessLicenseAssignment",
                route="/users/{id}/reprocessLicenseAssignment", what=f"reprocessing {w.label}", idempotent=False,
            )  # fmt: skip
        except GraphOutcomeUnknownError as exc:
            policy.progress(f"{w.label}: no answer ({exc}); the re-read below decides, it is not sent again")
        except GraphError as exc:
            journal.record(replace(change, outcome=ChangeOutcome.REFUSED, finished=policy.now(), detail=str(exc)))
            results.append(Reprocessed(w, ChangeOutcome.REFUSED, str(exc), change.id))
            return results
        sent.append((w, change))
        policy.progress(f"{w.label}: reprocessing requested")
        await policy.sleep(pause_s)
    remaining = {w.user_id: (w, c) for w, c in sent}
    for attempt in range(max(1, policy.polls)):
        for uid in list(remaining):
            w, change = remaining[uid]
            user = await read_user(graph, uid)
            now = _errors(user, group, kinds) if user is not None else ()
            if not now:
                after = "no error"
                journal.record(replace(change, outcome=ChangeOutcome.VERIFIED, finished=policy.now(),
                                       detail=f"{change.detail}; after: {after}"))  # fmt: skip
                results.append(Reprocessed(w, ChangeOutcome.VERIFIED, after, change.id))
                del remaining[uid]
            elif attempt == max(1, policy.polls) - 1:
                after = Waiting(uid, w.label, now).describe()
                journal.record(replace(change, outcome=ChangeOutcome.FAILED, finished=policy.now(),
                                       detail=f"{change.detail}; after: {after}",
                                       error_users=tuple(f"{uid} {s}: {e}" for _, s, e in now)))  # fmt: skip
                results.append(Reprocessed(w, ChangeOutcome.FAILED, after, change.id))
        if not remaining:
            break
        if attempt < max(1, policy.polls) - 1:
            await policy.sleep(policy.poll_s)
    return results
