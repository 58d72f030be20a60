"""The plumbing under AuditStore: table names and clients, one retried call, reads, writes in transactions,
deletes, and values spilled to the overflow table when they are too big for their entity.

Everything the store knows about Azure Table Storage itself lives here; :mod:`licensing.store.store` and
:mod:`licensing.store.coordination` speak in rows."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeVar

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from licensing.clock import utcnow
from licensing.errors import ConfigurationError, StorageError, StorageTableMissingError
from licensing.store.batching import Operation, plan_transactions
from licensing.store.codec import (
    overflow_partition,
    overflow_refs,
    restore_overflow,
    spill,
)
from licensing.store.connection import RetryPolicy, error_code, map_error
from licensing.store.keys import (
    SEPARATOR,
)

__all__ = ["Entity", "TableNames", "TableStore", "etag_of", "row_keys", "system_clock"]

T = TypeVar("T")
Entity = dict[str, Any]

LEASE_PARTITION: Final = "lease"
TENANTS_PARTITION: Final = "~tenants"  # "~t" never starts an escaped key ("~" is followed by hex or "z")
RUN_ROWS: Final = "R"
RUN_INDEX: Final = "I" + SEPARATOR
REQUEST_INDEX: Final = "Q" + SEPARATOR  # by request id alone: the latest run recorded for it (lookups)
KEY_INDEX: Final = "K" + SEPARATOR  # by idempotency key (trigger, scope, subject, request id): skip decisions
TICKET_PARTITION: Final = "ticket"  # AuditLeases rows: the timer's schedule tickets (reserved request ids)
SKU_ROWS: Final = "s" + SEPARATOR
GROUP_ROWS: Final = "g" + SEPARATOR
# Blobs live in the overflow table under their own partitions; overflow partitions are 48 hex digits, never "b~_".
BLOB_PARTITION: Final = "b" + SEPARATOR
BLOB_HEADER: Final = "h"
BLOB_DATA: Final = "d"
BLOB_PARTS_PER_ENTITY: Final = 12  # 12 x 64,000 bytes: well under the 1 MiB entity limit
_PREFIX = re.compile(r"^(?:[A-Za-z][A-Za-z0-9]{0,40})?$")
_CREATED: set[tuple[str, str]] = set()  # (account URL, table): ensure_tables is cheap after the first call


def system_clock() -> datetime:
    return utcnow()


@dataclass(frozen=True, slots=True)
class TableNames:
    """The table names, all with the same prefix."""

    runs: str
    findings: str
    details: str
    history: str
    alerts: str
    suppressions: str
    outbox: str
    leases: str
    overflow: str
    changes: str

    @classmethod
    def with_prefix(cls, prefix: str = "") -> TableNames:
        if not _PREFIX.match(prefix):
            raise ConfigurationError(f"table prefix {prefix!r} is invalid: letters and digits, starting with a letter")
        return cls(
            runs=f"{prefix}AuditRuns",
            findings=f"{prefix}AuditFindings",
            details=f"{prefix}AuditRunDetails",
            history=f"{prefix}SkuHistory",
            alerts=f"{prefix}AlertState",
            suppressions=f"{prefix}AlertSuppressions",
            outbox=f"{prefix}AlertOutbox",
            leases=f"{prefix}AuditLeases",
            overflow=f"{prefix}AuditOverflow",
            changes=f"{prefix}LicenseChanges",
        )

    def all(self) -> tuple[str, ...]:
        return (
            self.runs,
            self.findings,
            self.details,
            self.history,
            self.alerts,
            self.suppressions,
            self.outbox,
            self.leases,
            self.overflow,
            self.changes,
        )


def _is_table_missing(exc: HttpResponseError) -> bool:
    """Decided on the service's error code, never on message text."""
    return error_code(exc) == "TableNotFound"


def row_keys(entity: Mapping[str, Any]) -> dict[str, str]:
    return {"PartitionKey": str(entity["PartitionKey"]), "RowKey": str(entity["RowKey"])}


def etag_of(entity: Any) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    etag = metadata.get("etag")
    return str(etag) if etag else None


class TableStore:
    """Table clients and the row operations every part of the store uses (no domain knowledge)."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        host: str = "table storage",
        prefix: str = "",
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = system_clock,
        conflict_attempts: int = 12,
    ) -> None:
        self.tables = TableNames.with_prefix(prefix)
        self._service = service
        self._host = host
        self._retry = retry or RetryPolicy()
        self._clock = clock
        self._conflict_attempts = conflict_attempts
        self._clients: dict[str, TableClient] = {}
        self._run_rows: dict[tuple[str, str], str] = {}  # (tenant, run id) -> RowKey: a run's key never changes

    # ------------------------------------------------------------ plumbing

    def _table(self, name: str) -> TableClient:
        client = self._clients.get(name)
        if client is None:
            client = self._clients[name] = self._service.get_table_client(name)
        return client

    def _forget_tables(self) -> None:
        """A table was deleted behind our back (or the emulator restarted): let ensure_tables() create it again."""
        _CREATED.difference_update({(self._service.url, name) for name in self.tables.all()})

    def _call(self, what: str, fn: Callable[[], T], *, passthrough: tuple[type[BaseException], ...] = ()) -> T:
        try:
            return self._retry.run(what, self._host, fn, passthrough=passthrough)
        except StorageTableMissingError:
            self._forget_tables()
            raise

    def _get(self, table: str, pk: str, rk: str) -> Any | None:
        """The entity (with overflow restored and ``metadata['etag']``), or None."""
        try:
            entity = self._call(
                f"read {table}",
                lambda: self._table(table).get_entity(pk, rk),
                passthrough=(ResourceNotFoundError,),
            )
        except ResourceNotFoundError as exc:
            if _is_table_missing(exc):
                self._forget_tables()
                raise map_error(exc, f"read {table}", self._host) from None
            return None
        return self._restore(table, entity)

    def _query(
        self,
        table: str,
        query: str,
        parameters: Mapping[str, Any] | None = None,
        *,
        limit: int | None = None,
        select: list[str] | None = None,
        restore: bool = True,
    ) -> list[Any]:
        def run() -> list[Any]:
            pages = self._table(table).query_entities(
                query,
                parameters=dict(parameters or {}),
                select=select,
                results_per_page=min(limit, 1000) if limit else None,
            )
            return list(itertools.islice(pages, limit)) if limit else list(pages)

        rows = self._call(f"query {table}", run)
        return [self._restore(table, r) for r in rows] if restore else rows

    def _restore(self, table: str, entity: Any) -> Any:
        refs = overflow_refs(entity)
        if not refs:
            return entity
        pk = overflow_partition(table, str(entity["PartitionKey"]), str(entity["RowKey"]))
        parts = self._query(self.tables.overflow, "PartitionKey eq @pk", {"pk": pk}, restore=False)
        restored = restore_overflow(entity, {str(p["RowKey"]): p for p in parts})
        entity.clear()
        entity.update(restored)  # keeps the TableEntity (and its etag metadata)
        return entity

    def _submit(self, table: str, operations: Iterable[Operation]) -> list[Mapping[str, Any]]:
        """Run operations as valid transactions (one partition, <= 100 ops); transient failures retried."""
        results: list[Mapping[str, Any]] = []
        client = self._table(table)
        for plan in plan_transactions(operations):
            results.extend(
                self._call(
                    f"write {table}",
                    lambda plan=plan: client.submit_transaction(plan),  # type: ignore[misc]
                    passthrough=(TableTransactionError, ResourceModifiedError, ResourceExistsError),
                )
                if _conditional(plan)
                else self._call(f"write {table}", lambda plan=plan: client.submit_transaction(plan))  # type: ignore[misc]
            )
        return results

    def _prepare(self, table: str, entities: Iterable[Entity]) -> list[Entity]:
        """Spill oversized entities; their overflow rows are written first, so no entity points at nothing."""
        ready: list[Entity] = []
        overflow: list[Operation] = []
        for entity in entities:
            main, rows = spill(entity, table)
            ready.append(main)
            overflow.extend(("upsert", row, {"mode": UpdateMode.REPLACE}) for row in rows)
        if overflow:
            self._submit(self.tables.overflow, overflow)
        return ready

    def _upsert(self, table: str, entities: Iterable[Entity]) -> int:
        ready = self._prepare(table, entities)
        self._submit(table, [("upsert", e, {"mode": UpdateMode.REPLACE}) for e in ready])
        return len(ready)

    def _delete(self, table: str, entities: Sequence[Mapping[str, Any]]) -> int:
        """Delete entities (and their overflow rows); already-gone ones are fine."""
        if not entities:
            return 0
        try:
            self._submit(
                table,
                [("delete", row_keys(e), {}) for e in entities],
            )
        except StorageError:
            # One missing entity fails its whole transaction: fall back to one by one, ignoring 404.
            for entity in entities:
                try:
                    self._call(
                        f"delete one entity of {table}",
                        lambda e=entity: self._table(table).delete_entity(e["PartitionKey"], e["RowKey"]),  # type: ignore[misc]
                    )
                except StorageError:
                    if self._get(table, str(entity["PartitionKey"]), str(entity["RowKey"])) is not None:
                        raise
        for entity in entities:
            # Run rows are rewritten often; earlier versions may have left parts under other nonces.
            if overflow_refs(entity) or (table == self.tables.runs and str(entity["RowKey"]).startswith(RUN_ROWS)):
                self._delete_overflow(table, entity)
        return len(entities)

    def _delete_overflow(self, table: str, entity: Mapping[str, Any]) -> None:
        pk = overflow_partition(table, str(entity["PartitionKey"]), str(entity["RowKey"]))
        rows = self._query(self.tables.overflow, "PartitionKey eq @pk", {"pk": pk}, select=["RowKey"], restore=False)
        if rows:
            self._submit(
                self.tables.overflow, [("delete", {"PartitionKey": pk, "RowKey": r["RowKey"]}, {}) for r in rows]
            )

    def _replace_partition(self, table: str, pk: str, entities: list[Entity]) -> None:
        """Make partition ``pk`` hold exactly ``entities``: upsert them, delete rows left from an earlier attempt."""
        wanted = {e["RowKey"] for e in entities}
        # One cheap probe; only a replayed run pays for listing what is there.
        probe = self._query(table, "PartitionKey eq @pk", {"pk": pk}, limit=1, select=["RowKey"], restore=False)
        if probe:
            existing = self._query(table, "PartitionKey eq @pk", {"pk": pk}, restore=False)
            self._delete(table, [e for e in existing if e["RowKey"] not in wanted])
        self._upsert(table, entities)

    def ensure_tables(self) -> None:
        """Create the tables that do not exist yet; idempotent, and free after the first call per process."""
        account = self._service.url
        for name in self.tables.all():
            if (account, name) in _CREATED:
                continue
            self._call(f"create table {name}", lambda name=name: self._service.create_table_if_not_exists(name))  # type: ignore[misc]
            _CREATED.add((account, name))

    def drop_tables(self) -> None:
        """Delete every table of this prefix (tests and benchmarks clean up with it)."""
        account = self._service.url
        for name in self.tables.all():
            self._call(f"delete table {name}", lambda name=name: self._service.delete_table(name))  # type: ignore[misc]
            _CREATED.discard((account, name))


def _conditional(plan: Sequence[Operation]) -> bool:
    """Whether a transaction carries ETag conditions or inserts (their 412/409 is the caller's to handle)."""
    return any(op[0] == "create" or op[2].get("etag") for op in plan)
