"""The audit request contract: parse and validate queue messages (plain or base64 JSON), and encode them.

The queue message is a promise to admins and automation (docs/design.md, "Queue message"):

    {"scope": "tenant" | "group" | "sku", "group_id": "<guid>", "sku": "<skuId or skuPartNumber>",
     "request_id": "<optional>", "notify": true, "requested_by": "<optional free text>"}

or a plan (docs/plan.md): ``{"scope": "plan", "group_id": "<guid>", "skus": ["<skuId or skuPartNumber>", ...]}``
with the same optional fields,

plus ``"reason": "schedule"`` from the timer. host.json sets ``messageEncoding: none``, so the
host hands us the message text as it was put: we accept plain JSON and base64 JSON alike, and
we write plain JSON (what the host then reads). Anything else is rejected with one line that
names the problem; a rejected message is never retried.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any, Final

import orjson

from licensing.errors import BadRequestError
from licensing.model import AuditRequest, Scope, Trigger
from licensing.settings import is_guid

__all__ = ["MAX_MESSAGE_BYTES", "decode_message", "encode_request", "parse_request", "validate_request"]

# A request is a few hundred bytes; anything near the 64 KiB queue limit is not one of ours.
MAX_MESSAGE_BYTES: Final = 4096
_MAX_REQUEST_ID: Final = 200
_MAX_REQUESTED_BY: Final = 256
_FIELDS: Final = frozenset({"scope", "group_id", "sku", "skus", "request_id", "notify", "requested_by", "reason"})
MAX_PLAN_SKUS: Final = 10  # a bundle is two or three products; more is not a plan anyone makes
_REASONS: Final = frozenset({"schedule", "manual", "automation", "retry"})
_SKU_PART: Final = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
# Request ids become table keys and log fields: printable, no key-forbidden characters.
_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


_BOM: Final = b"\xef\xbb\xbf"


def decode_message(body: bytes | str) -> dict[str, Any]:
    """The JSON object in a queue message body, whether plain or base64-encoded."""
    raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
    if len(raw) > MAX_MESSAGE_BYTES * 2:  # base64 grows by a third; be generous before decoding
        raise BadRequestError(f"message is {len(raw)} bytes; an audit request is at most {MAX_MESSAGE_BYTES} bytes")
    # PowerShell and .NET writers put a UTF-8 byte order mark before the JSON: it is not part of the message.
    text = raw.strip().removeprefix(_BOM).strip()
    if not text:
        raise BadRequestError('message is empty: expected a JSON object such as {"scope": "tenant"}')
    if not text.startswith((b"{", b"[")):
        try:
            text = base64.b64decode(text, validate=True).strip().removeprefix(_BOM).strip()
        except (binascii.Error, ValueError):
            raise BadRequestError("message is neither JSON nor base64-encoded JSON") from None
    if len(text) > MAX_MESSAGE_BYTES:
        raise BadRequestError(f"message is {len(text)} bytes; an audit request is at most {MAX_MESSAGE_BYTES} bytes")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"message is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadRequestError(f"message must be a JSON object, not {type(data).__name__}")
    return data


def _text(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequestError(f"{name} must be a string, not {type(value).__name__}")
    value = value.strip()
    if len(value) > limit:
        raise BadRequestError(f"{name} is {len(value)} characters; at most {limit} are allowed")
    if _CONTROL.search(value):
        raise BadRequestError(f"{name} contains control characters")
    return value or None


def validate_request(data: dict[str, Any], *, message_id: str | None = None) -> AuditRequest:
    """Turn a decoded message into an AuditRequest, or raise BadRequestError naming the problem."""
    unknown = sorted(str(k) for k in data if k not in _FIELDS)
    if unknown:
        raise BadRequestError(f"unknown field(s) {', '.join(unknown)[:200]}; allowed: {', '.join(sorted(_FIELDS))}")

    scope_raw = data.get("scope", "tenant")
    if not isinstance(scope_raw, str) or scope_raw.lower() not in {s.value for s in Scope}:
        shown = scope_raw if isinstance(scope_raw, str) else type(scope_raw).__name__
        raise BadRequestError(f"scope {str(shown)[:40]!r} is not one of tenant, group, sku, plan")
    scope = Scope(scope_raw.lower())

    group_id = _text(data, "group_id", 64)
    sku = _text(data, "sku", 64)
    if scope in (Scope.GROUP, Scope.PLAN):
        if not group_id:
            raise BadRequestError(f"group_id is required when scope is {scope.value}")
        if not is_guid(group_id):
            raise BadRequestError(f"group_id {group_id[:40]!r} is not a GUID")
        group_id = group_id.lower()
    elif group_id is not None:
        raise BadRequestError(f"group_id is only allowed when scope is group or plan (scope is {scope.value})")
    if scope is Scope.PLAN and "sku" in data:
        raise BadRequestError('sku is not allowed when scope is plan; name the SKUs in "skus": ["SPE_E3", ...]')
    skus = _plan_skus(data) if scope is Scope.PLAN else ()
    if scope is not Scope.PLAN and "skus" in data:
        raise BadRequestError(f"skus is only allowed when scope is plan (scope is {scope.value}); use sku")
    if scope is Scope.SKU:
        if not sku:
            raise BadRequestError("sku is required when scope is sku (a skuId GUID or a skuPartNumber)")
        if not (is_guid(sku) or _SKU_PART.match(sku)):
            raise BadRequestError(f"sku {sku[:40]!r} is neither a skuId GUID nor a skuPartNumber")
        sku = sku.lower() if is_guid(sku) else sku
    elif sku is not None:
        raise BadRequestError(f"sku is only allowed when scope is sku (scope is {scope.value})")

    notify = data.get("notify", True)
    if not isinstance(notify, bool):
        raise BadRequestError(f"notify must be true or false, not {type(notify).__name__}")

    request_id = _text(data, "request_id", _MAX_REQUEST_ID) or message_id
    if request_id is not None and not _REQUEST_ID.match(request_id):
        raise BadRequestError("request_id may only contain letters, digits and _ . : @ - (at most 200)")

    reason = _text(data, "reason", 32)
    if reason is not None and reason not in _REASONS:
        raise BadRequestError(f"reason {reason!r} is not one of {', '.join(sorted(_REASONS))}")

    return AuditRequest(
        scope=scope,
        group_id=group_id,
        sku=sku,
        request_id=request_id,
        notify=notify,
        requested_by=_text(data, "requested_by", _MAX_REQUESTED_BY),
        trigger=Trigger.SCHEDULE if reason == "schedule" else Trigger.QUEUE,
        skus=skus,
    )


def _plan_skus(data: dict[str, Any]) -> tuple[str, ...]:
    """``skus`` of a plan request: 1 to MAX_PLAN_SKUS skuIds or skuPartNumbers, each once."""
    raw = data.get("skus")
    if raw is None:
        raise BadRequestError('skus is required when scope is plan, e.g. "skus": ["SPE_E3"]')
    if not isinstance(raw, list):
        raise BadRequestError(f"skus must be a list of skuIds or skuPartNumbers, not {type(raw).__name__}")
    if not 1 <= len(raw) <= MAX_PLAN_SKUS:
        raise BadRequestError(f"skus has {len(raw)} entries; a plan names 1 to {MAX_PLAN_SKUS} SKUs")
    out: list[str] = []
    for value in raw:
        if not isinstance(value, str):
            raise BadRequestError(f"skus entries must be strings, not {type(value).__name__}")
        sku = value.strip()
        if not (is_guid(sku) or _SKU_PART.match(sku)):
            raise BadRequestError(f"skus entry {sku[:40]!r} is neither a skuId GUID nor a skuPartNumber")
        sku = sku.lower() if is_guid(sku) else sku
        if sku not in out:
            out.append(sku)
    return tuple(out)


def parse_request(body: bytes | str, *, message_id: str | None = None) -> AuditRequest:
    """Decode and validate one queue message body."""
    return validate_request(decode_message(body), message_id=message_id)


def encode_request(request: AuditRequest) -> str:
    """The plain-JSON message text for a request (host.json reads messages with encoding ``none``)."""
    body: dict[str, Any] = {"scope": request.scope.value}
    if request.group_id:
        body["group_id"] = request.group_id
    if request.sku:
        body["sku"] = request.sku
    if request.skus:
        body["skus"] = list(request.skus)
    if request.request_id:
        body["request_id"] = request.request_id
    if not request.notify:
        body["notify"] = False
    if request.requested_by:
        body["requested_by"] = request.requested_by
    if request.trigger is Trigger.SCHEDULE:
        body["reason"] = "schedule"
    return orjson.dumps(body).decode("utf-8")
