"""Round two, alerts (issue 16 items 3 and 4): a send whose outcome is unknown is never retried in the run and
is replayed at most once, with its outbox id in the message; a webhook URL httpx cannot use never fails the
audit. Real store (Azurite), a loopback webhook and the sandbox's sendMail; each test failed before its fix."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import orjson
import pytest

from licensing.model import AuditRequest, RunStatus, Scope, Trigger
from licensing.pipeline.conclusion import AuditOutcome
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import FaultRule, Faults, SandboxServer
from licensing.settings import Secret, Settings
from tests.reliability.conftest import Reply, SleepLog, WebhookReceiver, make_settings

pytestmark = pytest.mark.azurite


def run(settings: Settings, store: Any, request_id: str) -> AuditOutcome:
    request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.QUEUE, request_id=request_id)
    return asyncio.run(run_audit(request, Runtime(settings, store=store, credential="none"), alerts=True))


def first_run_id(store: Any, request_id: str) -> str:
    return next(r.id for r in store.runs(store.default_tenant_id() or "", limit=20) if r.request_id == request_id)


def test_a_webhook_that_fires_but_answers_slowly_gets_one_card_then_one_replay(
    sandbox: SandboxServer, store: Any, storage_connection: str, webhook: WebhookReceiver, graph_sleeps: SleepLog,
    alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """Item 3: the flow ran each time but answered after the client's timeout: 5 identical cards."""
    settings = make_settings(sandbox, storage=storage_connection, webhook_url=webhook.url)
    webhook.then(*[Reply(202, hold_s=1.5)] * 5)
    first = run(settings, store, "slow-1")
    assert first.report.run.status is RunStatus.SUCCEEDED
    assert webhook.attempts == 1, f"{webhook.attempts} cards posted in one run"
    [item] = store.outbox_list()
    assert item.maybe_delivered and item.last_error and "may have been delivered" in item.last_error
    assert first.delivery is not None and first.delivery.failed

    webhook.script.clear()  # the flow answers in time again
    second = run(settings, store, "slow-2")
    assert second.delivery is not None and second.delivery.replayed == [("teams", item.id)]
    assert webhook.attempts == 2 and store.outbox_list() == []
    card = orjson.loads(webhook.accepted[-1])["attachments"][0]["content"]
    texts = [block.get("text", "").replace("\\", "") for block in card["body"]]
    assert any(f"alert {item.id}" in text for text in texts), "the card names its outbox id"


def test_a_second_unknown_outcome_is_dead_not_sent_a_third_time(
    sandbox: SandboxServer, store: Any, storage_connection: str, webhook: WebhookReceiver, graph_sleeps: SleepLog,
    alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = make_settings(sandbox, storage=storage_connection, webhook_url=webhook.url)
    webhook.then(*[Reply(502)] * 10)
    run(settings, store, "twice-1")
    second = run(settings, store, "twice-2")
    assert second.delivery is not None and second.delivery.dead
    run(settings, store, "twice-3")
    # The dead item was posted twice, never a third time. Since round three (issue 27, item 3) its findings are due
    # again: the second run's digest carries them, and the third run replays that one (the third post).
    assert webhook.attempts == 3
    dead = [i for i in store.outbox_list() if i.last_error and i.last_error.startswith("[dead]")]
    assert [i.run_id for i in dead] == [first_run_id(store, "twice-1")]


@pytest.mark.parametrize("fault", ["timeout", "500"])
def test_sendmail_with_an_unknown_outcome_is_sent_once_in_the_run(
    fault: str, sandbox: SandboxServer, store: Any, storage_connection: str, graph_sleeps: SleepLog,
    alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """Item 3: a timed-out sendMail was sent 5 times; a 500 25 times (Graph-client retries inside notifier retries)."""
    settings = make_settings(sandbox, storage=storage_connection, mail=True)
    sandbox.set_faults(Faults(rules=(FaultRule(fault, "sendMail", first=100, hold_s=3.0),)))
    first = run(settings, store, f"mail-unknown-{fault}-1")
    assert first.report.run.status is RunStatus.SUCCEEDED
    assert sandbox.stats["by_route"]["sendMail"] == 1, f"{sandbox.stats['by_route']['sendMail']} sendMail requests"
    [item] = store.outbox_list()
    assert item.maybe_delivered

    sandbox.set_faults(Faults())
    second = run(settings, store, f"mail-unknown-{fault}-2")
    assert second.delivery is not None and second.delivery.replayed == [("mail", item.id)]
    assert len(sandbox.sent_mail) == 1 and store.outbox_list() == []
    body = orjson.dumps(sandbox.sent_mail[0]).decode()
    assert item.id in body, "the mail names its outbox id"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:99999/workflows/x", "http://[::1/workflows/x", "https://a\u200db.example/workflows/x"],
    ids=["port-99999", "unclosed-ipv6", "invalid-idna"],
)
def test_a_webhook_url_httpx_cannot_use_never_fails_the_audit(
    url: str, sandbox: SandboxServer, store: Any, storage_connection: str, graph_sleeps: SleepLog,
    alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """Item 4: InvalidURL / UnicodeError escaped delivery: 'audit failed unexpectedly: ExceptionGroup', findings
    unsaved, the message poisoned every night. (Start-up now refuses these URLs; this is the second line.)"""
    settings = replace(make_settings(sandbox, storage=storage_connection), alert_teams_webhook_url=Secret(url))
    outcome = run(settings, store, f"bad-url-{abs(hash(url))}")
    assert outcome.report.run.status is RunStatus.SUCCEEDED
    assert store.run_findings(outcome.report.run.id), "the findings were saved"
    assert outcome.delivery is not None and outcome.delivery.failed
    [item] = store.outbox_list()
    assert item.last_error and "ALERT_TEAMS_WEBHOOK_URL" in item.last_error and "99999" not in item.last_error
    assert not item.maybe_delivered


def test_items_planned_from_a_stale_state_are_not_sent(
    sandbox: SandboxServer, store: Any, storage_connection: str, webhook: WebhookReceiver, graph_sleeps: SleepLog,
    alert_sleeps: SleepLog, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Item 5: a run that read the alert state before another run committed planned 'new' for everything and sent
    it again; delivery now follows the state it committed against."""
    settings = make_settings(sandbox, storage=storage_connection, webhook_url=webhook.url)
    first = run(settings, store, "stale-1")
    assert len(webhook.accepted) == 1 and first.delivery is not None and first.delivery.plan is not None
    real = store.alert_states
    calls = {"n": 0}

    def stale_once(tenant_id: str, **kw: Any) -> Any:
        calls["n"] += 1
        return {} if calls["n"] <= 2 else real(tenant_id, **kw)  # the plan's reads predate the first run's commit

    monkeypatch.setattr(store, "alert_states", stale_once)
    second = run(settings, store, "stale-2")
    assert second.delivery is not None and second.delivery.plan is not None
    assert not second.delivery.plan.new, "the committed state already announced them"
    assert len(webhook.accepted) == 1, "a digest planned from a stale read was sent"
    assert store.outbox_list() == []
