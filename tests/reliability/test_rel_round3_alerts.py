"""Round three, item 3: a digest is never lost for good. Real Table Storage (Azurite), the sandbox and a loopback
Teams webhook. Failed before its fix (the dead item's findings stayed "notified": 0 posts in the runs after)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from licensing.model import AuditRequest, Scope, Trigger
from licensing.pipeline.conclusion import AuditOutcome
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import SandboxServer
from licensing.settings import Settings
from tests.reliability.conftest import Reply, SleepLog, WebhookReceiver, make_settings

pytestmark = pytest.mark.azurite


def run(settings: Settings, store: Any, request_id: str) -> AuditOutcome:
    request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.QUEUE, request_id=request_id)
    return asyncio.run(run_audit(request, Runtime(settings, store=store, credential="none"), alerts=True))


def card_text(body: bytes) -> str:
    card = orjson.loads(body)["attachments"][0]["content"]
    return " ".join(str(b.get("text", "")) for b in card["body"]).replace("\\", "")


def test_a_dead_digest_makes_its_findings_due_again_and_the_next_card_says_it_may_be_lost(
    sandbox: SandboxServer, store: Any, storage_connection: str, webhook: WebhookReceiver, graph_sleeps: SleepLog,
    alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = make_settings(sandbox, storage=storage_connection, webhook_url=webhook.url)
    webhook.then(Reply(502), Reply(502))  # two unknown outcomes: the first digest is dead
    first = run(settings, store, "lost-1")
    assert first.delivery is not None and first.delivery.failed
    sent_first = {f.id for f in first.delivery.plan.findings} if first.delivery.plan else set()
    [first_item] = store.outbox_list()
    second = run(settings, store, "lost-2")
    assert second.delivery is not None and [d[1] for d in second.delivery.dead] == [first_item.id]
    assert webhook.accepted == []

    third = run(settings, store, "lost-3")  # the channel is healthy again
    assert third.delivery is not None
    assert len(webhook.accepted) == 1, "the findings of the dead digest are sent again"
    text = card_text(webhook.accepted[0])
    assert "may not have arrived" in text and first_item.id in text
    resent = orjson.loads(webhook.accepted[0])
    assert resent and sent_first, "the first digest carried findings"
    [dead] = [i for i in store.outbox_list() if i.id == first_item.id]
    assert dead.lost_told, "told once"

    run(settings, store, "lost-4")
    assert len(webhook.accepted) == 1, "nothing is news any more: no fourth card, no second 'may not have arrived'"
