"""The small tables beside the runs: the alert outbox, the licence-change journal (LicenseChanges) and the
suppressions (AlertSuppressions), each an upsert of records keyed by tenant or channel (a base of AuditStore)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import orjson

from licensing.changes import LicenseChange, change_from_plain, change_to_plain
from licensing.model import OutboxItem
from licensing.store import records
from licensing.store.coordination import Coordination
from licensing.store.keys import safe_key
from licensing.suppressions import Suppression


class Ledgers(Coordination):
    """Outbox, licence changes and suppressions: what AuditStore keeps beside runs, findings and history."""

    # ------------------------------------------------------------ outbox

    def _outbox_keys(self, item: OutboxItem) -> dict[str, str]:
        return {"PartitionKey": safe_key(item.channel), "RowKey": safe_key(item.id)}

    def outbox_put(self, item: OutboxItem) -> None:
        """Store a notification to deliver later; the same id again replaces it (never a duplicate)."""
        self._upsert(self.tables.outbox, [records.outbox_to_entity(item, self._outbox_keys(item))])

    # ------------------------------------------------------------ licence changes (LicenseChanges)

    def put_license_change(self, change: LicenseChange) -> None:
        """Journal a change (licensing-audit apply); the same id again replaces it: pending, then its outcome."""
        doc = orjson.dumps(change_to_plain(change)).decode()
        entity = {"PartitionKey": safe_key(change.tenant_id), "RowKey": safe_key(change.id),
                  "group_id": change.group_id, "outcome": change.outcome.value, "doc": doc}  # fmt: skip
        self._upsert(self.tables.changes, [entity])

    def license_changes(self, tenant_id: str) -> list[LicenseChange]:
        """Every journalled change of the tenant, oldest first."""
        rows = self._query(self.tables.changes, "PartitionKey eq @pk", {"pk": safe_key(tenant_id)})
        return sorted((change_from_plain(orjson.loads(e["doc"])) for e in rows), key=lambda c: (c.when, c.id))

    def license_change(self, change_id: str) -> LicenseChange | None:
        rows = self._query(self.tables.changes, "RowKey eq @rk", {"rk": safe_key(change_id)}, limit=1)
        return change_from_plain(orjson.loads(rows[0]["doc"])) if rows else None

    # ------------------------------------------------------------ suppressions (AlertSuppressions)

    def put_suppression(self, suppression: Suppression) -> bool:
        """Write a new suppression; False (and nothing written) when its id is there already (a redelivery)."""
        keys = {"PartitionKey": safe_key(suppression.tenant_id), "RowKey": safe_key(suppression.id)}
        if self._query(
            self.tables.suppressions,
            "PartitionKey eq @pk and RowKey eq @rk",
            {"pk": keys["PartitionKey"], "rk": keys["RowKey"]},
        ):
            return False
        self._upsert(self.tables.suppressions, [records.suppression_to_entity(suppression, keys)])
        return True

    def suppressions(self, tenant_id: str) -> list[Suppression]:
        """Every suppression of the tenant, removed and expired ones too (they are the audit trail), oldest first."""
        rows = self._query(self.tables.suppressions, "PartitionKey eq @pk", {"pk": safe_key(tenant_id)})
        return sorted((records.suppression_from_entity(e) for e in rows), key=lambda s: (s.created_at, s.id))

    def remove_suppression(self, tenant_id: str, suppression_id: str, *, by: str, at: datetime) -> Suppression | None:
        """Mark a suppression removed (the row stays, with who and when); None when the tenant has no such id."""
        found = next((s for s in self.suppressions(tenant_id) if s.id == suppression_id), None)
        if found is None or found.removed_at is not None:
            return found
        removed = replace(found, removed_at=at, removed_by=by)
        keys = {"PartitionKey": safe_key(tenant_id), "RowKey": safe_key(suppression_id)}
        self._upsert(self.tables.suppressions, [records.suppression_to_entity(removed, keys)])
        return removed

    def mark_suppressions_announced(self, tenant_id: str, added: Sequence[str], removed: Sequence[str]) -> None:
        """Record that a digest told of these additions and removals (they are not told again)."""
        changed = []
        for s in self.suppressions(tenant_id):
            new = replace(
                s, announced=s.announced or s.id in added, removal_announced=s.removal_announced or s.id in removed
            )
            if new != s:
                keys = {"PartitionKey": safe_key(tenant_id), "RowKey": safe_key(s.id)}
                changed.append(records.suppression_to_entity(new, keys))
        if changed:
            self._upsert(self.tables.suppressions, changed)

    def outbox_list(self, channel: str | None = None) -> list[OutboxItem]:
        """Pending notifications, oldest first."""
        if channel is None:
            rows = self._query(self.tables.outbox, "PartitionKey ne @none", {"none": ""})
        else:
            rows = self._query(self.tables.outbox, "PartitionKey eq @pk", {"pk": safe_key(channel)})
        items = [records.outbox_from_entity(e) for e in rows]
        return sorted(items, key=lambda i: (i.created_at, i.channel, i.id))

    def outbox_delete(self, item: OutboxItem) -> None:
        keys = self._outbox_keys(item)
        self._delete(self.tables.outbox, [keys])
        self._delete_overflow(self.tables.outbox, keys)  # the parts of a spilled payload, if it had any

    def outbox_record_failure(self, item: OutboxItem, error: str) -> OutboxItem:
        """Count a failed delivery attempt and keep its (already redacted) error."""
        updated = replace(item, attempts=item.attempts + 1, last_error=" ".join(str(error).split()))
        self.outbox_put(updated)
        return updated
