"""Mapping between the records of licensing.model and the entities of the run, finding, detail, history,
alert-state and outbox tables (leases, tickets and blobs are plain rows that store.py writes itself).

Ids are kept as properties next to the (escaped) keys, so reading never depends on decoding a
key. Datetimes are ISO-8601 strings: exact to the microsecond and independent of the service's
Edm.DateTime precision. Enum values are stored by their contract strings. The fields come from the
records themselves through licensing/convert.py: a new field needs no change here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, TypeVar

from azure.data.tables import EdmType, EntityProperty

from licensing.convert import ConversionError, field_kinds, from_plain, to_plain
from licensing.errors import StorageError
from licensing.model import AlertState, Finding, GroupSummary, OutboxItem, RunInfo, SkuDay, SkuSummary
from licensing.store.codec import get_bytes, get_json, get_text, put_bytes, put_json, put_text
from licensing.suppressions import Suppression

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
T = TypeVar("T")

# Where a record's ``id`` is stored under another name (the tables' contract in docs/design.md).
_RUN_COLUMNS: Final = {"id": "run_id"}
_ID_COLUMN: Final = {
    "finding": {"id": "finding_id"},
    "item": {"id": "item_id"},
    "suppression": {"id": "suppression_id"},
}


def _int(value: int) -> Any:
    # The SDK sends Python ints as Edm.Int32 and refuses larger ones: say Int64 where it matters.
    return value if -_INT32 <= value < _INT32 else EntityProperty(value, EdmType.INT64)


def _put(entity: dict[str, Any], column: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, str):
        put_text(entity, column, value)
    elif isinstance(value, bytes):
        put_bytes(entity, column, value)
    elif isinstance(value, bool | float):
        entity[column] = value
    elif isinstance(value, int):
        entity[column] = _int(value)
    else:
        put_json(entity, column, value)


def _to_entity(
    record: Any, keys: Mapping[str, str], *, columns: Mapping[str, str] = {}, skip: tuple[str, ...] = (), **extra: Any
) -> dict[str, Any]:
    """The record's fields as entity properties (``columns`` renames some), after ``keys`` and ``extra``."""
    entity: dict[str, Any] = {**keys}
    for name, value in extra.items():
        _put(entity, name, value)
    for name, value in to_plain(record, keep_bytes=True).items():
        if name not in skip:
            _put(entity, columns.get(name, name), value)
    return entity


def _from_entity(kind: type[T], entity: Mapping[str, Any], *, columns: Mapping[str, str] = {}, **given: Any) -> T:
    """The record ``_to_entity`` wrote; a property this version cannot read is one StorageError line."""
    plain: dict[str, Any] = {}
    for name, how in field_kinds(kind).items():
        if name in given:
            continue
        column = columns.get(name, name)
        if how == "text":
            value: Any = get_text(entity, column)
        elif how == "json":
            value = get_json(entity, column)
        elif how == "bytes":
            value = get_bytes(entity, column)
        else:
            value = entity.get(column)
            value = value.value if isinstance(value, EntityProperty) else value
        if value is not None:
            plain[name] = value
    plain.update(given)
    try:
        return from_plain(kind, plain, root=kind.__name__)
    except ConversionError as exc:
        raise StorageError(f"stored {exc} (written by another version?)") from None


# ---------------------------------------------------------------- AuditRuns


def run_to_entity(
    run: RunInfo,
    keys: Mapping[str, str],
    *,
    counts: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    findings: int | None = None,
) -> dict[str, Any]:
    entity = _to_entity(run, keys, columns=_RUN_COLUMNS, type="run")
    put_json(entity, "counts", dict(counts or {}))
    put_json(entity, "extra", dict(extra or {}))
    if findings is not None:
        entity["findings"] = _int(findings)
    return entity


def run_from_entity(entity: Mapping[str, Any]) -> RunInfo:
    return _from_entity(RunInfo, entity, columns=_RUN_COLUMNS)


# ---------------------------------------------------------------- AuditFindings


def finding_to_entity(finding: Finding, keys: Mapping[str, str], seq: int) -> dict[str, Any]:
    return _to_entity(finding, keys, columns=_ID_COLUMN["finding"], seq=seq)


def finding_from_entity(entity: Mapping[str, Any]) -> Finding:
    return _from_entity(Finding, entity, columns=_ID_COLUMN["finding"])


# ---------------------------------------------------------------- AuditRunDetails (report.skus / report.groups)


def sku_to_entity(sku: SkuSummary, keys: Mapping[str, str], seq: int) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "type": "sku", "seq": _int(seq)}
    put_json(entity, "data", to_plain(sku))
    return entity


def sku_from_entity(entity: Mapping[str, Any]) -> SkuSummary:
    return _detail(SkuSummary, entity)


def group_to_entity(group: GroupSummary, keys: Mapping[str, str], seq: int) -> dict[str, Any]:
    entity: dict[str, Any] = {**keys, "type": "group", "seq": _int(seq)}
    put_json(entity, "data", to_plain(group))
    return entity


def group_from_entity(entity: Mapping[str, Any]) -> GroupSummary:
    return _detail(GroupSummary, entity)


def _detail(kind: type[T], entity: Mapping[str, Any]) -> T:
    try:
        return from_plain(kind, get_json(entity, "data", {}), root=f"{kind.__name__} data")
    except ConversionError as exc:
        raise StorageError(f"stored {exc} (written by another version?)") from None


# ---------------------------------------------------------------- SkuHistory


def sku_day_to_entity(row: SkuDay, keys: Mapping[str, str]) -> dict[str, Any]:
    return _to_entity(row, keys)


def sku_day_from_entity(entity: Mapping[str, Any]) -> SkuDay:
    return _from_entity(SkuDay, entity)


# ---------------------------------------------------------------- AlertState


def alert_to_entity(state: AlertState, keys: Mapping[str, str]) -> dict[str, Any]:
    return _to_entity(state, keys, skip=("etag",))


def alert_from_entity(entity: Mapping[str, Any], etag: str | None) -> AlertState:
    return _from_entity(AlertState, entity, etag=etag)


# ---------------------------------------------------------------- AlertSuppressions


def suppression_to_entity(s: Suppression, keys: Mapping[str, str]) -> dict[str, Any]:
    return _to_entity(s, keys, columns=_ID_COLUMN["suppression"])


def suppression_from_entity(entity: Mapping[str, Any]) -> Suppression:
    return _from_entity(Suppression, entity, columns=_ID_COLUMN["suppression"])


# ---------------------------------------------------------------- AlertOutbox


def outbox_to_entity(item: OutboxItem, keys: Mapping[str, str]) -> dict[str, Any]:
    return _to_entity(item, keys, columns=_ID_COLUMN["item"])


def outbox_from_entity(entity: Mapping[str, Any]) -> OutboxItem:
    return _from_entity(OutboxItem, entity, columns=_ID_COLUMN["item"])
