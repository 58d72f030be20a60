"""What concurrent invocations coordinate through: leases (one tenant audit; one run per request key), the
timer's tickets (reserved request ids), and blobs (fan-out parts too big for one entity), all ETag-safe."""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime, timedelta

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode

from licensing.errors import StorageError
from licensing.store.codec import (
    BYTES_PART,
    get_bytes,
    put_bytes,
)
from licensing.store.keys import (
    key_upper_bound,
    safe_key,
)
from licensing.store.tables import (
    BLOB_DATA,
    BLOB_HEADER,
    BLOB_PARTITION,
    BLOB_PARTS_PER_ENTITY,
    LEASE_PARTITION,
    TICKET_PARTITION,
    Entity,
    TableStore,
    etag_of,
    row_keys,
)

__all__ = ["Coordination"]


class Coordination(TableStore):
    """Leases, tickets and blobs (a part of :class:`licensing.store.AuditStore`)."""

    # ------------------------------------------------------------ blobs

    def _blob_pk(self, name: str) -> str:
        return BLOB_PARTITION + safe_key(name)

    def put_blob(self, name: str, data: bytes) -> None:
        """Store ``data`` (any size) under ``name``: the parts first, under a fresh nonce, then the header naming them.

        A reader sees the previous complete value or the new one, never a mix, even when two writers
        (a redelivered message) store the same name at once. Superseded parts stay until :meth:`delete_blob`.
        """
        pk = self._blob_pk(name)
        nonce = uuid.uuid4().hex[:12]
        step = BYTES_PART * BLOB_PARTS_PER_ENTITY
        rows: list[Entity] = []
        for index, start in enumerate(range(0, max(len(data), 1), step)):
            row: Entity = {"PartitionKey": pk, "RowKey": f"{BLOB_DATA}{nonce}-{index:06d}"}
            put_bytes(row, "v", data[start : start + step])
            rows.append(row)
        self._submit(self.tables.overflow, [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in rows])
        header: Entity = {
            "PartitionKey": pk,
            "RowKey": BLOB_HEADER,
            "name": name,
            "nonce": nonce,
            "rows": len(rows),
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._submit(self.tables.overflow, [("upsert", header, {"mode": UpdateMode.REPLACE})])

    def get_blob(self, name: str) -> bytes | None:
        """The bytes last stored under ``name`` (checked against their length and hash), or None."""
        pk = self._blob_pk(name)
        header = self._get(self.tables.overflow, pk, BLOB_HEADER)
        if header is None:
            return None
        prefix = f"{BLOB_DATA}{header['nonce']}-"
        rows = self._query(
            self.tables.overflow,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": pk, "lo": prefix, "hi": key_upper_bound(prefix)},
            restore=False,
        )
        rows.sort(key=lambda r: str(r["RowKey"]))
        if len(rows) != int(header["rows"]):
            raise StorageError(f"stored blob {name!r} is incomplete: {len(rows)} of {header['rows']} parts")
        data = b"".join(get_bytes(r, "v") or b"" for r in rows)
        if len(data) != int(header["size"]) or hashlib.sha256(data).hexdigest() != header["sha256"]:
            raise StorageError(f"stored blob {name!r} does not match its length or hash")
        return data

    def delete_blob(self, name: str) -> int:
        """Delete the blob (header first, so no reader sees a half-deleted one); returns the rows deleted."""
        pk = self._blob_pk(name)
        rows = self._query(self.tables.overflow, "PartitionKey eq @pk", {"pk": pk}, select=["RowKey"], restore=False)
        headers = [{"PartitionKey": pk, "RowKey": r["RowKey"]} for r in rows if r["RowKey"] == BLOB_HEADER]
        parts = [{"PartitionKey": pk, "RowKey": r["RowKey"]} for r in rows if r["RowKey"] != BLOB_HEADER]
        return self._delete(self.tables.overflow, headers) + self._delete(self.tables.overflow, parts)

    # ------------------------------------------------------------ leases

    def try_acquire_lease(
        self, name: str, owner: str, ttl: timedelta, *, message: str | None = None, generation: int = 0
    ) -> bool:
        """Take the lease ``name`` for ``ttl``: insert it, renew our own, or take over an expired one.

        ``owner`` is one invocation's token. A later delivery of the same queue ``message`` (higher
        ``generation``, the dequeue count) takes over at once: the earlier one failed, or is still running
        and is fenced off (:meth:`holds_lease` turns false for it). Insert-only creates and If-Match updates
        make concurrent acquirers safe: exactly one wins.
        """
        table = self._table(self.tables.leases)
        rk = safe_key(name)
        for _ in range(3):
            now = self._clock()
            entity = {
                "PartitionKey": LEASE_PARTITION,
                "RowKey": rk,
                "name": name,
                "owner": owner,
                "message": message or "",
                "generation": generation,
                "acquired_at": now.isoformat(),
                "expires_at": (now + ttl).isoformat(),
            }
            current = self._get(self.tables.leases, LEASE_PARTITION, rk)
            try:
                if current is None:
                    self._call(
                        "acquire lease",
                        lambda entity=entity: table.create_entity(entity),  # type: ignore[misc]
                        passthrough=(ResourceExistsError,),
                    )
                    return True
                expires = datetime.fromisoformat(str(current.get("expires_at")))
                later_delivery = (
                    bool(message)
                    and current.get("message") == message
                    and generation > int(current.get("generation") or 0)
                )
                if current.get("owner") != owner and expires > now and not later_delivery:
                    return False
                etag = etag_of(current)
                self._call(
                    "acquire lease",
                    lambda etag=etag, entity=entity: table.update_entity(  # type: ignore[misc]
                        entity, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    ),
                    passthrough=(ResourceModifiedError, ResourceNotFoundError),
                )
                return True
            except (ResourceExistsError, ResourceModifiedError):
                return False  # someone else got there first
            except ResourceNotFoundError:
                continue  # released between our read and our write: try again
        return False

    def holds_lease(self, name: str, owner: str) -> bool:
        """Whether ``owner`` still holds ``name`` (not taken over by a later delivery, not expired)."""
        current = self._get(self.tables.leases, LEASE_PARTITION, safe_key(name))
        if current is None or current.get("owner") != owner:
            return False
        return datetime.fromisoformat(str(current.get("expires_at"))) > self._clock()

    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease back if we still hold it; someone else's lease is left alone."""
        rk = safe_key(name)
        current = self._get(self.tables.leases, LEASE_PARTITION, rk)
        if current is None or current.get("owner") != owner:
            return
        etag = etag_of(current)
        try:
            self._call(
                "release lease",
                lambda: self._table(self.tables.leases).delete_entity(
                    LEASE_PARTITION, rk, etag=etag, match_condition=MatchConditions.IfNotModified
                ),
                passthrough=(ResourceModifiedError,),
            )
        except ResourceModifiedError:
            return  # taken over after expiry: no longer ours

    def issue_ticket(self, name: str, ttl: timedelta) -> None:
        """Record that the timer issued request id ``name`` (``schedule-…``), for ``ttl``; expired ones go."""
        now = self._clock()
        rows = self._query(self.tables.leases, "PartitionKey eq @pk", {"pk": TICKET_PARTITION}, restore=False)
        stale = [row_keys(r) for r in rows if str(r.get("expires_at", "")) < now.isoformat()]
        self._delete(self.tables.leases, stale)
        self._upsert(
            self.tables.leases,
            [{"PartitionKey": TICKET_PARTITION, "RowKey": safe_key(name), "name": name,
              "issued_at": now.isoformat(), "expires_at": (now + ttl).isoformat()}],
        )  # fmt: skip

    def has_ticket(self, name: str) -> bool:
        """Whether the timer issued ``name`` and the ticket has not expired."""
        row = self._get(self.tables.leases, TICKET_PARTITION, safe_key(name))
        return row is not None and str(row.get("expires_at", "")) >= self._clock().isoformat()
