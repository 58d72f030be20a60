"""The queue message contract: plain and base64 JSON, validation with one-line reasons, encoding."""

from __future__ import annotations

import base64

import orjson
import pytest

from licensing.errors import BadRequestError
from licensing.model import AuditRequest, Scope, Trigger
from licensing.pipeline.requests import MAX_MESSAGE_BYTES, encode_request, parse_request

GROUP = "0b5c8f6e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"


def test_plain_and_base64_json_are_the_same_request() -> None:
    body = orjson.dumps({"scope": "group", "group_id": GROUP, "requested_by": "runbook"})
    plain = parse_request(body, message_id="m1")
    encoded = parse_request(base64.b64encode(body), message_id="m1")
    assert plain == encoded
    assert plain.scope is Scope.GROUP and plain.group_id == GROUP and plain.request_id == "m1"
    assert plain.trigger is Trigger.QUEUE and plain.notify is True


def test_defaults_to_a_tenant_audit_and_the_message_id() -> None:
    req = parse_request(b"{}", message_id="abc-123")
    assert req == AuditRequest(scope=Scope.TENANT, request_id="abc-123")


def test_timer_reason_marks_a_scheduled_run() -> None:
    req = parse_request('{"scope":"tenant","reason":"schedule","request_id":"schedule-20261124T023000Z"}')
    assert req.trigger is Trigger.SCHEDULE and req.request_id == "schedule-20261124T023000Z"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty"),
        (b"not json at all!", "neither JSON nor base64"),
        (b"{", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (base64.b64encode(b"[1]"), "must be a JSON object"),
        (b'{"scope": "planet"}', "scope 'planet' is not one of"),
        (b'{"scope": 3}', "is not one of tenant, group, sku"),
        (b'{"scope": "group"}', "group_id is required"),
        (b'{"scope": "group", "group_id": "12345"}', "is not a GUID"),
        (b'{"scope": "tenant", "group_id": "' + GROUP.encode() + b'"}', "only allowed when scope is group"),
        (b'{"scope": "sku"}', "sku is required"),
        (b'{"scope": "sku", "sku": "E5 <script>"}', "neither a skuId GUID nor a skuPartNumber"),
        (b'{"notify": "yes"}', "notify must be true or false"),
        (b'{"scope": "tenant", "colour": "blue"}', "unknown field(s) colour"),
        (b'{"request_id": "a/b#c"}', "request_id may only contain"),
        (b'{"requested_by": "x\\u0000y"}', "control characters"),
        (b'{"requested_by": 5}', "requested_by must be a string"),
        (b'{"reason": "because"}', "reason 'because' is not one of"),
    ],
)
def test_bad_messages_are_rejected_with_a_one_line_reason(body: bytes, reason: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        parse_request(body, message_id="m")
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_oversized_message_is_rejected_before_parsing() -> None:
    body = orjson.dumps({"scope": "tenant", "requested_by": "x" * 65_000})
    with pytest.raises(BadRequestError, match="at most 4096 bytes"):
        parse_request(body)
    just_too_big = b'{"requested_by": "' + b"y" * (MAX_MESSAGE_BYTES - 15) + b'"}'
    with pytest.raises(BadRequestError, match="at most"):
        parse_request(just_too_big)


def test_sku_accepts_guid_or_part_number() -> None:
    assert parse_request(b'{"scope":"sku","sku":"SPE_E5"}').sku == "SPE_E5"
    guid = "06EBC4EE-1BB5-47DD-8120-11324BC54E06"
    assert parse_request(orjson.dumps({"scope": "sku", "sku": guid})).sku == guid.lower()


@pytest.mark.parametrize(
    "request_",
    [
        AuditRequest(scope=Scope.TENANT, trigger=Trigger.SCHEDULE, request_id="schedule-20261124T023000Z"),
        AuditRequest(scope=Scope.GROUP, group_id=GROUP, request_id="r1", notify=False, requested_by="joiner flow"),
        AuditRequest(scope=Scope.SKU, sku="ENTERPRISEPACK", request_id="r2"),
    ],
)
def test_encode_round_trips_as_plain_json(request_: AuditRequest) -> None:
    text = encode_request(request_)
    assert text.startswith("{")  # host.json messageEncoding none: the host reads it as it is
    assert parse_request(text) == request_
