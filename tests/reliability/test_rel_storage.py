"""Table Storage under faults: the account goes away mid-run and comes back, Azurite itself is restarted, ETag
conflicts, oversized findings and keys made of every forbidden character. A run that says it finished has all
its rows; a run that did not finish never looks finished; the redelivered request completes exactly once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licensing.emulator import Azurite
from licensing.errors import LicensingError, StorageError
from licensing.model import (
    AlertState,
    AuditReport,
    Channel,
    Finding,
    OutboxItem,
    RunInfo,
    RunStatus,
    Severity,
)
from licensing.pipeline.handlers import MAX_DEQUEUE_COUNT, MessageResult, handle_audit_message
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import SandboxServer, SandboxTenant
from licensing.settings import Secret, Settings, StorageConnection
from tests.factories import finding, run_info
from tests.reliability.conftest import (
    SleepLog,
    StorageLink,
    WebhookReceiver,
    assert_matches_truth,
    make_settings,
    open_test_store,
)

pytestmark = pytest.mark.azurite

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)


def cut_store(connection_string: str, prefix: str, table: str, nth: int, cut: Any) -> tuple[Any, dict[str, int]]:
    """A store that calls ``cut()`` right before its ``nth`` request touching table ``<prefix><table>``."""
    from licensing.store import open_store
    from licensing.store.connection import RetryPolicy

    seen: Counter[str] = Counter()
    state = {"armed": 1}
    name = f"{prefix}{table}"

    def hook(request: Any) -> None:
        url = request.http_request.url
        if state["armed"] and f"/{name}" in url.split("?")[0]:
            seen[name] += 1
            if seen[name] == nth:
                state["armed"] = 0
                cut()

    conn = StorageConnection(connection_string=Secret(connection_string), source="LICENSING_STORAGE")
    store = open_store(conn, prefix=prefix, retry=RetryPolicy(attempts=3, sleep=lambda _s: None), raw_request_hook=hook)
    store.ensure_tables()
    return store, state


def deliver(settings: Settings, store: Any, body: bytes, attempt: int) -> MessageResult:
    """What function_app.py does with one queue message (the host redelivers it with the same id)."""
    return asyncio.run(
        handle_audit_message(
            body,
            Runtime(settings, store=store, credential="none"),
            message_id="outage-msg",
            dequeue_count=attempt,
        )
    )


@pytest.fixture
def link(azurite: Azurite) -> Iterator[StorageLink]:
    relay = StorageLink(azurite.table_port)
    try:
        yield relay
    finally:
        relay.down()


@pytest.mark.parametrize(
    ("table", "nth"),
    [
        ("AuditFindings", 1),  # alerts are out; the findings write is cut
        ("AlertState", 3),  # digest queued in the outbox; the alert-state commit is cut
        ("AlertOutbox", 2),  # the digest is being queued
    ],
)
def test_storage_outage_mid_run_fails_loudly_and_the_redelivery_completes_once(
    table: str, nth: int, azurite: Azurite, link: StorageLink, sandbox: SandboxServer, small_tenant: SandboxTenant,
    unique_name: str, webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    connection = link.connection_string(azurite)
    store, _ = cut_store(connection, unique_name, table, nth, link.down)
    settings = make_settings(
        sandbox, storage=connection, webhook_url=webhook.url, AZURE_TENANT_ID=small_tenant.tenant_id,
        AUDIT_QUEUE=f"q{unique_name}",
    )  # fmt: skip
    body = b'{"scope": "tenant", "request_id": "outage-1"}'

    with pytest.raises(LicensingError, match="table storage"):
        deliver(settings, store, body, 1)
    link.up()

    # While the host waits to retry: nothing about this request looks finished.
    observer = open_test_store(azurite.connection_string, unique_name)
    runs = [r for r in observer.runs(small_tenant.tenant_id) if r.request_id == "outage-1"]
    assert all(r.status in (RunStatus.RUNNING, RunStatus.FAILED) for r in runs), runs
    finished = observer.latest_run(small_tenant.tenant_id, finished_only=True)
    assert finished is None or finished.request_id != "outage-1"

    result = deliver(settings, store, body, 2)
    assert result.outcome == "completed" and result.audit is not None
    report = result.audit.report
    assert report.run.status is RunStatus.SUCCEEDED
    assert_matches_truth(report, small_tenant)
    if runs:
        assert report.run.id == runs[0].id, "the redone run keeps its id"
    stored = observer.get_run(small_tenant.tenant_id, report.run.id)
    assert stored is not None and stored.status is RunStatus.SUCCEEDED
    assert sorted(f.id for f in observer.run_findings(report.run.id)) == sorted(f.id for f in report.findings)
    assert len(webhook.accepted) == 1, "the digest went out exactly once across the outage"
    assert observer.outbox_list() == []
    assert deliver(settings, store, body, 3).outcome == "skipped"


def test_storage_outage_redelivery_of_the_same_message_takes_over_its_own_lease(
    azurite: Azurite, link: StorageLink, sandbox: SandboxServer, small_tenant: SandboxTenant, unique_name: str,
    graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    connection = link.connection_string(azurite)
    store, _ = cut_store(connection, unique_name, "AuditFindings", 1, link.down)
    settings = make_settings(
        sandbox, storage=connection, AZURE_TENANT_ID=small_tenant.tenant_id, AUDIT_QUEUE=f"q{unique_name}"
    )
    body = b'{"scope": "tenant", "request_id": "outage-2"}'
    with pytest.raises(LicensingError, match="table storage"):
        deliver(settings, store, body, 1)
    link.up()
    assert deliver(settings, store, body, 2).outcome == "completed"


def test_azurite_stopped_mid_run_and_restarted_fails_loudly_then_resumes(
    sandbox: SandboxServer, small_tenant: SandboxTenant, graph_sleeps: SleepLog, unique_name: str,
) -> None:  # fmt: skip
    emulator = Azurite().start()
    try:
        store, _ = cut_store(emulator.connection_string, unique_name, "AuditFindings", 1, emulator.stop)
        settings = make_settings(
            sandbox, storage=emulator.connection_string, AZURE_TENANT_ID=small_tenant.tenant_id,
            AUDIT_QUEUE=f"q{unique_name}",
        )  # fmt: skip
        body = b'{"scope": "tenant", "request_id": "restart-1"}'
        with pytest.raises(LicensingError, match="cannot reach table storage"):
            deliver(settings, store, body, 1)
        emulator.start()  # same ports; in memory, so the tables are gone: a worse case than a real outage
        outcomes: list[str] = []
        for attempt in range(2, MAX_DEQUEUE_COUNT + 1):
            fresh = open_test_store(emulator.connection_string, unique_name)  # what the next invocation opens
            try:
                outcomes.append(deliver(settings, fresh, body, attempt).outcome)
                break
            except StorageError as exc:
                outcomes.append(f"failed: {exc}")
        assert outcomes[-1] == "completed", outcomes
        assert all("no such table" in o for o in outcomes[:-1]), outcomes
        check = open_test_store(emulator.connection_string, unique_name)
        run = check.run_for_request(small_tenant.tenant_id, "restart-1")
        assert run is not None and run.status is RunStatus.SUCCEEDED
        assert len(check.run_findings(run.id)) == len(small_tenant.ground_truth)
    finally:
        emulator.close()


def test_azurite_stopped_mid_run_fails_loudly_and_fast(
    sandbox: SandboxServer, small_tenant: SandboxTenant, graph_sleeps: SleepLog, unique_name: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import time

    emulator = Azurite().start()
    try:
        store, _ = cut_store(emulator.connection_string, unique_name, "AuditFindings", 1, emulator.stop)
        settings = make_settings(
            sandbox, storage=emulator.connection_string, AZURE_TENANT_ID=small_tenant.tenant_id,
            AUDIT_QUEUE=f"q{unique_name}",
        )  # fmt: skip
        started = time.monotonic()
        with pytest.raises(LicensingError, match="cannot reach table storage") as failure:
            deliver(settings, store, b'{"scope": "tenant", "request_id": "stop-1"}', 1)
        assert time.monotonic() - started < 20, "an unreachable store must not hang the invocation"
        assert "\n" not in str(failure.value)
        assert any("the host will retry" in r.getMessage() for r in caplog.records)
    finally:
        emulator.close()


# ------------------------------------------------------------------------------------------- conflicts


def _state(fid: str, run: str, severity: Severity = Severity.WARNING) -> AlertState:
    return AlertState(fid, "b2b_member", severity, first_seen=NOW, last_seen=NOW, last_run_id=run)


def test_412_conflicts_on_alert_state_lose_no_update(store: Any) -> None:
    tenant = "tenant-412"
    store.update_alert_states(tenant, lambda _c: [_state("f1", "r0"), _state("f2", "r0")])
    calls = {"n": 0}

    def change(current: dict[str, AlertState]) -> list[AlertState]:
        calls["n"] += 1
        if calls["n"] <= 2:
            # Another run commits between our read and our write: our If-Match write must fail with 412.
            store.update_alert_states(tenant, lambda c: [replace_run(c[f"f{calls['n']}"], f"other{calls['n']}")])
        return [replace_run(current["f1"], "mine"), replace_run(current["f2"], "mine")]

    store.update_alert_states(tenant, change)
    assert calls["n"] == 3, "two 412s, then the write went through against fresh rows"
    final = store.alert_states(tenant)
    assert {k: v.last_run_id for k, v in final.items()} == {"f1": "mine", "f2": "mine"}


def replace_run(state: AlertState, run_id: str) -> AlertState:
    from dataclasses import replace

    return replace(state, last_run_id=run_id)


def test_concurrent_leases_exactly_one_wins(store: Any) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(6)

    def take(i: int) -> None:
        barrier.wait()
        results.append(store.try_acquire_lease("tenant-audit", f"owner-{i}", timedelta(minutes=5)))

    threads = [threading.Thread(target=take, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(results) == [False] * 5 + [True]


# ------------------------------------------------------------------------------------------- sizes and keys

FORBIDDEN = "/\\#?\t\n\r\x00\x01\x1f\x7f\x80\x9f"
NASTY = f"a/b\\c#d?e\tf\ng\x00h\x7f ~z~_ {FORBIDDEN} é 🦄 ' \" % &"


def _finding(i: int, **kw: Any) -> Finding:
    return finding(
        **{"id": f"{NASTY}-{i}", "message": f"finding {i}", "group_id": NASTY, "user_id": f"u{i}", "user_name": NASTY,
           **kw}
    )  # fmt: skip


def _run(run_id: str, tenant: str, request_id: str | None = None) -> RunInfo:
    return run_info(
        id=run_id, tenant_id=tenant, started_at=NOW, finished_at=NOW, status=RunStatus.SUCCEEDED,
        request_id=request_id, tenant_name=NASTY,
    )  # fmt: skip


def test_oversized_findings_round_trip_intact(store: Any) -> None:
    huge = "Ω" * 70_000 + "<end>"  # over the 64 KiB property limit on its own (UTF-16)
    findings = [_finding(0, message=huge, user_name="N" * 40_000)]
    findings += [_finding(i, message=f"{i}:" + "m" * 30_000) for i in range(1, 40)]  # > 1 MiB per batch
    findings += [_finding(i) for i in range(40, 260)]  # several transactions of 100
    report = AuditReport(run=_run("run-oversized", "tenant-big"), findings=tuple(findings))
    store.finish_run(report)
    back = {f.id: f for f in store.run_findings("run-oversized")}
    assert len(back) == len(findings)
    assert back[findings[0].id].message == huge
    assert back[findings[0].id].user_name == "N" * 40_000
    assert all(back[f.id] == f for f in findings)
    counts = store.run_counts("tenant-big", "run-oversized")
    assert counts["findings"] == len(findings)


def test_keys_with_every_forbidden_character_round_trip(store: Any) -> None:
    tenant = f"tenant {NASTY}"
    run_id = f"run {NASTY}" + "x" * 600  # long, so the encoded key needs bounding below 1 KiB
    request_id = f"req {NASTY}"
    findings = (_finding(1), _finding(2, id=NASTY * 20))
    store.finish_run(AuditReport(run=_run(run_id, tenant, request_id), findings=findings))
    assert store.get_run(tenant, run_id) is not None
    by_request = store.run_for_request(tenant, request_id)
    assert by_request is not None and by_request.id == run_id and by_request.tenant_name == NASTY
    assert sorted(f.id for f in store.run_findings(run_id)) == sorted(f.id for f in findings)

    store.update_alert_states(tenant, lambda _c: [_state(NASTY, run_id)])
    assert list(store.alert_states(tenant)) == [NASTY]

    # The channel is an enum (teams, mail); the forbidden characters travel in the item id, also a key.
    item = OutboxItem(
        channel=Channel.TEAMS, id=f"{run_id}.teams{FORBIDDEN}", run_id=run_id, payload=b"{}", created_at=NOW
    )
    store.outbox_put(item)
    assert [i.id for i in store.outbox_list()] == [item.id]
    store.outbox_delete(item)
    assert store.outbox_list() == []
    assert store.try_acquire_lease(NASTY, "me", timedelta(minutes=1))
    store.release_lease(NASTY, "me")
    assert store.try_acquire_lease(NASTY, "you", timedelta(minutes=1))
