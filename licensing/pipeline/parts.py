"""The fan-out's wire formats: the chunk message, and snapshot parts (overview, chunk results) as compact blobs.

Only this app writes them, so a malformed one is a bug or tampering: it is refused with a reason, never
guessed at. Blobs are orjson + zlib of the frozen records; ``FORMAT`` versions them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

import orjson

from licensing.errors import BadRequestError, StorageError
from licensing.model import (
    GraphStats,
    GroupRef,
    LicenseAssignment,
    LicensedGroup,
    Part,
    Scope,
    Sku,
    TenantSnapshot,
    Unreadable,
    User,
)
from licensing.pipeline.requests import decode_message

__all__ = [
    "MAX_CHUNKS",
    "ChunkRequest",
    "decode_overview",
    "decode_part",
    "encode_chunk_message",
    "encode_overview",
    "encode_part",
    "parse_chunk_message",
]

FORMAT: Final = 1
MAX_CHUNKS: Final = 100_000
_CHUNK_FIELDS: Final = frozenset({"run_id", "tenant_id", "chunk", "plan", "request_id"})
_REQUIRED: Final = ("run_id", "tenant_id", "chunk", "plan")
# Ids become table keys and log fields: printable, no key-forbidden characters (as request ids).
_ID: Final = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")
_PLAN: Final = re.compile(r"^[0-9a-f]{12}$")


# ---------------------------------------------------------------- the chunk message


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """One chunk message: which run, which plan of it, which chunk of its licensed groups."""

    run_id: str
    tenant_id: str
    chunk: int
    plan: str
    request_id: str | None = None


def parse_chunk_message(body: bytes | str) -> ChunkRequest:
    """Decode and validate a chunk message (plain or base64 JSON); BadRequestError names the problem."""
    data = decode_message(body)
    unknown = sorted(str(k) for k in data if k not in _CHUNK_FIELDS)
    if unknown:
        raise BadRequestError(f"chunk message has unknown field(s) {', '.join(unknown)[:200]}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise BadRequestError(f"chunk message lacks {', '.join(missing)}")
    for name in ("run_id", "tenant_id"):
        value = data[name]
        if not isinstance(value, str) or not _ID.match(value):
            raise BadRequestError(f"chunk message {name} must be letters, digits and _ . : @ - (at most 200)")
    plan = data["plan"]
    if not isinstance(plan, str) or not _PLAN.match(plan):
        raise BadRequestError("chunk message plan must be 12 lowercase hex digits")
    chunk = data["chunk"]
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk < MAX_CHUNKS:
        raise BadRequestError(f"chunk message chunk must be an integer from 0 to {MAX_CHUNKS - 1}")
    request_id = data.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not _ID.match(request_id)):
        raise BadRequestError("chunk message request_id must be letters, digits and _ . : @ - (at most 200)")
    return ChunkRequest(
        run_id=data["run_id"], tenant_id=data["tenant_id"], chunk=chunk, plan=plan, request_id=request_id
    )


def encode_chunk_message(chunk: ChunkRequest) -> str:
    """Plain JSON, the encoding host.json reads (``messageEncoding: none``)."""
    body: dict[str, Any] = {
        "run_id": chunk.run_id,
        "tenant_id": chunk.tenant_id,
        "chunk": chunk.chunk,
        "plan": chunk.plan,
    }
    if chunk.request_id:
        body["request_id"] = chunk.request_id
    return orjson.dumps(body).decode("utf-8")


# ---------------------------------------------------------------- snapshot parts as compact blobs


def _pack(value: Any) -> bytes:
    # orjson writes the frozen dataclasses and datetimes directly; zlib shrinks the repeated field names.
    return zlib.compress(orjson.dumps(value), 6)


def _unpack(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise StorageError(f"stored {what} is not readable: {exc}") from None
    if not isinstance(value, dict) or value.get("v") != FORMAT:
        raise StorageError(f"stored {what} has an unknown format")
    return value


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _sku(d: Mapping[str, Any]) -> Sku:
    return Sku(**{**d, "next_lifecycle": _time(d.get("next_lifecycle"))})


def _group(d: Mapping[str, Any]) -> LicensedGroup:
    return LicensedGroup(
        **{
            **d,
            "sku_ids": tuple(d.get("sku_ids", ())),
            "user_ids": tuple(d.get("user_ids", ())),
            "member_groups": tuple(GroupRef(**g) for g in d.get("member_groups", ())),
            "unknown_members": tuple(d.get("unknown_members", ())),
        }
    )


def _assignment(d: Mapping[str, Any]) -> LicenseAssignment:
    return LicenseAssignment(**{**d, "last_updated": _time(d.get("last_updated"))})


def _user(d: Mapping[str, Any]) -> User:
    return User(
        **{
            **d,
            "assigned_sku_ids": tuple(d.get("assigned_sku_ids", ())),
            "assignments": tuple(_assignment(a) for a in d.get("assignments", ())),
        }
    )


def _decode(what: str, build: Callable[[], TenantSnapshot]) -> TenantSnapshot:
    try:
        return build()
    except (TypeError, ValueError, KeyError) as exc:  # a field renamed between versions, a corrupt value
        raise StorageError(f"stored {what} does not match this version: {exc}") from None


def encode_overview(overview: TenantSnapshot) -> bytes:
    """The coordinator's read (tenant, SKUs, groups without members, what was unreadable, Graph figures)."""
    return _pack(
        {
            "v": FORMAT,
            "tenant_id": overview.tenant_id,
            "tenant_name": overview.tenant_name,
            "read_at": overview.read_at,
            "skus": overview.skus,
            "groups": overview.groups,
            "unreadable": overview.unreadable,
            "stats": overview.stats,
        }
    )


def decode_overview(data: bytes) -> TenantSnapshot:
    d = _unpack(data, "fan-out overview")
    return _decode(
        "fan-out overview",
        lambda: TenantSnapshot(
            tenant_id=d["tenant_id"],
            tenant_name=d["tenant_name"],
            scope=Scope.TENANT,
            read_at=_time(d["read_at"]),
            skus=tuple(_sku(s) for s in d["skus"]),
            groups=tuple(_group(g) for g in d["groups"]),
            unreadable=tuple(Unreadable(**{**u, "what": Part(u["what"])}) for u in d["unreadable"]),
            stats=GraphStats(**d["stats"]),
        ),
    )


def encode_part(part: TenantSnapshot) -> bytes:
    """One chunk's read: its groups with their members, those users (each once), what was unreadable;
    or the users scan (``scope_id`` marks it)."""
    return _pack(
        {
            "v": FORMAT,
            "scope_id": part.scope_id,
            "groups": part.groups,
            "users": list(part.users.values()),
            "unreadable": part.unreadable,
            "stats": part.stats,
        }
    )


def decode_part(data: bytes) -> TenantSnapshot:
    d = _unpack(data, "fan-out part")

    def build() -> TenantSnapshot:
        users = {u.id: u for u in (_user(x) for x in d["users"])}
        return TenantSnapshot(
            tenant_id="",
            scope_id=d.get("scope_id"),
            groups=tuple(_group(g) for g in d["groups"]),
            users=MappingProxyType(users),
            unreadable=tuple(Unreadable(**{**u, "what": Part(u["what"])}) for u in d["unreadable"]),
            stats=GraphStats(**d["stats"]),
        )

    return _decode("fan-out part", build)
