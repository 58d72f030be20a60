"""The journal's records: one change to a group's licences (before, after, who, when, outcome), and what it left.

Written by the writing wing (licensing/configure) before and after each ``assignLicense`` call, kept in the
``LicenseChanges`` table or a local journal file; read by the nightly audit only to compare the managed groups
with the last applied desired state (``license_drift``). It imports nothing of ours but the converter, so the
store, the rules and the writer can share it without the reader ever importing the writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from licensing.convert import from_plain, to_plain

__all__ = [
    "ChangeKind",
    "ChangeOutcome",
    "LicenseChange",
    "Product",
    "change_from_plain",
    "change_to_plain",
    "last_applied",
]


class ChangeOutcome(StrEnum):
    """Where a change stands. Written ``pending`` before the call, then one of the others after it."""

    PENDING = "pending"  # journalled, the call not answered yet (a crash leaves it so: re-read decides)
    VERIFIED = "verified"  # accepted, processed, members hold what was declared, no new assignment error
    FAILED = "failed"  # accepted and processed, with new assignment errors (error_users say who and why)
    APPLIED = "applied"  # accepted; processing had not finished within --wait (not verified)
    REFUSED = "refused"  # Graph answered an error: nothing changed
    UNKNOWN = "unknown"  # no answer and the re-read matched neither before nor after: an admin must look

    @property
    def accepted(self) -> bool:
        """Graph changed the group's assignment (the group holds ``after``)."""
        return self in (ChangeOutcome.VERIFIED, ChangeOutcome.FAILED, ChangeOutcome.APPLIED)


class ChangeKind(StrEnum):
    APPLY = "apply"
    ROLLBACK = "rollback"
    REPROCESS = "reprocess"  # one user's group assignments reprocessed: the group's assignment is unchanged
    MIGRATE = "migrate"  # one user's direct assignments removed (migrate): before = them, after = none


@dataclass(frozen=True, slots=True)
class Product:
    """One product on a group: the skuId and the servicePlanIds it leaves off (lowercase, sorted)."""

    sku_id: str
    disabled_plans: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LicenseChange:
    id: str
    tenant_id: str
    group_id: str
    group_name: str
    before: tuple[Product, ...]
    after: tuple[Product, ...]
    who: str  # the signed-in identity from the token (upn/oid claims), never a typed name
    when: datetime
    dry_run_id: str
    outcome: ChangeOutcome = ChangeOutcome.PENDING
    kind: ChangeKind = ChangeKind.APPLY
    error_users: tuple[str, ...] = ()  # "<user id> <skuId>: <error>" for each new assignment error
    finished: datetime | None = None
    detail: str = ""
    rollback_of: str | None = None  # the change a rollback restores
    user_id: str | None = None  # reprocess, migrate (and its rollback): the user


def change_to_plain(change: LicenseChange) -> dict[str, Any]:
    plain: dict[str, Any] = to_plain(change)
    return plain


def change_from_plain(data: Mapping[str, Any]) -> LicenseChange:
    return from_plain(LicenseChange, dict(data))


def last_applied(changes: Iterable[LicenseChange]) -> dict[str, LicenseChange]:
    """Per group, the last change Graph accepted (by time, then id): the group's last applied desired state."""
    out: dict[str, LicenseChange] = {}
    for change in sorted(changes, key=lambda c: (c.finished or c.when, c.id)):
        # A rollback of a migration (user_id set) restored a user's direct assignment, not the group's.
        if change.outcome.accepted and change.kind in (ChangeKind.APPLY, ChangeKind.ROLLBACK) and not change.user_id:
            out[change.group_id] = change
    return out
