"""The queue pipeline through function_app's real triggers: Azurite queues and tables, the sandbox as Graph.

Each test drives the functions taken from ``function_app.app.get_functions()`` with real
``azure.functions`` objects, reading messages from the Azurite queues the way the host does
(receive, invoke, delete on success, redeliver with a higher dequeue count on failure). Every
test uses its own sandbox tenant (its own seed), so runs, alert state and history never mix.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any

import azure.functions.queue as fq
import azure.functions.timer as ft
import pytest
from azure.storage.queue import QueueClient

from licensing.demo import WebhookReceiver
from licensing.errors import LicensingError, StorageUnavailableError
from licensing.model import AuditReport, RunInfo, RunStatus, Scope
from licensing.pipeline.admission import LEASE_NAME
from licensing.pipeline.fanout import fanout_state
from licensing.sandbox import FaultRule, Faults, SandboxServer, SandboxTenant, TenantSpec, generate_tenant
from licensing.settings import get_settings
from licensing.store import AuditStore, open_store

pytestmark = pytest.mark.azurite  # every test here runs the app against Azurite

_ENV = (
    "LICENSING_STORAGE",
    "AzureWebJobsStorage",
    "AUDIT_SCHEDULE",
    "AUDIT_QUEUE",
    "AUDIT_CHUNK_QUEUE",
    "GRAPH_BASE_URL",
    "GRAPH_MAX_CONCURRENCY",
    "FANOUT_GROUPS",
    "AZURE_TENANT_ID",
    "ALERT_TEAMS_WEBHOOK_URL",
    "ALERT_MAIL_FROM",
    "ALERT_MAIL_TO",
)


@dataclass
class Pipeline:
    """One function app wired to Azurite, a sandbox tenant and a local Teams receiver."""

    monkeypatch: pytest.MonkeyPatch
    storage: str
    tenant: SandboxTenant
    graph: SandboxServer
    teams: WebhookReceiver
    requests_queue: str
    chunks_queue: str
    module: ModuleType | None = None
    store: AuditStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = open_store(get_settings_for(self.storage))
        self.store.ensure_tables()

    def load(self, **env: str) -> dict[str, Any]:
        """(Re)import function_app with these settings, as a fresh worker would; returns its functions by name."""
        base = {
            "AzureWebJobsStorage": self.storage,
            "AUDIT_QUEUE": self.requests_queue,
            "AUDIT_CHUNK_QUEUE": self.chunks_queue,
            "GRAPH_BASE_URL": self.graph.base_url,
            "GRAPH_MAX_CONCURRENCY": "8",
            "AZURE_TENANT_ID": self.tenant.tenant_id,
            "ALERT_TEAMS_WEBHOOK_URL": self.teams.url,
        }
        for key in _ENV:
            self.monkeypatch.delenv(key, raising=False)
        for key, value in {**base, **env}.items():
            self.monkeypatch.setenv(key, value)
        get_settings.cache_clear()
        sys.modules.pop("function_app", None)
        self.module = importlib.import_module("function_app")
        return {f.get_function_name(): f.get_user_function() for f in self.module.app.get_functions()}

    def queue(self, name: str) -> QueueClient:
        from azure.core.exceptions import ResourceExistsError

        client = QueueClient.from_connection_string(self.storage, name)
        with contextlib.suppress(ResourceExistsError):
            client.create_queue()
        return client

    def runs(self, request_id: str) -> list[RunInfo]:
        return [r for r in self.store.runs(self.tenant.tenant_id, limit=200) if r.request_id == request_id]

    def run(self, request_id: str) -> RunInfo:
        run = self.store.run_for_request(self.tenant.tenant_id, request_id)
        assert run is not None, f"no run for {request_id}"
        return run

    def report(self, request_id: str) -> AuditReport:
        run = self.run(request_id)
        return AuditReport(
            run=run,
            skus=tuple(self.store.run_skus(run.id)),
            groups=tuple(self.store.run_groups(run.id)),
            findings=tuple(self.store.run_findings(run.id)),
        )


def get_settings_for(storage: str) -> Any:
    from licensing.settings import load_settings

    return load_settings({"AzureWebJobsStorage": storage}).storage


def message(msg: Any, dequeue_count: int | None = None) -> fq.QueueMessage:
    """What the host hands the function for one queue message (host.json: messageEncoding none)."""
    return fq.QueueMessage(
        id=msg.id, body=msg.content.encode("utf-8"), dequeue_count=dequeue_count or msg.dequeue_count
    )


def deliver_one(pipe: Pipeline, fn: Any, queue_name: str) -> Any:
    """Receive one message, invoke the function, delete the message: the host's happy path."""
    client = pipe.queue(queue_name)
    received = list(client.receive_messages(max_messages=1, visibility_timeout=60))
    assert len(received) == 1, f"expected one message on {queue_name}"
    asyncio.run(fn(message(received[0])))
    client.delete_message(received[0])
    return received[0]


def drain(pipe: Pipeline, fn: Any, queue_name: str) -> list[Any]:
    """Process every visible message (and whatever they enqueue) until the queue is empty."""
    client = pipe.queue(queue_name)
    seen: list[Any] = []
    while batch := list(client.receive_messages(max_messages=32, visibility_timeout=60)):
        for msg in batch:
            asyncio.run(fn(message(msg)))
            client.delete_message(msg)
            seen.append(msg)
    return seen


def finding_keys(report: AuditReport) -> set[tuple[str, str, str]]:
    return {(f.id, f.kind, str(f.severity)) for f in report.findings}


def truth(tenant: SandboxTenant) -> set[tuple[Any, ...]]:
    return {
        (f.kind, str(f.severity), f.sku_id, f.group_id, f.user_id, f.member_group_id, f.error)
        for f in tenant.ground_truth
    }


def as_truth(report: AuditReport) -> set[tuple[Any, ...]]:
    return {
        (f.kind, str(f.severity), f.sku_id, f.group_id, f.user_id, f.member_group_id, f.error) for f in report.findings
    }


_SEEDS = iter(range(7001, 8000))


@pytest.fixture
def pipe(monkeypatch: pytest.MonkeyPatch, storage_connection: str, unique_name: str) -> Iterator[Pipeline]:
    tenant = generate_tenant(TenantSpec(seed=next(_SEEDS), users=300, groups=30))
    with SandboxServer(tenant) as graph, WebhookReceiver() as teams:
        yield Pipeline(
            monkeypatch=monkeypatch,
            storage=storage_connection,
            tenant=tenant,
            graph=graph,
            teams=teams,
            requests_queue=f"{unique_name}-requests",
            chunks_queue=f"{unique_name}-chunks",
        )
    get_settings.cache_clear()
    sys.modules.pop("function_app", None)


class FailOnce:
    """Makes ``AuditStore.finish_run`` raise once for a finishing run (not for recording a failure): a crash."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.raised = 0
        real = AuditStore.finish_run

        def finish_run(store: AuditStore, report: AuditReport, history_day: Any = None) -> None:
            if not self.raised and report.run.status is not RunStatus.FAILED:
                self.raised += 1
                raise StorageUnavailableError("table storage went away (injected)")
            real(store, report, history_day)

        monkeypatch.setattr(AuditStore, "finish_run", finish_run)


# ------------------------------------------------------------------------------------ single invocation


def test_a_night_timer_to_queue_to_audit_to_alert(pipe: Pipeline) -> None:
    fns = pipe.load()
    fns["audit_schedule"](ft.TimerRequest(past_due=False))
    msg = deliver_one(pipe, fns["audit_request"], pipe.requests_queue)
    request_id = json.loads(msg.content)["request_id"]
    report = pipe.report(request_id)
    assert report.run.status is RunStatus.SUCCEEDED and report.run.scope is Scope.TENANT
    assert report.run.trigger.value == "schedule"
    assert as_truth(report) == truth(pipe.tenant)
    assert len(report.groups) == len(pipe.tenant.licensed_group_ids)
    assert len(pipe.teams.bodies) == 1, "one digest per run and channel"
    assert pipe.store.outbox_list() == []
    assert pipe.store.try_acquire_lease(LEASE_NAME, "probe", timedelta(seconds=5)), "the lease was released"
    pipe.store.release_lease(LEASE_NAME, "probe")


def test_an_on_demand_group_audit(pipe: Pipeline) -> None:
    from licensing.pipeline.queues import put_message

    fns = pipe.load()
    group_id = next(f.group_id for f in pipe.tenant.ground_truth if f.kind == "nested_group")
    assert group_id is not None
    body = json.dumps({"scope": "group", "group_id": group_id, "request_id": "ops-7", "requested_by": "runbook"})
    put_message(get_settings().storage, pipe.requests_queue, body)
    deliver_one(pipe, fns["audit_request"], pipe.requests_queue)
    report = pipe.report("ops-7")
    assert report.run.scope is Scope.GROUP and report.run.scope_id == group_id
    assert report.run.requested_by == "runbook"
    assert [g.id for g in report.groups] == [group_id]
    assert {k for k in truth(pipe.tenant) if k[3] == group_id} <= as_truth(report)
    assert all(f.group_id in (None, group_id) for f in report.findings)


def test_a_duplicate_delivery_runs_and_alerts_once(pipe: Pipeline) -> None:
    fns = pipe.load()
    body = b'{"scope": "tenant", "request_id": "runbook-1"}'
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="m-1", body=body, dequeue_count=1)))
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="m-2", body=body, dequeue_count=1)))
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="m-1", body=body, dequeue_count=2)))
    runs = pipe.runs("runbook-1")
    assert [r.status for r in runs] == [RunStatus.SUCCEEDED]
    assert len(pipe.store.run_findings(runs[0].id)) == len(pipe.tenant.ground_truth)
    assert len(pipe.teams.bodies) == 1


def test_malformed_messages_are_completed_without_retry(pipe: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    fns = pipe.load()
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="bad-req", body=b'{"scope": "tenant", "x": 1}')))
    rejected = pipe.store.run_for_request(pipe.tenant.tenant_id, "bad-req")
    assert rejected is not None and rejected.status is RunStatus.REJECTED
    assert "unknown field(s) x" in rejected.errors[0]
    bad_chunks = [
        b"not json at all",
        b'{"run_id": "r", "tenant_id": "t", "chunk": "1", "plan": "0123456789ab"}',
        b'{"run_id": "r", "tenant_id": "t", "chunk": 1, "plan": "0123456789ab", "extra": true}',
        b'{"run_id": "r/../x", "tenant_id": "t", "chunk": 1, "plan": "0123456789ab"}',
        b'{"run_id": "r", "tenant_id": "t", "chunk": 1}',
    ]
    with caplog.at_level("ERROR", logger="licensing"):
        for index, body in enumerate(bad_chunks):
            asyncio.run(fns["audit_chunk"](fq.QueueMessage(id=f"bad-chunk-{index}", body=body, dequeue_count=1)))
    rejected_lines = [r.getMessage() for r in caplog.records if "rejected chunk message" in r.getMessage()]
    assert len(rejected_lines) == len(bad_chunks)
    assert all("\n" not in line for line in rejected_lines)
    # A well-formed chunk of a run that does not exist is completed too: nothing to redo.
    stale = b'{"run_id": "20260101T000000Z-deadbeef", "tenant_id": "t", "chunk": 0, "plan": "0123456789ab"}'
    asyncio.run(fns["audit_chunk"](fq.QueueMessage(id="stale-chunk", body=stale, dequeue_count=1)))


def test_a_request_for_a_group_or_sku_the_tenant_lacks_is_rejected_not_retried(pipe: Pipeline) -> None:
    fns = pipe.load()
    unknown = [
        ("no-group", {"scope": "group", "group_id": "00000000-0000-0000-0000-000000000001"}, "has no group"),
        ("no-sku", {"scope": "sku", "sku": "NOT_A_SKU"}, "has no subscribed SKU"),
    ]
    for request_id, body, reason in unknown:
        text = json.dumps({**body, "request_id": request_id}).encode()
        # Returns normally on the first delivery: the host completes the message instead of retrying it.
        asyncio.run(fns["audit_request"](fq.QueueMessage(id=f"m-{request_id}", body=text, dequeue_count=1)))
        run = pipe.run(request_id)
        assert run.status is RunStatus.REJECTED and reason in run.errors[0]


def test_a_transient_failure_is_retried_then_poisoned_keeping_the_last_error(
    pipe: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    from licensing.pipeline.handlers import MAX_DEQUEUE_COUNT

    fns = pipe.load()
    body = b'{"scope": "tenant", "request_id": "doomed-1"}'
    with caplog.at_level("ERROR", logger="licensing"):
        for attempt in range(1, MAX_DEQUEUE_COUNT + 1):
            # Graph is down for the whole attempt (every retry of the client too); the last attempt fails differently.
            kind = "429" if attempt == MAX_DEQUEUE_COUNT else "503"
            pipe.graph.set_faults(Faults(rules=(FaultRule(kind, route="groups", retry_after="0"),)))
            with pytest.raises(LicensingError, match=kind):
                asyncio.run(fns["audit_request"](fq.QueueMessage(id="poison-1", body=body, dequeue_count=attempt)))
    lines = [r.getMessage() for r in caplog.records if "doomed-1" in r.getMessage()]
    assert sum("the host will retry" in line for line in lines) == MAX_DEQUEUE_COUNT - 1
    assert sum("poison queue" in line for line in lines) == 1
    runs = pipe.runs("doomed-1")
    assert [r.status for r in runs] == [RunStatus.FAILED], "one run, failed, however often it was tried"
    assert "429" in runs[0].errors[0] and "503" not in runs[0].errors[0], "it keeps the last error"
    assert pipe.store.try_acquire_lease(LEASE_NAME, "probe", timedelta(seconds=5)), "a failed run holds no lease"
    pipe.store.release_lease(LEASE_NAME, "probe")
    # Taken out of the poison queue once Graph is back, the request runs once, under the same run id.
    pipe.graph.set_faults(Faults())
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="poison-1b", body=body, dequeue_count=1)))
    assert [(r.id, r.status) for r in pipe.runs("doomed-1")] == [(runs[0].id, RunStatus.SUCCEEDED)]


def test_a_run_that_crashed_while_finishing_is_redone_under_its_id_without_duplicates(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    fns = pipe.load()
    crash = FailOnce(monkeypatch)
    body = b'{"scope": "tenant", "request_id": "crash-1"}'
    with pytest.raises(LicensingError, match="went away"):
        asyncio.run(fns["audit_request"](fq.QueueMessage(id="c-1", body=body, dequeue_count=1)))
    assert crash.raised == 1
    failed = pipe.runs("crash-1")
    assert [r.status for r in failed] == [RunStatus.FAILED]
    assert len(pipe.teams.bodies) == 1, "alerts go out before the run is finished"
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="c-1", body=body, dequeue_count=2)))
    redone = pipe.runs("crash-1")
    assert [(r.id, r.status) for r in redone] == [(failed[0].id, RunStatus.SUCCEEDED)]
    findings = pipe.store.run_findings(failed[0].id)
    assert len(findings) == len({f.id for f in findings}) == len(pipe.tenant.ground_truth)
    assert len(pipe.teams.bodies) == 1, "the redo sends nothing twice"
    assert pipe.store.outbox_list() == []


def test_two_overlapping_tenant_requests_the_second_is_deferred_and_runs_after(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    import licensing.pipeline.admission as triggers

    fns = pipe.load()
    deferred: list[tuple[str, str, int]] = []
    real_put = triggers.put_message

    def spy(connection: Any, queue: str, text: str, *, delay_s: int = 0) -> str:
        deferred.append((queue, text, delay_s))
        return real_put(connection, queue, text, delay_s=delay_s)

    monkeypatch.setattr(triggers, "put_message", spy)
    first = fq.QueueMessage(id="a-1", body=b'{"scope": "tenant", "request_id": "night-a"}', dequeue_count=1)
    second = fq.QueueMessage(id="b-1", body=b'{"scope": "tenant", "request_id": "adhoc-b"}', dequeue_count=1)

    async def overlapping() -> None:
        # The first holds the lease from before its first await (Graph) to its end; the second arrives meanwhile.
        await asyncio.gather(fns["audit_request"](first), fns["audit_request"](second))

    asyncio.run(overlapping())
    assert pipe.run("night-a").status is RunStatus.SUCCEEDED
    assert pipe.store.run_for_request(pipe.tenant.tenant_id, "adhoc-b") is None, "the second did not run"
    assert len(deferred) == 1
    queue, text, delay = deferred[0]
    assert queue == pipe.requests_queue and delay == triggers.DEFER_SECONDS
    assert json.loads(text)["request_id"] == "adhoc-b", "put back under the same request id"
    client = pipe.queue(pipe.requests_queue)
    assert client.get_queue_properties().approximate_message_count == 1
    assert list(client.receive_messages(max_messages=1)) == [], "invisible until the delay has passed"
    # The host delivers it after the delay, as a new message with the same body.
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="b-2", body=text.encode(), dequeue_count=1)))
    later = pipe.run("adhoc-b")
    assert later.status is RunStatus.SUCCEEDED
    first_run = pipe.run("night-a")
    assert first_run.finished_at is not None and later.started_at >= first_run.finished_at


# ------------------------------------------------------------------------------------ fan-out


def run_fanned_out(pipe: Pipeline, fns: dict[str, Any], request_id: str) -> list[Any]:
    body = json.dumps({"scope": "tenant", "request_id": request_id}).encode()
    asyncio.run(fns["audit_request"](fq.QueueMessage(id=f"{request_id}-m", body=body, dequeue_count=1)))
    run = pipe.run(request_id)
    assert run.status is RunStatus.RUNNING, "the coordinator returns at once"
    return drain(pipe, fns["audit_chunk"], pipe.chunks_queue)


def test_a_fanned_out_run_equals_the_single_invocation_run(pipe: Pipeline) -> None:
    fns = pipe.load()
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="s-1", body=b'{"scope": "tenant", "request_id": "single"}')))
    single = pipe.report("single")
    assert single.run.status is RunStatus.SUCCEEDED
    assert pipe.store.get_run(pipe.tenant.tenant_id, single.run.id) is not None

    fns = pipe.load(FANOUT_GROUPS="5")
    groups = len(pipe.tenant.licensed_group_ids)
    assert groups > 5
    chunks = run_fanned_out(pipe, fns, "fanned")
    assert len(chunks) == -(-groups // 5) + 1, "one message per chunk of 5 groups, and one for the users scan"
    assert {json.loads(m.content)["chunk"] for m in chunks} == set(range(len(chunks)))
    fanned = pipe.report("fanned")
    assert fanned.run.status is RunStatus.SUCCEEDED and fanned.run.id != single.run.id
    assert finding_keys(fanned) == finding_keys(single)
    assert as_truth(fanned) == truth(pipe.tenant)
    assert sorted(fanned.skus, key=lambda s: s.sku_id) == sorted(single.skus, key=lambda s: s.sku_id)
    assert sorted(fanned.groups, key=lambda g: g.id) == sorted(single.groups, key=lambda g: g.id)
    assert fanned.run.graph_requests > len(chunks)
    state = fanout_state(pipe.store.run_extra(pipe.tenant.tenant_id, fanned.run.id))
    assert state is not None and state["done"] == list(range(len(chunks)))
    assert state["final"]["finished_at"] is not None
    assert pipe.store.get_blob(f"fanout/{fanned.run.id}/{state['plan']}/overview") is None, "parts cleaned up"
    assert pipe.store.try_acquire_lease(LEASE_NAME, "probe", timedelta(seconds=5)), "the final step released it"
    pipe.store.release_lease(LEASE_NAME, "probe")

    # A chunk message delivered again after the end changes nothing and sends nothing.
    posts = len(pipe.teams.bodies)
    asyncio.run(fns["audit_chunk"](message(chunks[0], dequeue_count=2)))
    assert finding_keys(pipe.report("fanned")) == finding_keys(fanned)
    assert len(pipe.teams.bodies) == posts


def test_a_fanned_out_final_step_that_crashed_is_redone_by_the_redelivered_message(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    fns = pipe.load(FANOUT_GROUPS="5")
    body = b'{"scope": "tenant", "request_id": "fan-crash"}'
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="fc-m", body=body, dequeue_count=1)))
    crash = FailOnce(monkeypatch)
    client = pipe.queue(pipe.chunks_queue)
    failed: list[Any] = []
    duplicate: Any = None
    while batch := list(client.receive_messages(max_messages=32, visibility_timeout=60)):
        for msg in batch:
            duplicate = duplicate or msg
            try:
                asyncio.run(fns["audit_chunk"](message(msg)))
                client.delete_message(msg)
            except LicensingError:
                failed.append(msg)  # left on the queue: the host redelivers it after the visibility timeout
    assert crash.raised == 1 and len(failed) == 1
    run = pipe.run("fan-crash")
    assert run.status is RunStatus.RUNNING, "a crashed final step does not fail the run: its redelivery redoes it"
    posts = len(pipe.teams.bodies)
    assert posts == 1, "alerts went out before the crash"
    # Another chunk's duplicate arrives first. Final-step claims are per invocation (issue 16, item 5) and the
    # crashed one gave its claim up, so the duplicate redoes the final step; the redelivery finds it finished.
    asyncio.run(fns["audit_chunk"](message(duplicate, dequeue_count=2)))
    assert pipe.run("fan-crash").status is RunStatus.SUCCEEDED
    asyncio.run(fns["audit_chunk"](message(failed[0], dequeue_count=2)))
    report = pipe.report("fan-crash")
    assert report.run.id == run.id and report.run.status is RunStatus.SUCCEEDED
    assert len(report.findings) == len({f.id for f in report.findings}) == len(pipe.tenant.ground_truth)
    assert as_truth(report) == truth(pipe.tenant)
    assert len(pipe.teams.bodies) == 1, "nothing sent twice"


def test_an_unreadable_group_in_a_chunk_makes_the_fanned_out_run_partial(pipe: Pipeline) -> None:
    fns = pipe.load(FANOUT_GROUPS="5")
    body = b'{"scope": "tenant", "request_id": "fan-partial"}'
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="fp-m", body=body, dequeue_count=1)))
    pipe.graph.set_faults(Faults(rules=(FaultRule("404", route="members", first=1),)))
    drain(pipe, fns["audit_chunk"], pipe.chunks_queue)
    report = pipe.report("fan-partial")
    assert report.run.status is RunStatus.PARTIAL
    lost = [g for g in pipe.tenant.licensed_group_ids if any(g in line for line in report.run.errors)]
    assert len(lost) == 1, report.run.errors
    others = {k for k in truth(pipe.tenant) if k[3] not in (None, lost[0])}
    assert others <= as_truth(report), "nothing read by the other chunks is lost"


def test_a_chunk_out_of_retries_fails_the_run_with_its_last_error_and_frees_the_lease(
    pipe: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from licensing.pipeline.handlers import MAX_DEQUEUE_COUNT

    fns = pipe.load(FANOUT_GROUPS="5")
    body = b'{"scope": "tenant", "request_id": "fan-poison"}'
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="fpo-m", body=body, dequeue_count=1)))
    client = pipe.queue(pipe.chunks_queue)
    msg = next(iter(client.receive_messages(max_messages=1, visibility_timeout=60)))

    def broken(store: AuditStore, name: str, data: bytes) -> None:
        raise StorageUnavailableError(f"cannot reach table storage (attempt {attempts[-1]})")

    attempts: list[int] = []
    real_put_blob = AuditStore.put_blob
    monkeypatch.setattr(AuditStore, "put_blob", broken)
    for attempt in range(1, MAX_DEQUEUE_COUNT + 1):
        attempts.append(attempt)
        with pytest.raises(LicensingError, match="cannot reach"):
            asyncio.run(fns["audit_chunk"](message(msg, dequeue_count=attempt)))
        expected = RunStatus.FAILED if attempt == MAX_DEQUEUE_COUNT else RunStatus.RUNNING
        assert pipe.run("fan-poison").status is expected
    run = pipe.run("fan-poison")
    assert f"attempt {MAX_DEQUEUE_COUNT}" in run.errors[0] and run.errors[0].startswith("chunk 0:")
    assert pipe.store.try_acquire_lease(LEASE_NAME, "probe", timedelta(seconds=5)), "a failed run holds no lease"
    pipe.store.release_lease(LEASE_NAME, "probe")
    # The other chunks of the failed run have nothing left to do.
    monkeypatch.setattr(AuditStore, "put_blob", real_put_blob)
    drain(pipe, fns["audit_chunk"], pipe.chunks_queue)
    assert pipe.run("fan-poison").status is RunStatus.FAILED


def test_a_fanned_out_run_holds_the_lease_and_a_redelivered_request_does_not_plan_again(pipe: Pipeline) -> None:
    fns = pipe.load(FANOUT_GROUPS="5")
    body = b'{"scope": "tenant", "request_id": "fan-again"}'
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="fa-m", body=body, dequeue_count=1)))
    chunks = pipe.queue(pipe.chunks_queue)
    planned = chunks.get_queue_properties().approximate_message_count
    assert planned == -(-len(pipe.tenant.licensed_group_ids) // 5) + 1  # and the users scan
    assert not pipe.store.try_acquire_lease(LEASE_NAME, "probe", timedelta(seconds=5)), "the run holds the lease"
    # The host redelivers the coordinator's message (say its instance died before completing it).
    graph_requests = pipe.graph.stats["requests"]
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="fa-m", body=body, dequeue_count=2)))
    assert chunks.get_queue_properties().approximate_message_count == planned, "no second plan, no new chunks"
    assert pipe.graph.stats["requests"] == graph_requests, "the live plan is found without reading Graph"
    # Another tenant request meanwhile is deferred until the fanned-out run is over.
    requests = pipe.queue(pipe.requests_queue)
    asyncio.run(fns["audit_request"](fq.QueueMessage(id="other", body=b'{"scope": "tenant", "request_id": "x-1"}')))
    assert requests.get_queue_properties().approximate_message_count == 1
    assert pipe.store.run_for_request(pipe.tenant.tenant_id, "x-1") is None
    drain(pipe, fns["audit_chunk"], pipe.chunks_queue)
    assert [r.status for r in pipe.runs("fan-again")] == [RunStatus.SUCCEEDED]
    assert len(pipe.teams.bodies) == 1
    assert pipe.store.try_acquire_lease(LEASE_NAME, "probe", timedelta(seconds=5))
    pipe.store.release_lease(LEASE_NAME, "probe")
