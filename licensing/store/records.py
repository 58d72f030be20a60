"""Mapping between the records of licensing.model and the entities of the run, finding, detail, history,
alert-state and outbox tables (leases, tickets and blobs are plain rows that store.py writes itself).

Ids are kept as properties next to the (escaped) keys, so reading never depends on decoding a
key. Datetimes are ISO-8601 strings: exact to the microsecond and independent of the service's
Edm.DateTime precision. Enum values are stored by their contract strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

from azure.data.tables import EdmType, EntityProperty

from licensing.errors import StorageError
from licensing.model import (
    AlertState,
    AlertStatus,
    Channel,
    Finding,
    GroupSummary,
    OutboxItem,
    RunInfo,
    RunStatus,
    Scope,
    Severity,
    SkuDay,
    SkuSummary,
    Trigger,
)
from licensing.store.codec import get_bytes, get_json, get_text, put_bytes, put_json, put_text

__all__ = [
    "alert_from_entity",
    "alert_to_entity",
    "finding_from_entity",
    "finding_to_entity",
    "group_from_entity",
    "group_to_entity",
    "outbox_from_entity",
    "outbox_to_entity",
    "run_from_entity",
    "run_to_entity",
    "sku_day_from_entity",
    "sku_day_to_entity",
    "sku_from_entity",
    "sku_to_entity",
]

_INT32 = 2**31


def _int(value: int) -> Any:
    # The SDK sends Python ints as Edm.Int32 and refuses larger ones: say Int64 where it matters.
    return value if -_INT32 <= value < _INT32 else EntityProperty(value, EdmType.INT64)


def _read_int(entity: Mapping[str, Any], name: str, default: int = 0) -> int:
    value = entity.get(name)
    if value is None:
        return default
    if isinstance(value, EntityProperty):
        value = value.value
    return int(value)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _dt(entity: Mapping[str, Any], name: str) -> datetime | None:
    text = entity.get(name)
    if text is None:
        return None
    try:
        return datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise StorageError(f"stored {name} is not an ISO-8601 datetime: {str(text)[:40]!r}") from exc


def _required_dt(entity: Mapping[str, Any], name: str) -> datetime:
    value = _dt(entity, name)
    if value is None:
        raise StorageError(f"stored entity has no {name}")
    return value


def _put_optional(entity: dict[str, Any], **values: str | None) -> None:
    for name, value in values.items():
        put_text(entity, name, value)


def _enum(kind: Any, value: Any, what: str) -> Any:
    try:
        return kind(value)
    except ValueError as exc:
        raise StorageError(f"stored {what} {str(value)[:40]!r} is not one this version knows") from exc


# ---------------------------------------------------------------- AuditRuns


def run_to_entity(
    run: RunInfo,
    keys: Mapping[str, str],
    *,
    counts: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    findings: int | None = None,
) -> dict[str, Any]:
    entity: dict[str, Any] = {
        **keys,
        "type": "run",
        "trigger": run.trigger.value,
        "scope": run.scope.value,
        "status": run.status.value,
        "graph_requests": _int(run.graph_requests),
        "graph_throttled": _int(run.graph_throttled),
        "resource_units": float(run.resource_units),
    }
    _put_optional(
        entity,
        run_id=run.id,
        tenant_id=run.tenant_id,
        tenant_name=run.tenant_name,
        started_at=_iso(run.started_at),
        finished_at=_iso(run.finished_at),
        request_id=run.request_id,
        requested_by=run.requested_by,
        scope_id=run.scope_id,
    )
    put_json(entity, "errors", list(run.errors))
    put_json(entity, "counts", dict(counts or {}))
    put_json(entity, "extra", dict(extra or {}))
    if findings is not None:
        entity["findings"] = _int(findings)
    return entity


def run_from_entity(entity: Mapping[str, Any]) -> RunInfo:
    return RunInfo(
        id=get_text(entity, "run_id") or "",
        tenant_id=get_text(entity, "tenant_id") or "",
        tenant_name=get_text(entity, "tenant_name") or "",
        trigger=_enum(Trigger, entity.get("trigger"), "trigger"),
        scope=_enum(Scope, entity.get("scope"), "scope"),
        status=_enum(RunStatus, entity.get("status"), "status"),
        started_at=_required_dt({"started_at": get_text(entity, "started_at")}, "started_at"),
        finished_at=_dt({"finished_at": get_text(entity, "finished_at")}, "finished_at"),
        graph_requests=_read_int(entity, "graph_requests"),
        graph_throttled=_read_int(entity, "graph_throttled"),
        resource_units=float(entity.get("resource_units") or 0.0),
        errors=tuple(str(e) for e in get_json(entity, "errors", [])),
        request_id=get_text(entity, "request_id"),
        requested_by=get_text(entity, "requested_by"),
        scope_id=get_text(entity, "scope_id"),
    )


# ---------------------------------------------------------------- AuditFindings


def finding_to_entity(finding: Finding, keys: Mapping[str, str], seq: int) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "seq": _int(seq), "kind": finding.kind, "severity": finding.severity.value}
    _put_optional(
        entity,
        finding_id=finding.id,
        message=finding.message,
        sku_id=finding.sku_id,
        sku_part_number=finding.sku_part_number,
        group_id=finding.group_id,
        user_id=finding.user_id,
        member_group_id=finding.member_group_id,
        error=finding.error,
        group_name=finding.group_name,
        user_name=finding.user_name,
        member_group_name=finding.member_group_name,
        product_name=finding.product_name,
    )
    return entity


def finding_from_entity(entity: Mapping[str, Any]) -> Finding:
    return Finding(
        id=get_text(entity, "finding_id") or "",
        kind=str(entity.get("kind", "")),
        severity=_enum(Severity, entity.get("severity"), "severity"),
        message=get_text(entity, "message") or "",
        sku_id=get_text(entity, "sku_id"),
        sku_part_number=get_text(entity, "sku_part_number"),
        group_id=get_text(entity, "group_id"),
        user_id=get_text(entity, "user_id"),
        member_group_id=get_text(entity, "member_group_id"),
        error=get_text(entity, "error"),
        group_name=get_text(entity, "group_name"),
        user_name=get_text(entity, "user_name"),
        member_group_name=get_text(entity, "member_group_name"),
        product_name=get_text(entity, "product_name"),
    )


# ---------------------------------------------------------------- AuditRunDetails (report.skus / report.groups)


def sku_to_entity(sku: SkuSummary, keys: Mapping[str, str], seq: int) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "type": "sku", "seq": _int(seq)}
    put_json(entity, "data", asdict(sku))
    return entity


def sku_from_entity(entity: Mapping[str, Any]) -> SkuSummary:
    data = dict(get_json(entity, "data", {}))
    data["assigned_by_groups"] = tuple(data.get("assigned_by_groups") or ())
    try:
        return SkuSummary(**data)
    except TypeError as exc:
        raise StorageError(f"stored SKU summary does not match this version: {exc}") from exc


def group_to_entity(group: GroupSummary, keys: Mapping[str, str], seq: int) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "type": "group", "seq": _int(seq)}
    put_json(entity, "data", asdict(group))
    return entity


def group_from_entity(entity: Mapping[str, Any]) -> GroupSummary:
    data = dict(get_json(entity, "data", {}))
    data["sku_ids"] = tuple(data.get("sku_ids") or ())
    try:
        return GroupSummary(**data)
    except TypeError as exc:
        raise StorageError(f"stored group summary does not match this version: {exc}") from exc


# ---------------------------------------------------------------- SkuHistory


def sku_day_to_entity(row: SkuDay, keys: Mapping[str, str]) -> dict[str, Any]:
    entity: dict[str, Any] = {
        **keys,
        "day": row.day.isoformat(),
        "enabled": _int(row.enabled),
        "consumed": _int(row.consumed),
        "warning": _int(row.warning),
        "suspended": _int(row.suspended),
        "locked_out": _int(row.locked_out),
        "waiting": _int(row.waiting),
    }
    put_text(entity, "sku_id", row.sku_id)
    return entity


def sku_day_from_entity(entity: Mapping[str, Any]) -> SkuDay:
    return SkuDay(
        sku_id=get_text(entity, "sku_id") or "",
        day=date.fromisoformat(str(entity["day"])),
        enabled=_read_int(entity, "enabled"),
        consumed=_read_int(entity, "consumed"),
        warning=_read_int(entity, "warning"),
        suspended=_read_int(entity, "suspended"),
        locked_out=_read_int(entity, "locked_out"),
        waiting=_read_int(entity, "waiting"),
    )


# ---------------------------------------------------------------- AlertState


def alert_to_entity(state: AlertState, keys: Mapping[str, str]) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "kind": state.kind, "severity": state.severity.value, "status": state.status}
    _put_optional(
        entity,
        finding_id=state.finding_id,
        first_seen=_iso(state.first_seen),
        last_seen=_iso(state.last_seen),
        last_notified=_iso(state.last_notified),
        notified_severity=state.notified_severity.value if state.notified_severity else None,
        resolved_at=_iso(state.resolved_at),
        last_run_id=state.last_run_id,
    )
    return entity


def alert_from_entity(entity: Mapping[str, Any], etag: str | None) -> AlertState:
    notified = entity.get("notified_severity")
    return AlertState(
        finding_id=get_text(entity, "finding_id") or "",
        kind=str(entity.get("kind", "")),
        severity=_enum(Severity, entity.get("severity"), "severity"),
        first_seen=_required_dt(entity, "first_seen"),
        last_seen=_required_dt(entity, "last_seen"),
        last_notified=_dt(entity, "last_notified"),
        notified_severity=_enum(Severity, notified, "severity") if notified else None,
        status=_enum(AlertStatus, entity.get("status", "open"), "status"),
        resolved_at=_dt(entity, "resolved_at"),
        last_run_id=get_text(entity, "last_run_id"),
        etag=etag,
    )


# ---------------------------------------------------------------- AlertOutbox


def outbox_to_entity(item: OutboxItem, keys: Mapping[str, str]) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "attempts": _int(item.attempts), "maybe_delivered": item.maybe_delivered}
    _put_optional(
        entity,
        channel=item.channel,
        item_id=item.id,
        run_id=item.run_id,
        created_at=_iso(item.created_at),
        last_error=item.last_error,
    )
    put_bytes(entity, "payload", item.payload)
    return entity


def outbox_from_entity(entity: Mapping[str, Any]) -> OutboxItem:
    return OutboxItem(
        channel=_enum(Channel, get_text(entity, "channel"), "channel"),
        id=get_text(entity, "item_id") or "",
        run_id=get_text(entity, "run_id") or "",
        payload=get_bytes(entity, "payload") or b"",
        created_at=_required_dt({"created_at": get_text(entity, "created_at")}, "created_at"),
        attempts=_read_int(entity, "attempts"),
        last_error=get_text(entity, "last_error"),
        maybe_delivered=entity.get("maybe_delivered") is True,
    )
