"""``licensing-audit rollback CHANGE_ID``: the group's assignment before that change, as a one-group desired state
that the same dry run and writer then handle (re-read, journal, verify; journalled as a rollback)."""

from __future__ import annotations

from licensing.configure.desired import DesiredGroup, DesiredLicense, DesiredState
from licensing.configure.journal import Journal
from licensing.errors import BadRequestError

__all__ = ["desired_before"]


def desired_before(journal: Journal, change_id: str) -> DesiredState:
    """The desired state that restores ``before`` of the change; BadRequestError when there is nothing to restore."""
    change = journal.find(change_id.strip())
    if change is None:
        raise BadRequestError(f"CHANGE_ID {change_id}: no such change in {journal.where}")
    if not change.outcome.accepted:
        raise BadRequestError(
            f"CHANGE_ID {change_id}: its outcome is {change.outcome.value}: Graph did not apply it, nothing to restore"
        )
    source = f"rollback of {change.id}"
    licenses = tuple(DesiredLicense(p.sku_id, p.disabled_plans, 0) for p in change.before)
    return DesiredState(
        tenant=change.tenant_id,
        tenant_line=0,
        groups=(DesiredGroup(change.group_id, change.group_name, licenses, 0),),
        source=source,
    )
