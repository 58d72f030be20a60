"""AuditStore: every read and write of the audit's tables, idempotent and safe under concurrency.

Tables (names get an optional prefix, so tests and tenants of a shared account never collide):

============== ====================== ============================================================
table          PartitionKey           RowKey
============== ====================== ============================================================
AuditRuns      tenant                 ``R`` + inverted start time + run id (newest first); index
                                      rows ``I~_<run id>``, ``Q~_<request id>`` and ``K~_<request key>``
                                      (trigger/scope/subject/request id: the idempotency key) point at it
AuditFindings  run id                 finding id
AuditRunDetails run id                ``s~_<sku id>`` / ``g~_<group id>`` (report.skus, report.groups)
SkuHistory     tenant ``~_`` SKU id   day ``YYYYMMDD``
AlertState     tenant                 finding id
AlertOutbox    channel                item id
AuditLeases    ``lease``              lease name (one tenant-wide audit at a time; one run per request key)
               ``ticket``             ``schedule-…`` request id the timer issued (reserved for it)
AuditOverflow  hash of the owner keys nonce-value-part (values too big for their entity)
               ``b~_<blob name>``     ``h`` (header) and ``d<nonce>-<part>`` (put_blob: fan-out partials)
============== ====================== ============================================================

Everything is written with upserts keyed by ids, so a replayed request rewrites the same rows;
runs, findings and details of one run share partitions and go in transactions of at most 100
operations. Alert state and leases use ETags (If-Match) and insert-only creates, retried on
412/409 by re-reading, so two concurrent runs cannot overwrite each other's decisions.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from licensing.errors import ConfigurationError, StorageConflictError, StorageError
from licensing.model import (
    UNKNOWN_TENANT,
    AlertState,
    AuditReport,
    Finding,
    GroupSummary,
    OutboxItem,
    RunInfo,
    RunStatus,
    SkuDay,
    SkuSummary,
)
from licensing.settings import StorageConnection
from licensing.store import records
from licensing.store.batching import Operation, plan_transactions
from licensing.store.codec import (
    BYTES_PART,
    get_bytes,
    get_json,
    overflow_partition,
    overflow_refs,
    put_bytes,
    put_json,
    restore_overflow,
    spill,
)
from licensing.store.connection import RetryPolicy, map_error, service_client
from licensing.store.keys import (
    SEPARATOR,
    bounded,
    day_key,
    encode_key,
    inverted_timestamp,
    key_upper_bound,
    safe_key,
)

__all__ = ["AuditStore", "TableNames", "open_store"]

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


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class TableNames:
    """The table names, all with the same prefix."""

    runs: str
    findings: str
    details: str
    history: str
    alerts: str
    outbox: str
    leases: str
    overflow: str

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
            outbox=f"{prefix}AlertOutbox",
            leases=f"{prefix}AuditLeases",
            overflow=f"{prefix}AuditOverflow",
        )

    def all(self) -> tuple[str, ...]:
        return (
            self.runs,
            self.findings,
            self.details,
            self.history,
            self.alerts,
            self.outbox,
            self.leases,
            self.overflow,
        )


def open_store(
    connection: StorageConnection | None,
    *,
    prefix: str = "",
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = _utcnow,
    **client_kwargs: Any,
) -> AuditStore:
    """An AuditStore for ``settings.storage``; ConfigurationError when storage is not configured.

    ``client_kwargs`` go to the azure-data-tables client (for example ``raw_request_hook``).
    """
    service, host = service_client(connection, **client_kwargs)
    return AuditStore(service, host=host, prefix=prefix, retry=retry, clock=clock)


def _is_table_missing(exc: HttpResponseError) -> bool:
    return "TableNotFound" in str(getattr(exc, "error_code", "") or "") or "TableNotFound" in str(exc.message or "")


def _keys(entity: Mapping[str, Any]) -> dict[str, str]:
    return {"PartitionKey": str(entity["PartitionKey"]), "RowKey": str(entity["RowKey"])}


def _etag(entity: Any) -> str | None:
    metadata = getattr(entity, "metadata", None) or {}
    etag = metadata.get("etag")
    return str(etag) if etag else None


class AuditStore:
    """Runs, findings, SKU history, alert state, outbox and leases in Azure Table Storage."""

    def __init__(
        self,
        service: TableServiceClient,
        *,
        host: str = "table storage",
        prefix: str = "",
        retry: RetryPolicy | None = None,
        clock: Callable[[], datetime] = _utcnow,
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
        except StorageError as exc:
            if "no such table" in str(exc):
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
                [("delete", _keys(e), {}) for e in entities],
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

    # ------------------------------------------------------------ runs

    def _run_pk(self, tenant_id: str) -> str:
        return safe_key(tenant_id)

    def _run_entity(self, tenant_id: str, run_id: str) -> Any | None:
        pk = self._run_pk(tenant_id)
        rk = self._run_rows.get((tenant_id, run_id))
        if rk is None:
            index = self._get(self.tables.runs, pk, bounded(RUN_INDEX + encode_key(run_id)))
            if index is None:
                return None
            rk = str(index["run_rk"])
        entity = self._get(self.tables.runs, pk, rk)
        if entity is not None:
            self._run_rows[(tenant_id, run_id)] = rk
        return entity

    def _write_run(
        self,
        run: RunInfo,
        *,
        counts: Mapping[str, Any] | None = None,
        findings: int | None = None,
        existing: Any | None = None,
    ) -> None:
        """The run row plus its index rows, in one transaction (same partition)."""
        pk = self._run_pk(run.tenant_id)
        if existing is not None:
            rk = str(existing["RowKey"])
            counts = get_json(existing, "counts", {}) if counts is None else counts
            findings = int(existing.get("findings", 0)) if findings is None else findings
            extra = get_json(existing, "extra", {})
        else:
            rk = bounded(RUN_ROWS + inverted_timestamp(run.started_at) + SEPARATOR + encode_key(run.id))
            extra = {}
        keys = {"PartitionKey": pk, "RowKey": rk}
        entity = records.run_to_entity(run, keys, counts=counts, extra=extra, findings=findings)
        rows = [entity, {"PartitionKey": pk, "RowKey": bounded(RUN_INDEX + encode_key(run.id)), "run_rk": rk}]
        if run.request_id and run.request_key:
            rows.append(
                {"PartitionKey": pk, "RowKey": bounded(REQUEST_INDEX + encode_key(run.request_id)), "run_rk": rk}
            )
            rows.append({"PartitionKey": pk, "RowKey": bounded(KEY_INDEX + encode_key(run.request_key)), "run_rk": rk})
        self._upsert(self.tables.runs, rows)
        self._run_rows[(run.tenant_id, run.id)] = rk
        if existing is None:
            self._upsert(
                self.tables.runs,
                [
                    {
                        "PartitionKey": TENANTS_PARTITION,
                        "RowKey": pk,
                        "tenant_id": run.tenant_id,
                        "last_run_at": run.started_at.isoformat(),
                    }
                ],
            )

    def begin_run(self, run: RunInfo) -> None:
        """Record the run as ``running`` (a retried run keeps its row, key and bookkeeping)."""
        self._write_run(replace(run, status=RunStatus.RUNNING), existing=self._run_entity(run.tenant_id, run.id))

    def finish_run(self, report: AuditReport, history_day: date | None = None) -> None:
        """Findings, report details and (with ``history_day``) SKU history first; then the run's final record.

        Writing the run row last means a run that says it finished has all of its rows. A replay
        rewrites the same rows and removes findings an earlier attempt wrote but this one did not find.
        """
        run = report.run
        existing = self._run_entity(run.tenant_id, run.id)
        run_pk = safe_key(run.id)
        findings = [
            records.finding_to_entity(f, {"PartitionKey": run_pk, "RowKey": safe_key(f.id)}, seq)
            for seq, f in enumerate(report.findings)
        ]
        self._replace_partition(self.tables.findings, run_pk, findings)
        details = [
            records.sku_to_entity(s, {"PartitionKey": run_pk, "RowKey": bounded(SKU_ROWS + encode_key(s.sku_id))}, i)
            for i, s in enumerate(report.skus)
        ] + [
            records.group_to_entity(g, {"PartitionKey": run_pk, "RowKey": bounded(GROUP_ROWS + encode_key(g.id))}, i)
            for i, g in enumerate(report.groups)
        ]
        if details or existing is not None:
            self._replace_partition(self.tables.details, run_pk, details)
        if history_day is not None and report.skus:
            self.write_sku_history(
                run.tenant_id,
                [SkuDay.of(s, history_day, waiting=s.waiting_users) for s in report.skus],
            )
        counts = {
            "findings": len(report.findings),
            "by_kind": dict(Counter(f.kind for f in report.findings)),
            "by_severity": dict(Counter(f.severity.value for f in report.findings)),
        }
        self._write_run(run, counts=counts, findings=len(report.findings), existing=existing)

    def get_run(self, tenant_id: str, run_id: str) -> RunInfo | None:
        entity = self._run_entity(tenant_id, run_id)
        return records.run_from_entity(entity) if entity is not None else None

    def run_for_request(self, tenant_id: str, request_id: str, *, key: str | None = None) -> RunInfo | None:
        """The latest run recorded for ``request_id``; with ``key`` (:func:`licensing.model.request_key`) the
        latest run of exactly that request (trigger, scope, subject and id): what re-delivery checks."""
        pk = self._run_pk(tenant_id)
        row = KEY_INDEX + encode_key(key) if key is not None else REQUEST_INDEX + encode_key(request_id)
        index = self._get(self.tables.runs, pk, bounded(row))
        if index is None:
            return None
        entity = self._get(self.tables.runs, pk, str(index["run_rk"]))
        return records.run_from_entity(entity) if entity is not None else None

    def _run_rows_query(self, tenant_id: str, *, finished_only: bool, limit: int) -> list[Any]:
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi"
        if finished_only:
            query += " and status ne @running"
        params = {"pk": self._run_pk(tenant_id), "lo": RUN_ROWS, "hi": key_upper_bound(RUN_ROWS), "running": "running"}
        return self._query(self.tables.runs, query, params, limit=limit)

    def latest_run(self, tenant_id: str, *, finished_only: bool = True) -> RunInfo | None:
        rows = self._run_rows_query(tenant_id, finished_only=finished_only, limit=1)
        return records.run_from_entity(rows[0]) if rows else None

    def runs(self, tenant_id: str, limit: int = 50) -> list[RunInfo]:
        """The tenant's runs, newest first."""
        return [records.run_from_entity(e) for e in self._run_rows_query(tenant_id, finished_only=False, limit=limit)]

    def run_counts(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        """``{"findings": n, "by_kind": {...}, "by_severity": {...}}`` as written by finish_run."""
        entity = self._run_entity(tenant_id, run_id)
        return dict(get_json(entity, "counts", {})) if entity is not None else {}

    def run_extra(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        """The run's small bookkeeping document (fan-out chunk progress)."""
        entity = self._run_entity(tenant_id, run_id)
        return dict(get_json(entity, "extra", {})) if entity is not None else {}

    def _update_run_entity(self, tenant_id: str, run_id: str, change: Callable[[Any], Entity]) -> Any:
        for attempt in range(1, self._conflict_attempts + 1):
            self._run_rows.pop((tenant_id, run_id), None)
            current = self._run_entity(tenant_id, run_id)
            if current is None:
                raise StorageError(f"no run {run_id!r} stored for tenant {tenant_id!r}")
            etag = _etag(current)
            new = change(current)
            (main,) = self._prepare(self.tables.runs, [new])
            try:
                self._call(
                    f"update {self.tables.runs}",
                    lambda main=main, etag=etag: self._table(self.tables.runs).update_entity(  # type: ignore[misc]
                        main, mode=UpdateMode.REPLACE, etag=etag, match_condition=MatchConditions.IfNotModified
                    ),
                    passthrough=(ResourceModifiedError, ResourceNotFoundError),
                )
                return new
            except (ResourceModifiedError, ResourceNotFoundError):
                self._retry.sleep(self._retry.delay(min(attempt, 4)) / 4)
        raise StorageConflictError(f"run {run_id!r} kept changing under us: {self._conflict_attempts} attempts")

    def update_run(self, tenant_id: str, run_id: str, change: Callable[[RunInfo], RunInfo]) -> RunInfo:
        """Apply a pure ``change`` to the stored run with ETag concurrency (re-read and re-applied on 412)."""

        def apply(entity: Any) -> Entity:
            new = change(records.run_from_entity(entity))
            if new.id != run_id or new.tenant_id != tenant_id:
                raise StorageError("update_run cannot change a run's id or tenant")
            return records.run_to_entity(
                new,
                _keys(entity),
                counts=get_json(entity, "counts", {}),
                extra=get_json(entity, "extra", {}),
                findings=int(entity.get("findings", 0)),
            )

        return records.run_from_entity(self._update_run_entity(tenant_id, run_id, apply))

    def update_run_extra(
        self, tenant_id: str, run_id: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Apply a pure ``change`` to the run's extra document (chunk bookkeeping), ETag-safe."""

        def apply(entity: Any) -> Entity:
            new = {k: v for k, v in entity.items() if not k.startswith("extra")}
            put_json(new, "extra", change(dict(get_json(entity, "extra", {}))))
            return new

        return dict(get_json(self._update_run_entity(tenant_id, run_id, apply), "extra", {}))

    def default_tenant_id(self) -> str | None:
        """The tenant whose run was recorded most recently (the CLI's default for ``history``)."""
        rows = self._query(self.tables.runs, "PartitionKey eq @pk", {"pk": TENANTS_PARTITION})
        # Rejected messages of unknown senders land in the unknown-tenant partition: never a default.
        rows = [r for r in rows if r.get("tenant_id") != UNKNOWN_TENANT]
        if not rows:
            return None
        return str(max(rows, key=lambda r: str(r.get("last_run_at", "")))["tenant_id"])

    # ------------------------------------------------------------ findings and details

    def run_findings(self, run_id: str) -> list[Finding]:
        """The run's findings, in the order of the report."""
        rows = self._query(self.tables.findings, "PartitionKey eq @pk", {"pk": safe_key(run_id)})
        rows.sort(key=lambda e: int(e.get("seq", 0)))
        return [records.finding_from_entity(e) for e in rows]

    def _details(self, run_id: str, prefix: str) -> list[Any]:
        rows = self._query(
            self.tables.details,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": safe_key(run_id), "lo": prefix, "hi": key_upper_bound(prefix)},
        )
        rows.sort(key=lambda e: int(e.get("seq", 0)))
        return rows

    def run_skus(self, run_id: str) -> list[SkuSummary]:
        return [records.sku_from_entity(e) for e in self._details(run_id, SKU_ROWS)]

    def run_groups(self, run_id: str) -> list[GroupSummary]:
        return [records.group_from_entity(e) for e in self._details(run_id, GROUP_ROWS)]

    # ------------------------------------------------------------ SKU history

    def _history_pk(self, tenant_id: str, sku_id: str) -> str:
        return safe_key(tenant_id, sku_id)

    def write_sku_history(self, tenant_id: str, rows: Iterable[SkuDay]) -> int:
        """Upsert one row per SKU and day: writing the same day again replaces it, never adds to it."""
        entities = [
            records.sku_day_to_entity(
                r, {"PartitionKey": self._history_pk(tenant_id, r.sku_id), "RowKey": day_key(r.day)}
            )
            for r in rows
        ]
        return self._upsert(self.tables.history, entities)

    def sku_history(self, tenant_id: str, since: date, sku_id: str | None = None) -> dict[str, list[SkuDay]]:
        """``{sku id: [SkuDay oldest first]}`` for days on or after ``since``."""
        if sku_id is not None:
            query = "PartitionKey eq @pk and RowKey ge @day"
            params: dict[str, Any] = {"pk": self._history_pk(tenant_id, sku_id), "day": day_key(since)}
        else:
            lo = safe_key(tenant_id) + SEPARATOR
            query = "PartitionKey ge @lo and PartitionKey lt @hi and RowKey ge @day"
            params = {"lo": lo, "hi": key_upper_bound(lo), "day": day_key(since)}
        out: dict[str, list[SkuDay]] = {}
        for entity in self._query(self.tables.history, query, params):
            row = records.sku_day_from_entity(entity)
            out.setdefault(row.sku_id, []).append(row)
        for days in out.values():
            days.sort(key=lambda d: d.day)
        return out

    # ------------------------------------------------------------ alert state

    def alert_states(self, tenant_id: str, *, open_only: bool = False) -> dict[str, AlertState]:
        """``{finding id: AlertState}`` with ETags, for the alert policy."""
        query = "PartitionKey eq @pk" + (" and status eq @open" if open_only else "")
        rows = self._query(self.tables.alerts, query, {"pk": safe_key(tenant_id), "open": "open"})
        states = [records.alert_from_entity(e, _etag(e)) for e in rows]
        return {s.finding_id: s for s in states}

    def update_alert_states(
        self, tenant_id: str, change: Callable[[dict[str, AlertState]], Sequence[AlertState]]
    ) -> list[AlertState]:
        """Read, apply the pure ``change``, write with If-Match (insert-only for new rows); on 412/409 start over.

        ``change`` may be called several times (once per attempt) and must depend only on its argument.
        Returns the states written, with their new ETags.
        """
        pk = safe_key(tenant_id)
        for attempt in range(1, self._conflict_attempts + 1):
            current = self.alert_states(tenant_id)
            wanted = list(change(dict(current)))
            operations: list[Operation] = []
            for state in wanted:
                entity = records.alert_to_entity(state, {"PartitionKey": pk, "RowKey": safe_key(state.finding_id)})
                known = current.get(state.finding_id)
                if known is not None and known.etag:
                    options = {
                        "mode": UpdateMode.REPLACE,
                        "etag": known.etag,
                        "match_condition": MatchConditions.IfNotModified,
                    }
                    operations.append(("update", entity, options))
                else:
                    operations.append(("create", entity, {}))
            try:
                results = self._submit(self.tables.alerts, operations)
            except (TableTransactionError, ResourceModifiedError, ResourceExistsError) as exc:
                if exc.status_code not in (409, 412):
                    raise map_error(exc, f"write {self.tables.alerts}", self._host) from None
                self._retry.sleep(self._retry.delay(min(attempt, 4)) / 4)
                continue
            written: list[AlertState] = []
            for state, result in zip(wanted, results, strict=True):
                written.append(replace(state, etag=str(result.get("etag")) if result.get("etag") else None))
            return written
        raise StorageConflictError(
            f"alert state of tenant {tenant_id!r} kept changing under us: {self._conflict_attempts} attempts"
        )

    # ------------------------------------------------------------ outbox

    def _outbox_keys(self, item: OutboxItem) -> dict[str, str]:
        return {"PartitionKey": safe_key(item.channel), "RowKey": safe_key(item.id)}

    def outbox_put(self, item: OutboxItem) -> None:
        """Store a notification to deliver later; the same id again replaces it (never a duplicate)."""
        self._upsert(self.tables.outbox, [records.outbox_to_entity(item, self._outbox_keys(item))])

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
                etag = _etag(current)
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
        etag = _etag(current)
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
        stale = [_keys(r) for r in rows if str(r.get("expires_at", "")) < now.isoformat()]
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

    # ------------------------------------------------------------ retention

    def trim_runs(self, tenant_id: str, *, keep: int, older_than: datetime) -> int:
        """Bound a partition that anyone can write to (rejected messages of unknown senders): runs older than
        ``older_than`` go, and of the rest only the newest ``keep``. Returns how many runs were deleted."""
        newest = self._run_rows_query(tenant_id, finished_only=False, limit=keep + 1)
        cutoff = older_than
        if len(newest) > keep:
            oldest_kept = records.run_from_entity(newest[keep - 1])
            cutoff = max(cutoff, oldest_kept.started_at)
        return self.purge(tenant_id, cutoff)["runs"]

    def purge(self, tenant_id: str, older_than: datetime) -> dict[str, int]:
        """Delete the tenant's runs (with findings and details) started before ``older_than``, SKU
        history days before it, and alert states resolved before it. Returns counts per kind."""
        if older_than.tzinfo is None:
            older_than = older_than.replace(tzinfo=UTC)
        counts = {"runs": 0, "findings": 0, "details": 0, "sku_days": 0, "alert_states": 0}
        pk = self._run_pk(tenant_id)
        candidates = self._query(
            self.tables.runs,
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            {"pk": pk, "lo": RUN_ROWS + inverted_timestamp(older_than), "hi": key_upper_bound(RUN_ROWS)},
            restore=False,
        )
        for entity in candidates:
            run = records.run_from_entity(self._restore(self.tables.runs, entity))
            if run.started_at >= older_than:
                continue
            run_pk = safe_key(run.id)
            for table, key in ((self.tables.findings, "findings"), (self.tables.details, "details")):
                rows = self._query(table, "PartitionKey eq @pk", {"pk": run_pk}, restore=False)
                counts[key] += self._delete(table, rows)
            index_rows: list[Mapping[str, Any]] = [
                {"PartitionKey": pk, "RowKey": bounded(RUN_INDEX + encode_key(run.id))}
            ]
            index_keys = [REQUEST_INDEX + encode_key(run.request_id)] if run.request_id else []
            if run.request_key:
                index_keys.append(KEY_INDEX + encode_key(run.request_key))
            for index_key in index_keys:
                pointer = self._get(self.tables.runs, pk, bounded(index_key))
                if pointer is not None and pointer.get("run_rk") == entity["RowKey"]:
                    index_rows.append(_keys(pointer))
            # The run row goes last: an interrupted purge finds the run again next time.
            self._delete(self.tables.runs, [*index_rows, _keys(entity)])
            self._run_rows.pop((tenant_id, run.id), None)
            counts["runs"] += 1
        lo = safe_key(tenant_id) + SEPARATOR
        old_days = self._query(
            self.tables.history,
            "PartitionKey ge @lo and PartitionKey lt @hi and RowKey lt @day",
            {"lo": lo, "hi": key_upper_bound(lo), "day": day_key(older_than.date())},
            select=["PartitionKey", "RowKey"],
            restore=False,
        )
        counts["sku_days"] = self._delete(self.tables.history, old_days)
        resolved = [
            s
            for s in self.alert_states(tenant_id).values()
            if s.status == "resolved" and s.resolved_at is not None and s.resolved_at < older_than
        ]
        alert_keys = [{"PartitionKey": safe_key(tenant_id), "RowKey": safe_key(s.finding_id)} for s in resolved]
        counts["alert_states"] = self._delete(self.tables.alerts, alert_keys)
        return counts


def _conditional(plan: Sequence[Operation]) -> bool:
    """Whether a transaction carries ETag conditions or inserts (their 412/409 is the caller's to handle)."""
    return any(op[0] == "create" or op[2].get("etag") for op in plan)
