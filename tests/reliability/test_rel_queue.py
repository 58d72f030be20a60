"""Queue messages through ``handle_audit_message`` with real Table and Queue Storage (Azurite): hostile bodies are
rejected once with their reason recorded, never retried; duplicates are not processed twice; a transient failure
goes the host's bounded retry-then-poison way with the last error kept on the run."""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import orjson
import pytest

from licensing.errors import LicensingError
from licensing.model import RunStatus
from licensing.pipeline.handlers import MAX_DEQUEUE_COUNT, MessageResult, handle_audit_message
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import FaultRule, Faults, SandboxServer, SandboxTenant
from licensing.settings import Settings
from tests.reliability.conftest import SleepLog, WebhookReceiver, assert_matches_truth, make_settings

pytestmark = pytest.mark.azurite

GUID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def settings_for(sandbox: SandboxServer, tenant: SandboxTenant, storage: str, queue: str, **kw: Any) -> Settings:
    return make_settings(sandbox, storage=storage, AZURE_TENANT_ID=tenant.tenant_id, AUDIT_QUEUE=queue, **kw)


def handle(body: bytes | str, settings: Settings, store: Any, message_id: str, dequeue_count: int = 1) -> MessageResult:
    return asyncio.run(
        handle_audit_message(
            body,
            Runtime(settings, store=store, credential="none"),
            message_id=message_id,
            dequeue_count=dequeue_count,
        )
    )


def runs_for(store: Any, tenant_id: str, request_id: str) -> list[Any]:
    return [r for r in store.runs(tenant_id, limit=200) if r.request_id == request_id]


HOSTILE = {
    "malformed-json": b'{"scope": "tenant"',
    "not-an-object": b'["tenant"]',
    "empty": b"   ",
    "wrong-type-scope": b'{"scope": 5}',
    "wrong-type-notify": b'{"scope": "tenant", "notify": "yes"}',
    "wrong-type-group-id": b'{"scope": "group", "group_id": 123}',
    "unknown-scope": b'{"scope": "galaxy"}',
    "unknown-field": b'{"scope": "tenant", "run_as": "admin"}',
    "non-guid-group": b'{"scope": "group", "group_id": "../../users/42"}',
    "non-guid-sku": b'{"scope": "sku", "sku": "E5; DROP TABLE"}',
    "group-without-id": b'{"scope": "group"}',
    "bad-request-id": b'{"scope": "tenant", "request_id": "a/b#c?d"}',
    "control-chars": b'{"scope": "tenant", "requested_by": "x\\u0000\\u001b[31m"}',
    "64KB-valid-json": b'{"scope": "tenant"' + b" " * (64 * 1024 - 20) + b"}",  # valid but for its size
    "64KB": orjson.dumps({"scope": "tenant", "requested_by": "x" * (64 * 1024 - 40)}),
    "64KB-base64": base64.b64encode(orjson.dumps({"scope": "tenant", "requested_by": "x" * 48_000})),
    "base64-garbage": b"bm90IGpzb24=",  # base64 of "not json"
    "not-base64": b"%%%%",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_message_is_rejected_once_with_its_reason_recorded(
    name: str, sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    unique_name: str, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, small_tenant, storage_connection, f"q{unique_name}")
    message_id = f"msg-{name}"
    with caplog.at_level(logging.ERROR, logger="licensing"):
        first = handle(HOSTILE[name], settings, store, message_id)
        again = handle(HOSTILE[name], settings, store, message_id, dequeue_count=2)  # the host delivers it again
    assert first.outcome == again.outcome == "rejected"
    assert first.reason and "\n" not in first.reason and len(first.reason) < 400
    rows = runs_for(store, small_tenant.tenant_id, message_id)
    assert len(rows) == 1, "recorded once, however often it is delivered"
    assert rows[0].status is RunStatus.REJECTED and rows[0].errors == (first.reason,)
    assert sandbox.stats["requests"] == 0, "a rejected request never reaches Graph"
    assert any(first.reason in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("encoding", ["plain", "base64"])
def test_plain_and_base64_messages_from_the_real_queue_both_run(
    encoding: str, sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    unique_name: str, graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    from azure.storage.queue import QueueClient

    from licensing.pipeline.queues import put_message

    settings = settings_for(sandbox, small_tenant, storage_connection, f"q{unique_name}")
    text = '{"scope": "tenant", "requested_by": "runbook"}'
    if encoding == "base64":
        text = base64.b64encode(text.encode()).decode()
    put_message(settings.storage, settings.audit_queue, text)
    queue = QueueClient.from_connection_string(storage_connection, settings.audit_queue)
    message = next(iter(queue.receive_messages(max_messages=1)))
    result = handle(message.content, settings, store, message.id, dequeue_count=message.dequeue_count)
    assert result.outcome == "completed"
    assert result.audit is not None
    assert_matches_truth(result.audit.report, small_tenant)
    assert [r.status for r in runs_for(store, small_tenant.tenant_id, message.id)] == [RunStatus.SUCCEEDED]


def test_duplicate_delivery_is_processed_once_and_alerts_once(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, small_tenant, storage_connection, f"q{unique_name}", webhook_url=webhook.url)
    body = b'{"scope": "tenant", "request_id": "runbook-42"}'
    first = handle(body, settings, store, "m1")
    second = handle(body, settings, store, "m2")  # same request id, another delivery of it
    assert (first.outcome, second.outcome) == ("completed", "skipped")
    rows = runs_for(store, small_tenant.tenant_id, "runbook-42")
    assert [r.status for r in rows] == [RunStatus.SUCCEEDED]
    assert len(webhook.accepted) == 1
    assert first.audit is not None and second.audit is not None
    assert second.audit.report.run.id == first.audit.report.run.id
    assert {f.id for f in second.audit.report.findings} == {f.id for f in first.audit.report.findings}


def test_concurrent_duplicates_run_once_the_other_is_deferred(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    from azure.storage.queue import QueueClient

    settings = settings_for(sandbox, small_tenant, storage_connection, f"q{unique_name}")
    body = b'{"scope": "tenant", "request_id": "twice-at-once"}'

    async def both() -> list[MessageResult]:
        return list(
            await asyncio.gather(
                *(
                    handle_audit_message(body, Runtime(settings, store=store, credential="none"), message_id=f"c{i}")
                    for i in range(2)
                )
            )
        )

    outcomes = sorted(r.outcome for r in asyncio.run(both()))
    assert outcomes in (["completed", "deferred"], ["completed", "skipped"])
    assert [r.status for r in runs_for(store, small_tenant.tenant_id, "twice-at-once")] == [RunStatus.SUCCEEDED]
    if "deferred" in outcomes:  # put back, under the same request id, to be skipped when it comes round
        queue = QueueClient.from_connection_string(storage_connection, settings.audit_queue)
        props = queue.get_queue_properties()
        assert props.approximate_message_count == 1


def test_transient_failure_is_retried_by_the_host_a_bounded_number_of_times_then_poisoned(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, small_tenant, storage_connection, f"q{unique_name}")
    sandbox.set_faults(Faults(rules=(FaultRule("503", "groups", retry_after="0"),)))  # Graph down for good
    body = b'{"scope": "tenant", "request_id": "doomed"}'
    assert 1 <= MAX_DEQUEUE_COUNT <= 10, "host.json must poison a failing message after a few attempts"
    with caplog.at_level(logging.ERROR, logger="licensing"):
        for attempt in range(1, MAX_DEQUEUE_COUNT + 1):
            with pytest.raises(LicensingError, match="503"):
                handle(body, settings, store, "poison-me", dequeue_count=attempt)
    messages = [r.getMessage() for r in caplog.records if "doomed" in r.getMessage()]
    assert sum("the host will retry" in m for m in messages) == MAX_DEQUEUE_COUNT - 1
    assert sum("poison queue" in m for m in messages) == 1
    rows = runs_for(store, small_tenant.tenant_id, "doomed")
    assert rows and all(r.status is RunStatus.FAILED for r in rows), "a failed run never looks finished"
    assert all("503" in r.errors[0] for r in rows)
    # Once Graph is back, the message taken out of the poison queue runs once and is then done.
    sandbox.set_faults(Faults())
    assert handle(body, settings, store, "poison-me", dequeue_count=1).outcome == "completed"
    assert handle(body, settings, store, "poison-me", dequeue_count=2).outcome == "skipped"
    assert [r.status for r in runs_for(store, small_tenant.tenant_id, "doomed")].count(RunStatus.SUCCEEDED) == 1
