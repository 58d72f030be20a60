"""Table Storage keys: reversible escaping of ids, composite keys, and the newest-first run key.

The service forbids ``/ \\ # ?`` and the control characters U+0000-U+001F and U+007F-U+009F in
PartitionKey and RowKey, and limits each to 1 KiB
(https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model).
Keys are also spliced into URLs and OData filters, where ``'`` and ``%`` cause trouble. So every
character outside ``[A-Za-z0-9._-]`` is escaped as ``~HH`` per UTF-8 byte: GUIDs, finding ids and
run ids stay readable and unchanged, anything else round-trips exactly. Keys that would still be too
long are shortened with a hash; the records always keep the original id in a property as well.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

from licensing.errors import StorageError

__all__ = [
    "EMPTY_KEY",
    "MAX_KEY_CHARS",
    "SEPARATOR",
    "bounded",
    "day_key",
    "decode_key",
    "encode_key",
    "inverted_timestamp",
    "join_keys",
    "key_upper_bound",
    "safe_key",
]

# 1 KiB: counted as UTF-16 (2 bytes a character) to stay inside either reading of the limit.
MAX_KEY_CHARS: Final = 512
ESCAPE: Final = "~"
# "~" is always followed by two hex digits in escaped text, so these two never occur inside one.
EMPTY_KEY: Final = "~z"
SEPARATOR: Final = "~_"
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_ESCAPED = re.compile(r"~([0-9A-F]{2})")
_VALID_ENCODED = re.compile(r"^(?:[A-Za-z0-9._-]|~[0-9A-F]{2})*$")
_MAX_TICKS: Final = 10**19 - 1  # inverted microseconds stay 19 digits wide until the year 318857


def encode_key(value: str) -> str:
    """Escape ``value`` for use as (part of) a key; :func:`decode_key` gives it back exactly."""
    if value == "":
        return EMPTY_KEY
    if all(c in _SAFE for c in value):
        return value
    out: list[str] = []
    for char in value:
        if char in _SAFE:
            out.append(char)
        else:
            out.extend(f"{ESCAPE}{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def decode_key(key: str) -> str:
    """The original of :func:`encode_key`; raises StorageError for text it cannot have produced."""
    if key == EMPTY_KEY:
        return ""
    if not _VALID_ENCODED.match(key):
        raise StorageError(f"not an escaped table key: {key[:40]!r}")
    if ESCAPE not in key:
        return key
    raw = bytearray()
    pos = 0
    for match in _ESCAPED.finditer(key):
        raw.extend(key[pos : match.start()].encode("ascii"))
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw.extend(key[pos:].encode("ascii"))
    return raw.decode("utf-8", "surrogatepass")


def safe_key(*parts: str) -> str:
    """A key from one or more ids: escaped, joined, and hashed down when longer than the service allows."""
    return bounded(join_keys(*parts))


def bounded(key: str) -> str:
    """``key`` (already escaped) if the service accepts its length, else a prefix of it plus a hash."""
    if len(key) <= MAX_KEY_CHARS:
        return key
    # Not reversible any more: the entity stores its ids as properties, so nothing is lost.
    digest = hashlib.sha256(key.encode("ascii")).hexdigest()
    return f"{key[: MAX_KEY_CHARS - 80]}{ESCAPE}h{digest}"


def join_keys(*parts: str) -> str:
    return SEPARATOR.join(encode_key(p) for p in parts)


def key_upper_bound(prefix: str) -> str:
    """The smallest string greater than every string that starts with ``prefix`` (for range queries)."""
    if not prefix:
        raise StorageError("a key prefix must not be empty")
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def inverted_timestamp(moment: datetime) -> str:
    """19 digits that sort newest first: the later ``moment``, the smaller the string."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    micros = (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return f"{_MAX_TICKS - micros:019d}"


def day_key(day: date) -> str:
    return f"{day:%Y%m%d}"
