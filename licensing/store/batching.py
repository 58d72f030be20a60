"""Split table writes into valid transactions: one partition, at most 100 operations, under 4 MiB.

The service rejects a transaction that spans partitions, holds more than 100 operations, touches
one entity twice, or carries more than 4 MiB of payload
(https://learn.microsoft.com/rest/api/storageservices/performing-entity-group-transactions).
Azurite does not enforce the partition rule, so this module does, and it is unit tested on its own.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from azure.data.tables import EntityProperty

__all__ = [
    "MAX_ENTITY_BYTES",
    "MAX_TRANSACTION_BYTES",
    "MAX_TRANSACTION_OPS",
    "Operation",
    "entity_size",
    "plan_transactions",
    "wire_size",
]

MAX_TRANSACTION_OPS: Final = 100
MAX_TRANSACTION_BYTES: Final = 4 * 1024 * 1024
MAX_ENTITY_BYTES: Final = 1024 * 1024
# Per-operation framing in the multipart body (headers, boundaries, URL): generous on purpose.
_OP_OVERHEAD: Final = 1024
_TRANSACTION_BUDGET: Final = MAX_TRANSACTION_BYTES - 64 * 1024

# (verb, entity, keyword arguments) as TableClient.submit_transaction takes them.
Operation = tuple[str, Mapping[str, Any], Mapping[str, Any]]


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _value_size(value: Any) -> int:
    if isinstance(value, EntityProperty):
        value = value.value
    if isinstance(value, str):
        return 4 + 2 * _utf16_len(value)
    if isinstance(value, bytes | bytearray):
        return 4 + len(value)
    if isinstance(value, bool):
        return 1
    return 8  # int64, double, datetime; a GUID (16) is never used here


def entity_size(entity: Mapping[str, Any]) -> int:
    """The entity's size as the service counts it against the 1 MiB limit (strings are UTF-16)."""
    # Formula from the data model page: 4 + len(PK+RK) * 2 + per property 8 + len(name) * 2 + value.
    size = 4
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += 2 * _utf16_len(str(value))
        else:
            size += 8 + 2 * len(name) + _value_size(value)
    return size


def wire_size(entity: Mapping[str, Any]) -> int:
    """An upper estimate of the entity's JSON size in a request body (binary goes as base64, text may be escaped)."""
    size = _OP_OVERHEAD
    for name, value in entity.items():
        raw = value.value if isinstance(value, EntityProperty) else value
        size += len(name) * 2 + 40
        if isinstance(raw, str):
            # JSON may escape a character as \uXXXX (6 bytes); UTF-8 uses at most 4 per code point.
            size += 6 * len(raw) if not raw.isascii() else len(raw) + raw.count('"') + raw.count("\\")
        elif isinstance(raw, bytes | bytearray):
            size += len(base64.b64encode(raw))
        else:
            size += 32
    return size


def plan_transactions(
    operations: Iterable[Operation],
    *,
    max_ops: int = MAX_TRANSACTION_OPS,
    max_bytes: int = _TRANSACTION_BUDGET,
) -> list[list[Operation]]:
    """Group operations into transactions: one partition each, at most ``max_ops``, under ``max_bytes``.

    Operations keep their relative order within a partition; an entity that appears twice starts a
    new transaction (the service refuses a transaction that touches an entity twice).
    """
    if max_ops < 1 or max_ops > MAX_TRANSACTION_OPS:
        raise ValueError(f"max_ops must be 1..{MAX_TRANSACTION_OPS}")
    by_partition: dict[str, list[Operation]] = {}
    for op in operations:
        by_partition.setdefault(str(op[1]["PartitionKey"]), []).append(op)
    plans: list[list[Operation]] = []
    for ops in by_partition.values():
        current: list[Operation] = []
        rows: set[str] = set()
        used = 0
        for op in ops:
            row = str(op[1]["RowKey"])
            size = wire_size(op[1])
            if current and (len(current) >= max_ops or row in rows or used + size > max_bytes):
                plans.append(current)
                current, rows, used = [], set(), 0
            current.append(op)
            rows.add(row)
            used += size
        if current:
            plans.append(current)
    return plans


def partitions(plan: Sequence[Operation]) -> set[str]:
    return {str(op[1]["PartitionKey"]) for op in plan}
