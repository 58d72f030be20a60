"""Round two, the queue pipeline (issue 16 items 2, 5, 9 and 11), with real Table and Queue Storage (Azurite) and
the sandbox: a queue sender cannot cancel a night, concurrent duplicates make one run and one digest, unexpected
exceptions are recorded with their cause, and the unknown-tenant partition stays small. Each failed before its fix."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licensing.errors import LicensingError
from licensing.model import UNKNOWN_TENANT, RunStatus
from licensing.pipeline.handlers import MessageResult, handle_audit_message, handle_timer
from licensing.pipeline.runtime import Runtime
from licensing.pipeline.schedule import occurrence_request_id
from licensing.sandbox import SandboxServer, SandboxTenant
from licensing.settings import Settings
from tests.reliability.conftest import SleepLog, WebhookReceiver, make_settings

pytestmark = pytest.mark.azurite


def settings_for(sandbox: SandboxServer, storage: str, queue: str, tenant: SandboxTenant | None, **kw: Any) -> Settings:
    if tenant is not None:
        kw["AZURE_TENANT_ID"] = tenant.tenant_id
    return make_settings(sandbox, storage=storage, AUDIT_QUEUE=queue, **kw)


async def handle_async(body: bytes | str, settings: Settings, store: Any, message_id: str, count: int = 1) -> Any:
    return await handle_audit_message(
        body, Runtime(settings, store=store, credential="none"), message_id=message_id, dequeue_count=count
    )


def handle(body: bytes | str, settings: Settings, store: Any, message_id: str, count: int = 1) -> MessageResult:
    return asyncio.run(handle_async(body, settings, store, message_id, count))


def runs_for(store: Any, tenant_id: str, request_id: str) -> list[Any]:
    return [r for r in store.runs(tenant_id, limit=300) if r.request_id == request_id]


# ------------------------------------------------------------------ item 2: a queue sender cannot cancel a night


def test_a_sku_request_with_tomorrows_schedule_id_does_not_cancel_the_night(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    """``{"scope":"sku","sku":"NO_SUCH_SKU","request_id":"schedule-<tomorrow>"}`` made the next night a no-op."""
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    tomorrow = occurrence_request_id(settings.audit_schedule, datetime.now(UTC) + timedelta(days=1))
    hostile = f'{{"scope": "sku", "sku": "NO_SUCH_SKU", "request_id": "{tomorrow}"}}'
    rejected = handle(hostile, settings, store, "evil-1")
    assert rejected.outcome == "rejected" and "reserved for the timer" in (rejected.reason or "")
    spoofed = handle(f'{{"scope": "tenant", "reason": "schedule", "request_id": "{tomorrow}"}}', settings, store, "e2")
    assert spoofed.outcome == "rejected", "reason 'schedule' without the timer's ticket"

    # Tomorrow night: the timer issues its ticket and enqueues; the tenant audit runs for real.
    request = handle_timer(settings, now=datetime.now(UTC) + timedelta(days=1), store_factory=lambda _s: store)
    assert request.request_id == tomorrow
    from licensing.pipeline.requests import encode_request

    night = handle(encode_request(request), settings, store, "timer-msg")
    assert night.outcome == "completed", night.reason
    assert night.audit is not None and night.audit.report.run.status is RunStatus.SUCCEEDED
    assert night.audit.report.findings, "the night audited the tenant"


def test_a_rejected_request_never_stands_in_for_another(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    bad = handle('{"scope": "sku", "sku": "NO_SUCH_SKU", "request_id": "shared-7"}', settings, store, "m-bad")
    assert bad.outcome == "rejected"
    # Another scope under the same request id is another request: it runs.
    good = handle('{"scope": "tenant", "request_id": "shared-7"}', settings, store, "m-good")
    assert good.outcome == "completed" and good.audit is not None and not good.audit.skipped
    # And the same request again is skipped by its own key, not by the rejection.
    again = handle('{"scope": "tenant", "request_id": "shared-7"}', settings, store, "m-good-2")
    assert again.outcome == "skipped"
    statuses = sorted(r.status.value for r in runs_for(store, small_tenant.tenant_id, "shared-7"))
    assert statuses == ["rejected", "succeeded"]


# ------------------------------------------------------------------ item 5: concurrent duplicates


def test_two_deliveries_of_one_message_at_once_make_one_run_and_one_digest(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """Both owned the tenant lease (owner = message id): 2 runs, 2 digests."""
    settings = make_settings(
        sandbox, storage=storage_connection, webhook_url=webhook.url, AUDIT_QUEUE=f"q{unique_name}",
        AZURE_TENANT_ID=small_tenant.tenant_id,
    )  # fmt: skip
    body = '{"scope": "tenant", "request_id": "twice-at-once"}'

    async def both() -> list[Any]:
        return list(await asyncio.gather(*(handle_async(body, settings, store, "same-msg", 1) for _ in range(2))))

    outcomes = sorted(r.outcome for r in asyncio.run(both()))
    assert outcomes == ["completed", "deferred"], outcomes
    assert len(runs_for(store, small_tenant.tenant_id, "twice-at-once")) == 1
    assert len(webhook.accepted) == 1


@pytest.mark.parametrize("scope", ["group", "sku"])
def test_scoped_duplicates_at_once_make_one_run(
    scope: str, sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    unique_name: str, graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    """Group and SKU requests took no lease at all."""
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    subject = (
        f'"group_id": "{small_tenant.licensed_group_ids[0]}"'
        if scope == "group"
        else f'"sku": "{small_tenant.skus[0].sku_id}"'
    )
    body = f'{{"scope": "{scope}", {subject}, "request_id": "scoped-{scope}"}}'

    async def both() -> list[Any]:
        return list(
            await asyncio.gather(handle_async(body, settings, store, "m1"), handle_async(body, settings, store, "m2"))
        )

    outcomes = sorted(r.outcome for r in asyncio.run(both()))
    assert outcomes == ["completed", "deferred"], outcomes
    assert len(runs_for(store, small_tenant.tenant_id, f"scoped-{scope}")) == 1


def test_a_later_delivery_takes_over_and_the_earlier_one_stops_before_alerting(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """A redelivery (higher dequeue count) while the first is still running: one of them alerts, once."""
    import licensing.pipeline.run as audit

    settings = make_settings(
        sandbox, storage=storage_connection, webhook_url=webhook.url, AUDIT_QUEUE=f"q{unique_name}",
        AZURE_TENANT_ID=small_tenant.tenant_id,
    )  # fmt: skip
    body = '{"scope": "tenant", "request_id": "overtaken"}'
    real = audit.evaluate_and_finish
    first_inside = asyncio.Event()
    second_done = asyncio.Event()

    async def slow_first(**kw: Any) -> Any:
        if not first_inside.is_set():  # the first delivery stalls after reading, until the second has finished
            first_inside.set()
            await second_done.wait()
        return await real(**kw)

    monkeypatch.setattr(audit, "evaluate_and_finish", slow_first)

    async def race() -> list[Any]:
        first = asyncio.create_task(handle_async(body, settings, store, "msg-x", 1))
        await first_inside.wait()
        second = await handle_async(body, settings, store, "msg-x", 2)
        second_done.set()
        return [await first, second]

    first, second = asyncio.run(race())
    assert (first.outcome, second.outcome) == ("superseded", "completed"), (first.reason, second.reason)
    assert len(webhook.accepted) == 1
    [run] = runs_for(store, small_tenant.tenant_id, "overtaken")
    assert run.status is RunStatus.SUCCEEDED


# ------------------------------------------------------------------ item 9: unexpected exceptions


def test_an_unexpected_exception_in_the_read_is_recorded_with_its_cause(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """kiota raised a bare Exception on a scheme-changing redirect: no run record, no 'attempt n of 5' line."""
    import licensing.graph

    async def broken(*a: Any, **k: Any) -> Any:
        raise Exception("Redirects with changing schemes not allowed")

    monkeypatch.setattr(licensing.graph, "read_snapshot", broken)
    monkeypatch.setattr("licensing.graph.reader.read_overview", broken)
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    with caplog.at_level(logging.ERROR), pytest.raises(LicensingError, match="changing schemes"):
        handle('{"scope": "tenant", "request_id": "bare-exc"}', settings, store, "m-bare", 2)
    [run] = runs_for(store, small_tenant.tenant_id, "bare-exc")
    assert run.status is RunStatus.FAILED and "Exception" in run.errors[0] and "changing schemes" in run.errors[0]
    assert any("attempt 2 of" in r.getMessage() for r in caplog.records)


def test_a_lease_release_that_fails_does_not_replace_the_original_error(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    from licensing.errors import AuditError, StorageUnavailableError

    async def failing(*a: Any, **k: Any) -> Any:
        raise AuditError("the original failure")

    monkeypatch.setattr("licensing.pipeline.handlers.run_audit", failing)

    def release(*a: Any, **k: Any) -> None:
        raise StorageUnavailableError("storage went away during release")

    monkeypatch.setattr(store, "release_lease", release)
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    with pytest.raises(AuditError, match="the original failure"):
        handle('{"scope": "tenant", "request_id": "release-fails"}', settings, store, "m-rel")


# ------------------------------------------------------------------ item 11: the unknown-tenant partition


def test_rejections_of_unknown_tenants_are_bounded_and_never_the_default_tenant(
    sandbox: SandboxServer, store: Any, storage_connection: str, unique_name: str, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import licensing.pipeline.admission as triggers

    monkeypatch.setattr(triggers, "REJECTED_KEEP", 5)
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", None)
    for i in range(9):
        assert handle(b'{"scope": "galaxy"}', settings, store, f"junk-{i}").outcome == "rejected"
    kept = store.runs(UNKNOWN_TENANT, limit=100)
    assert len(kept) == 5 and all(r.status is RunStatus.REJECTED for r in kept)
    assert {r.request_id for r in kept} == {f"junk-{i}" for i in range(4, 9)}, "the newest are kept"
    assert store.default_tenant_id() is None, "history must not default to the unknown tenant"


def test_two_deliveries_of_the_last_chunk_conclude_the_run_once(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """Both deliveries of the last fan-out chunk concluded the run: 2 digests, 2 mails."""
    from azure.storage.queue import QueueClient

    from licensing.pipeline.handlers import handle_chunk_message

    settings = make_settings(
        sandbox, storage=storage_connection, webhook_url=webhook.url, AUDIT_QUEUE=f"q{unique_name}",
        AUDIT_CHUNK_QUEUE=f"c{unique_name}", AZURE_TENANT_ID=small_tenant.tenant_id, FANOUT_GROUPS="3",
    )  # fmt: skip
    started = handle('{"scope": "tenant", "request_id": "fan-twice"}', settings, store, "fan-msg")
    assert started.outcome == "fanned_out", started.reason
    chunks = QueueClient.from_connection_string(storage_connection, settings.audit_chunk_queue)
    messages = list(chunks.receive_messages(max_messages=32, visibility_timeout=300))
    assert len(messages) >= 3

    def chunk(msg: Any) -> Any:
        return handle_chunk_message(msg.content, Runtime(settings, store=store, credential="none"), message_id=msg.id)

    for msg in messages[:-1]:
        assert asyncio.run(chunk(msg)).outcome == "done"

    async def both() -> list[Any]:
        return list(await asyncio.gather(chunk(messages[-1]), chunk(messages[-1])))

    outcomes = sorted(r.outcome for r in asyncio.run(both()))
    assert outcomes == ["deferred", "finished"], outcomes
    assert len(webhook.accepted) == 1, f"{len(webhook.accepted)} digests"
    [run] = runs_for(store, small_tenant.tenant_id, "fan-twice")
    assert run.status is RunStatus.SUCCEEDED
    # The deferred copy comes back later and finds the run concluded.
    again = asyncio.run(chunk(messages[-1]))
    assert again.outcome == "skipped" and len(webhook.accepted) == 1
