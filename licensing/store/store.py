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

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode

from licensing.errors import StorageConflictError, StorageError
from licensing.model import (
    UNKNOWN_TENANT,
    AlertState,
    AuditReport,
    Finding,
    GroupSummary,
    RunInfo,
    RunStatus,
    Scope,
    SkuDay,
    SkuSummary,
)
from licensing.settings import StorageConnection
from licensing.store import records
from licensing.store.batching import Operation
from licensing.store.codec import (
    get_json,
    put_json,
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
from licensing.store.ledgers import Ledgers
from licensing.store.tables import (
    GROUP_ROWS,
    KEY_INDEX,
    REQUEST_INDEX,
    RUN_INDEX,
    RUN_ROWS,
    SKU_ROWS,
    TENANTS_PARTITION,
    Entity,
    TableNames,
    etag_of,
    row_keys,
    system_clock,
)

__all__ = ["AuditStore", "TableNames", "open_store"]


def open_store(
    connection: StorageConnection | None,
    *,
    prefix: str = "",
    retry: RetryPolicy | None = None,
    clock: Callable[[], datetime] = system_clock,
    **client_kwargs: Any,
) -> AuditStore:
    """An AuditStore for ``settings.storage``; ConfigurationError when storage is not configured.

    ``client_kwargs`` go to the azure-data-tables client (for example ``raw_request_hook``).
    """
    service, host = service_client(connection, **client_kwargs)
    return AuditStore(service, host=host, prefix=prefix, retry=retry, clock=clock)


class AuditStore(Ledgers):
    """Runs, findings, SKU history, alert state, outbox and leases in Azure Table Storage: the one facade."""

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

    def last_tenant_run(self, tenant_id: str, *, before: datetime, exclude: str | None = None) -> RunInfo | None:
        """The newest finished (succeeded or partial) tenant-wide run started before ``before``, however many
        group, SKU, plan or rejected runs came after it: the filter runs in the service, newest first."""
        query = (
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and scope eq @tenant"
            " and ( status eq @succeeded or status eq @partial )"
        )
        params = {
            "pk": self._run_pk(tenant_id),
            "lo": RUN_ROWS + inverted_timestamp(before),
            "hi": key_upper_bound(RUN_ROWS),
            "tenant": "tenant",
            "succeeded": RunStatus.SUCCEEDED.value,
            "partial": RunStatus.PARTIAL.value,
        }
        for entity in self._query(self.tables.runs, query, params, limit=3):
            run = records.run_from_entity(entity)
            if run.id != exclude and run.started_at < before:
                return run
        return None

    def count_runs(self, tenant_id: str, *, scope: Scope, since: datetime, statuses: Iterable[RunStatus] = ()) -> int:
        """How many runs of ``scope`` (with one of ``statuses``, when given) started at or after ``since``."""
        params: dict[str, Any] = {
            "pk": self._run_pk(tenant_id),
            "lo": RUN_ROWS,
            "hi": key_upper_bound(RUN_ROWS + inverted_timestamp(since)),
            "scope": scope.value,
        }
        query = "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and scope eq @scope"
        rows = self._query(self.tables.runs, query, params, select=["status", "started_at"], restore=False)
        wanted = {s.value for s in statuses}
        return sum(1 for r in rows if not wanted or r.get("status") in wanted)

    def run_counts(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        """``{"findings": n, "by_kind": {...}, "by_severity": {...}}`` as written by finish_run."""
        entity = self._run_entity(tenant_id, run_id)
        return dict(get_json(entity, "counts", {})) if entity is not None else {}

    def run_extra(self, tenant_id: str, run_id: str) -> dict[str, Any]:
        """The run's small bookkeeping document (fan-out chunk progress)."""
        entity = self._run_entity(tenant_id, run_id)
        return dict(get_json(entity, "extra", {})) if entity is not None else {}

    def save_plan(self, tenant_id: str, run_id: str, document: Mapping[str, Any]) -> None:
        """Keep a plan run's answer (licensing-audit-plan/1, capped by licensing.plan) with the run."""
        self.update_run_extra(tenant_id, run_id, lambda extra: {**extra, "plan": dict(document)})

    def run_plan(self, tenant_id: str, run_id: str) -> dict[str, Any] | None:
        """The answer a plan run stored (None for other runs)."""
        plan = self.run_extra(tenant_id, run_id).get("plan")
        return dict(plan) if isinstance(plan, dict) else None

    def _update_run_entity(self, tenant_id: str, run_id: str, change: Callable[[Any], Entity]) -> Any:
        for attempt in range(1, self._conflict_attempts + 1):
            self._run_rows.pop((tenant_id, run_id), None)
            current = self._run_entity(tenant_id, run_id)
            if current is None:
                raise StorageError(f"no run {run_id!r} stored for tenant {tenant_id!r}")
            etag = etag_of(current)
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
                row_keys(entity),
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
        states = [records.alert_from_entity(e, etag_of(e)) for e in rows]
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
                    index_rows.append(row_keys(pointer))
            # The run row goes last: an interrupted purge finds the run again next time.
            self._delete(self.tables.runs, [*index_rows, row_keys(entity)])
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
