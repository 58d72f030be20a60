"""Round three, item 8 (and the plan part of item 9): queued plans are bounded. Real Table and Queue Storage
(Azurite), the sandbox over HTTP and a loopback Teams webhook. Each failed before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from licensing.errors import LicensingError
from licensing.model import RunStatus
from licensing.pipeline.handlers import MessageResult, handle_audit_message
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import FaultRule, Faults, SandboxServer, SandboxTenant
from licensing.settings import Settings
from tests.reliability.conftest import SleepLog, WebhookReceiver, make_settings

pytestmark = pytest.mark.azurite


def settings_for(
    sandbox: SandboxServer, storage: str, tenant: SandboxTenant, webhook: WebhookReceiver, queue: str, **kw: str
) -> Settings:
    return make_settings(sandbox, storage=storage, webhook_url=webhook.url, AZURE_TENANT_ID=tenant.tenant_id,
                         AUDIT_QUEUE=queue, **kw)  # fmt: skip


def plan_body(tenant: SandboxTenant, request_id: str) -> bytes:
    return orjson.dumps({"scope": "plan", "group_id": tenant.licensed_group_ids[0], "skus": [tenant.skus[0].sku_id],
                         "request_id": request_id})  # fmt: skip


async def handle_async(body: bytes, settings: Settings, store: Any, message_id: str, count: int = 1) -> MessageResult:
    runtime = Runtime(settings, store=store, credential="none")
    return await handle_audit_message(body, runtime, message_id=message_id, dequeue_count=count)


def handle(body: bytes, settings: Settings, store: Any, message_id: str, count: int = 1) -> MessageResult:
    return asyncio.run(handle_async(body, settings, store, message_id, count))


def graph_requests(sandbox: SandboxServer) -> int:
    return int(sandbox.stats["requests"])


def test_a_redelivered_plan_is_skipped_before_graph_is_read(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook, f"q{unique_name}")
    first = handle(plan_body(small_tenant, "plan-1"), settings, store, "m1")
    assert first.outcome == "completed", first.reason
    before = graph_requests(sandbox)
    again = handle(plan_body(small_tenant, "plan-1"), settings, store, "m1", count=2)
    assert again.outcome == "skipped"
    assert graph_requests(sandbox) == before, "a redelivery read Graph again before noticing it was answered"
    assert len(webhook.accepted) == 1


def test_plans_run_one_at_a_time_per_tenant(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook, f"q{unique_name}")

    async def both() -> list[MessageResult]:
        first = handle_async(plan_body(small_tenant, "pa"), settings, store, "ma")
        second = handle_async(plan_body(small_tenant, "pb"), settings, store, "mb")
        return list(await asyncio.gather(first, second))

    outcomes = sorted(r.outcome for r in asyncio.run(both()))
    assert outcomes == ["completed", "deferred"], outcomes


def test_plans_beyond_the_hourly_bound_are_rejected_without_reading_graph(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(
        sandbox, storage_connection, small_tenant, webhook, f"q{unique_name}", PLAN_MAX_PER_HOUR="2"
    )
    for i in range(2):
        assert handle(plan_body(small_tenant, f"r{i}"), settings, store, f"m{i}").outcome == "completed"
    before = graph_requests(sandbox)
    third = handle(plan_body(small_tenant, "r2"), settings, store, "m2")
    assert third.outcome == "rejected" and "PLAN_MAX_PER_HOUR" in (third.reason or "")
    assert graph_requests(sandbox) == before
    assert len(webhook.accepted) == 2


def test_a_plan_redone_after_its_notice_went_out_does_not_send_it_twice(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """kill -9 after the delivery, before the final record: the redelivery sent the notice again."""
    from dataclasses import replace

    settings = settings_for(sandbox, storage_connection, small_tenant, webhook, f"q{unique_name}")
    first = handle(plan_body(small_tenant, "crash-1"), settings, store, "mc")
    assert first.outcome == "completed" and len(webhook.accepted) == 1
    run = first.plan.run if first.plan else None
    assert run is not None
    store.update_run(run.tenant_id, run.id, lambda r: replace(r, status=RunStatus.RUNNING, finished_at=None))
    again = handle(plan_body(small_tenant, "crash-1"), settings, store, "mc", count=2)
    assert again.outcome == "completed", again.reason
    assert len(webhook.accepted) == 1, "the notice was sent twice"
    assert store.get_run(run.tenant_id, run.id).status is RunStatus.SUCCEEDED


def test_one_empty_sku_answer_is_retried_not_a_rejection_for_good(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook, f"q{unique_name}")
    sandbox.set_faults(Faults(rules=(FaultRule("empty_answer", "subscribedSkus", first=1),)))
    with pytest.raises(LicensingError, match="not trusted"):
        handle(plan_body(small_tenant, "empty-skus"), settings, store, "me")
    retried = handle(plan_body(small_tenant, "empty-skus"), settings, store, "me", count=2)
    assert retried.outcome == "completed", retried.reason
