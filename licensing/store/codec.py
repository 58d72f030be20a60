"""Property values that respect the service limits: split long text and bytes, spill big entities.

A string property holds at most 32K UTF-16 code units and a binary one 64 KiB; an entity holds
at most 1 MiB and 252 properties of its own
(https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
Long values are split across numbered properties (``name``, ``name__1``, …, count in
``name__parts``); when the entity would still be too big, whole values move to entities of the
overflow table, under a fresh nonce so that concurrent writers never mix their parts. Nothing is
ever truncated: what is written reads back identical.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import orjson

from licensing.errors import StorageError
from licensing.store.batching import MAX_ENTITY_BYTES, entity_size

__all__ = [
    "OVERFLOW_VALUE",
    "get_bytes",
    "get_json",
    "get_text",
    "overflow_partition",
    "overflow_refs",
    "put_bytes",
    "put_json",
    "put_text",
    "restore_overflow",
    "spill",
]

TEXT_PART_UNITS: Final = 32_000  # UTF-16 code units; the service allows 32,768
BYTES_PART: Final = 64_000  # the service allows 65,536
INLINE_BUDGET: Final = MAX_ENTITY_BYTES - 64 * 1024  # headroom for Timestamp, metadata, rounding
MAX_PROPERTIES: Final = 240  # the service allows 252 besides PartitionKey, RowKey, Timestamp
PARTS: Final = "__parts"
OVERFLOW: Final = "__ovf"
OVERFLOW_VALUE: Final = "v"


def _utf16_units(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _split_text(value: str) -> list[str]:
    parts: list[str] = []
    start = 0
    while start < len(value):
        end = start + TEXT_PART_UNITS
        chunk = value[start:end]
        # Characters outside the BMP take two UTF-16 units: shrink the chunk until it fits.
        while _utf16_units(chunk) > TEXT_PART_UNITS:
            end = start + max(1, (end - start) * 3 // 4)
            chunk = value[start:end]
        parts.append(chunk)
        start = end
    return parts


def _put_parts(entity: MutableMapping[str, Any], name: str, parts: list[Any]) -> None:
    entity[name] = parts[0]
    if len(parts) > 1:
        for index, part in enumerate(parts[1:], start=1):
            entity[f"{name}__{index}"] = part
        entity[name + PARTS] = len(parts)


def _get_parts(entity: Mapping[str, Any], name: str) -> list[Any] | None:
    if name not in entity:
        return None
    count = int(entity.get(name + PARTS, 1))
    try:
        return [entity[name]] + [entity[f"{name}__{i}"] for i in range(1, count)]
    except KeyError as exc:
        raise StorageError(f"stored value {name!r} is incomplete: part {exc.args[0]!r} is missing") from exc


def put_text(entity: MutableMapping[str, Any], name: str, value: str | None) -> None:
    """Store ``value`` under ``name`` (split when long); None stores nothing."""
    if value is None:
        return
    _put_parts(entity, name, _split_text(value) if _utf16_units(value) > TEXT_PART_UNITS else [value])


def get_text(entity: Mapping[str, Any], name: str) -> str | None:
    parts = _get_parts(entity, name)
    return None if parts is None else "".join(str(p) for p in parts)


def put_bytes(entity: MutableMapping[str, Any], name: str, value: bytes | None) -> None:
    if value is None:
        return
    parts = [value[i : i + BYTES_PART] for i in range(0, len(value), BYTES_PART)] or [b""]
    _put_parts(entity, name, parts)


def get_bytes(entity: Mapping[str, Any], name: str) -> bytes | None:
    parts = _get_parts(entity, name)
    return None if parts is None else b"".join(bytes(p) for p in parts)


def put_json(entity: MutableMapping[str, Any], name: str, value: Any) -> None:
    put_text(entity, name, orjson.dumps(value).decode("utf-8"))


def get_json(entity: Mapping[str, Any], name: str, default: Any = None) -> Any:
    text = get_text(entity, name)
    if text is None:
        return default
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise StorageError(f"stored value {name!r} is not valid JSON: {exc}") from exc


def overflow_partition(table: str, partition_key: str, row_key: str) -> str:
    """The overflow partition of one entity: a hash, since the three keys together may exceed 1 KiB."""
    return hashlib.sha256(f"{table}\n{partition_key}\n{row_key}".encode()).hexdigest()[:48]


def _value_names(entity: Mapping[str, Any]) -> list[str]:
    """Names of the stored values (not their numbered parts or markers), largest first."""
    names = [
        n
        for n in entity
        if n not in ("PartitionKey", "RowKey")
        and not n.endswith((PARTS, OVERFLOW))
        and not (("__" in n) and n.rsplit("__", 1)[1].isdigit())
    ]

    def size(name: str) -> int:
        parts = _get_parts(entity, name) or []
        return sum(len(p) if isinstance(p, bytes | bytearray | str) else 8 for p in parts)

    return sorted(names, key=size, reverse=True)


def spill(entity: dict[str, Any], table: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Move the biggest values of an oversized entity to overflow entities; returns (entity, overflow rows)."""
    if entity_size(entity) <= INLINE_BUDGET and len(entity) <= MAX_PROPERTIES:
        return entity, []
    out = dict(entity)
    partition = overflow_partition(table, str(entity["PartitionKey"]), str(entity["RowKey"]))
    nonce = uuid.uuid4().hex[:12]
    rows: list[dict[str, Any]] = []
    for name in _value_names(out):
        if entity_size(out) <= INLINE_BUDGET and len(out) <= MAX_PROPERTIES:
            break
        parts = _get_parts(out, name) or []
        if len(parts) == 1 and not isinstance(parts[0], str | bytes | bytearray):
            continue  # numbers are tiny; moving them gains nothing
        for index, part in enumerate(parts):
            rows.append({"PartitionKey": partition, "RowKey": f"{nonce}-{name}-{index:05d}", OVERFLOW_VALUE: part})
            out.pop(name if index == 0 else f"{name}__{index}", None)
        out.pop(name + PARTS, None)
        out[name + OVERFLOW] = f"{nonce}:{len(parts)}"
    if entity_size(out) > INLINE_BUDGET or len(out) > MAX_PROPERTIES:
        raise StorageError(f"entity {table}/{str(entity['RowKey'])[:40]} is too big even after moving values out")
    return out, rows


def overflow_refs(entity: Mapping[str, Any]) -> dict[str, tuple[str, int]]:
    """``{value name: (nonce, part count)}`` for the values an entity keeps in the overflow table."""
    refs: dict[str, tuple[str, int]] = {}
    for key, marker in entity.items():
        if key.endswith(OVERFLOW):
            nonce, _, count = str(marker).partition(":")
            refs[key[: -len(OVERFLOW)]] = (nonce, int(count))
    return refs


def restore_overflow(entity: Mapping[str, Any], rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The entity with its overflow values put back in place; ``rows`` maps overflow RowKey -> entity."""
    out = dict(entity)
    for name, (nonce, count) in overflow_refs(entity).items():
        parts = []
        for index in range(count):
            row = rows.get(f"{nonce}-{name}-{index:05d}")
            if row is None:
                raise StorageError(f"stored value {name!r} is incomplete: overflow part {index} is missing")
            parts.append(row[OVERFLOW_VALUE])
        del out[name + OVERFLOW]
        _put_parts(out, name, parts)
    return out
