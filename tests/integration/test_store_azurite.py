"""The Table Storage layer against a real Azurite: write, read, replay, races, big values, odd keys, retention."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import pytest
from azure.core.exceptions import ServiceRequestError

from licensing.emulator import AZURITE_KEY, Azurite
from licensing.errors import ConfigurationError, StorageError, StorageUnavailableError
from licensing.model import (
    AlertState,
    AuditReport,
    Channel,
    Finding,
    GroupSummary,
    OutboxItem,
    RunInfo,
    RunStatus,
    Severity,
    SkuSummary,
)
from licensing.settings import Secret, StorageConnection
from licensing.store import AuditStore, RetryPolicy, open_store
from tests.factories import finding, run_info, sku_summary

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 11, 20, 2, 30, tzinfo=UTC)
TENANT = "6fd2c87f-b296-42f0-b197-1e91e994b900"
ODD = "a/b\\c#d?e\x00\x01\x1f\x7f\x80\x9f'%~_ 😀 שלום \u202eevil\u202c end"
FAST = RetryPolicy(attempts=3, base_delay=0.005, max_delay=0.02)


def _connection(cs: str) -> StorageConnection:
    return StorageConnection(connection_string=Secret(cs), source="LICENSING_STORAGE")


@pytest.fixture
def store(storage_connection: str, unique_name: str) -> Iterator[AuditStore]:
    s = open_store(_connection(storage_connection), prefix=unique_name, retry=FAST)
    s.ensure_tables()
    s.ensure_tables()  # idempotent
    yield s
    s.drop_tables()


def _run(run_id: str, started: datetime, tenant: str = TENANT, request_id: str | None = None) -> RunInfo:
    return run_info(id=run_id, tenant_id=tenant, started_at=started, request_id=request_id)


def _finding(i: int, **kw: object) -> Finding:
    return finding(
        **{"id": f"{i:032x}", "kind": "seat_low" if i % 2 else "b2b_member",
           "severity": Severity.WARNING if i % 2 else Severity.CRITICAL, "message": f"finding {i}",
           "group_id": f"group-{i}", "group_name": f"Group {i}", **kw}
    )  # fmt: skip


def _sku(sku_id: str, consumed: int, waiting: int = 0) -> SkuSummary:
    return sku_summary(
        sku_id=sku_id, consumed=consumed, available=100 - consumed, group_assigned_users=consumed,
        waiting_users=waiting, assigned_by_groups=("g1",),
    )  # fmt: skip


def _finished(run: RunInfo, findings: tuple[Finding, ...] = (), skus: tuple[SkuSummary, ...] = ()) -> AuditReport:
    groups = (GroupSummary("g1", "Licensed <b>E3</b>", ("sku-1",), "ProcessingComplete", 3, 2, 1, 1, 0),)
    done = replace(
        run, status=RunStatus.SUCCEEDED, finished_at=run.started_at + timedelta(minutes=3), graph_requests=12
    )
    return AuditReport(run=done, findings=findings, skus=skus, groups=groups)


def test_open_store_needs_a_connection() -> None:
    with pytest.raises(ConfigurationError):
        open_store(None)


def test_write_and_read_back_a_run(store: AuditStore) -> None:
    run = _run("20261120T023000Z-aaaa", T0, request_id="msg-1")
    store.begin_run(run)
    assert store.get_run(TENANT, run.id) == run
    assert store.latest_run(TENANT) is None  # running is not finished
    assert store.latest_run(TENANT, finished_only=False) == run

    findings = tuple(_finding(i) for i in range(250))  # three transactions of one partition
    report = _finished(run, findings, (_sku("sku-1", 90, waiting=4), _sku("sku-2", 10)))
    store.finish_run(report, history_day=T0.date())

    assert store.get_run(TENANT, run.id) == report.run
    assert store.run_for_request(TENANT, "msg-1") == report.run
    assert store.run_for_request(TENANT, "msg-other") is None
    assert store.latest_run(TENANT) == report.run
    assert store.run_findings(run.id) == list(findings)
    assert store.run_skus(run.id) == list(report.skus)
    assert store.run_groups(run.id) == list(report.groups)
    counts = store.run_counts(TENANT, run.id)
    assert counts == {
        "findings": 250,
        "by_kind": {"b2b_member": 125, "seat_low": 125},
        "by_severity": {"critical": 125, "warning": 125},
    }
    history = store.sku_history(TENANT, since=T0.date() - timedelta(days=30))
    assert set(history) == {"sku-1", "sku-2"}
    assert history["sku-1"][0].consumed == 90 and history["sku-1"][0].waiting == 4
    assert store.sku_history(TENANT, since=T0.date(), sku_id="sku-2")["sku-2"][0].consumed == 10
    assert store.sku_history(TENANT, since=T0.date() + timedelta(days=1)) == {}
    assert store.default_tenant_id() == TENANT


def test_runs_are_listed_newest_first(store: AuditStore) -> None:
    for day in (3, 1, 2):
        run = _run(f"run-{day}", T0 + timedelta(days=day))
        store.finish_run(_finished(run))
    store.begin_run(_run("run-4", T0 + timedelta(days=4)))
    assert [r.id for r in store.runs(TENANT)] == ["run-4", "run-3", "run-2", "run-1"]
    assert [r.id for r in store.runs(TENANT, limit=2)] == ["run-4", "run-3"]
    latest = store.latest_run(TENANT)
    assert latest is not None and latest.id == "run-3"
    assert store.runs("another-tenant") == []


def test_replay_neither_duplicates_findings_nor_double_counts_history(store: AuditStore) -> None:
    run = _run("replayed", T0, request_id="msg-7")
    report = _finished(run, tuple(_finding(i) for i in range(120)), (_sku("sku-1", 50),))
    for _ in range(2):
        store.begin_run(run)
        store.finish_run(report, history_day=T0.date())
    assert len(store.runs(TENANT)) == 1
    assert len(store.run_findings(run.id)) == 120
    assert [d.consumed for d in store.sku_history(TENANT, since=T0.date())["sku-1"]] == [50]

    # A retried attempt that finds less: the findings of the earlier attempt do not linger.
    retried = replace(report, findings=report.findings[:5], skus=(_sku("sku-1", 55),))
    store.begin_run(replace(run, started_at=T0 + timedelta(hours=1)))  # same id, later attempt: same row
    store.finish_run(retried, history_day=T0.date())
    assert store.run_findings(run.id) == list(report.findings[:5])
    assert [d.consumed for d in store.sku_history(TENANT, since=T0.date())["sku-1"]] == [55]
    assert [r.id for r in store.runs(TENANT)] == ["replayed"]


def test_concurrent_alert_state_updates_lose_nothing(store: AuditStore) -> None:
    threads, rounds = 4, 3
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for r in range(rounds):
                mark = f"{n}.{r}"

                def change(states: dict[str, AlertState], mark: str = mark, n: int = n, r: int = r) -> list[AlertState]:
                    shared = states.get("shared") or AlertState("shared", "", Severity.INFO, T0, T0)
                    mine = AlertState(f"own-{n}", "seat_low", Severity.WARNING, T0, T0 + timedelta(minutes=r))
                    return [replace(shared, kind=f"{shared.kind},{mark}".lstrip(",")), mine]

                store.update_alert_states(TENANT, change)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors, errors
    states = store.alert_states(TENANT)
    marks = states["shared"].kind.split(",")
    assert sorted(marks) == sorted(f"{n}.{r}" for n in range(threads) for r in range(rounds))
    assert {f"own-{n}" for n in range(threads)} <= set(states)
    assert all(s.etag for s in states.values())


def test_alert_states_round_trip_and_open_filter(store: AuditStore) -> None:
    opened = AlertState("f-open", "seat_shortage", Severity.CRITICAL, T0, T0, T0, Severity.WARNING, last_run_id="r1")
    closed = AlertState("f-closed", "nested_group", Severity.WARNING, T0, T0, status="resolved", resolved_at=T0)
    written = store.update_alert_states(TENANT, lambda _states: [opened, closed])
    assert all(w.etag for w in written)
    states = store.alert_states(TENANT)
    assert replace(states["f-open"], etag=None) == opened
    assert replace(states["f-closed"], etag=None) == closed
    assert set(store.alert_states(TENANT, open_only=True)) == {"f-open"}


def test_exactly_one_of_concurrent_lease_acquirers_wins(store: AuditStore) -> None:
    contenders = 8
    barrier = threading.Barrier(contenders)
    results: list[bool] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        barrier.wait(timeout=30)
        won = store.try_acquire_lease("tenant-audit", f"owner-{n}", timedelta(minutes=5))
        with lock:
            results.append(won)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(contenders)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert sorted(results) == [False] * (contenders - 1) + [True]


def test_lease_expiry_renewal_and_release(store: AuditStore, storage_connection: str) -> None:
    assert store.try_acquire_lease("lease", "a", timedelta(minutes=5))
    assert store.try_acquire_lease("lease", "a", timedelta(minutes=5))  # renewal by the holder
    assert not store.try_acquire_lease("lease", "b", timedelta(minutes=5))
    store.release_lease("lease", "b")  # not b's: nothing happens
    assert not store.try_acquire_lease("lease", "b", timedelta(minutes=5))

    later = open_store(
        _connection(storage_connection),
        prefix=store.tables.runs.removesuffix("AuditRuns"),
        clock=lambda: datetime.now(UTC) + timedelta(hours=1),
    )
    assert later.try_acquire_lease("lease", "b", timedelta(minutes=5))  # a's lease expired: taken over
    store.release_lease("lease", "a")  # a lost it; b keeps it
    assert not store.try_acquire_lease("lease", "c", timedelta(minutes=5))
    later.release_lease("lease", "b")
    assert store.try_acquire_lease("lease", "c", timedelta(minutes=5))


def test_run_updates_with_chunk_bookkeeping_under_concurrency(store: AuditStore) -> None:
    run = _run("fanout", T0)
    store.begin_run(run)
    chunks = 6
    barrier = threading.Barrier(chunks)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            barrier.wait(timeout=30)
            store.update_run_extra(TENANT, run.id, lambda extra: {**extra, "done": [*extra.get("done", []), n]})
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(n,)) for n in range(chunks)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(store.run_extra(TENANT, run.id)["done"]) == list(range(chunks))

    updated = store.update_run(TENANT, run.id, lambda r: replace(r, graph_requests=r.graph_requests + 7))
    assert updated.graph_requests == 7
    assert sorted(store.run_extra(TENANT, run.id)["done"]) == list(range(chunks))  # extra survives
    with pytest.raises(StorageError):
        store.update_run(TENANT, run.id, lambda r: replace(r, id="other"))
    with pytest.raises(StorageError):
        store.update_run(TENANT, "missing", lambda r: r)


def test_oversized_values_read_back_intact(store: AuditStore) -> None:
    message = ("Seats are short. " * 12_000)[:200_000] + "😀"  # 200 KB, ends outside the BMP
    ids = tuple(f"{i:08d}-b296-42f0-b197-1e91e994b900" for i in range(10_000))
    run = _run("big", T0)
    report = replace(
        _finished(run, (_finding(1, message=message), _finding(2))),
        run=replace(_finished(run).run, errors=ids),
    )
    store.finish_run(report)
    got = store.get_run(TENANT, "big")
    assert got is not None and got.errors == ids
    findings = store.run_findings("big")
    assert findings[0].message == message and findings[1] == _finding(2)

    updated = store.update_run(TENANT, "big", lambda r: replace(r, errors=(*r.errors, "one more")))
    assert updated.errors[-1] == "one more" and len(updated.errors) == 10_001

    payload = bytes(range(256)) * 12_000  # 3 MB: beyond one entity, spilled and restored
    store.outbox_put(OutboxItem("mail", "big-mail", "big", payload, T0))
    (item,) = store.outbox_list("mail")
    assert item.payload == payload
    store.outbox_delete(item)
    assert store.outbox_list() == []
    assert store.purge(TENANT, T0 + timedelta(days=1))["runs"] == 1
    assert store.get_run(TENANT, "big") is None


def test_odd_keys_and_names_round_trip(store: AuditStore) -> None:
    tenant = "tenant " + ODD
    run = _run("run " + ODD, T0, tenant=tenant, request_id="req " + ODD)
    finding = _finding(
        1, id="finding " + ODD, group_id="g" + ODD, group_name=ODD, user_name=ODD, message=ODD, sku_id="sku" + ODD
    )
    report = _finished(run, (finding,), (_sku("sku " + ODD, 5),))
    store.begin_run(run)
    store.finish_run(report, history_day=T0.date())
    assert store.get_run(tenant, run.id) == report.run
    assert store.run_for_request(tenant, "req " + ODD) == report.run
    assert store.run_findings(run.id) == [finding]
    assert list(store.sku_history(tenant, since=T0.date())) == ["sku " + ODD]
    assert store.sku_history(TENANT, since=T0.date()) == {}  # a different tenant sees nothing

    state = AlertState(finding.id, finding.kind, finding.severity, T0, T0)
    store.update_alert_states(tenant, lambda _s: [state])
    assert set(store.alert_states(tenant)) == {finding.id}

    # Channels are an enum (teams, mail): the odd characters go through the item id, a key too.
    item = OutboxItem(Channel.MAIL, "item " + ODD, run.id, b"{}", T0)
    store.outbox_put(item)
    assert item in store.outbox_list(Channel.MAIL)
    assert store.try_acquire_lease("lease " + ODD, "owner " + ODD, timedelta(minutes=1))
    assert not store.try_acquire_lease("lease " + ODD, "someone", timedelta(minutes=1))

    long_id = "x" * 3000
    store.finish_run(_finished(_run(long_id, T0 + timedelta(days=1), tenant=tenant)))
    got = store.get_run(tenant, long_id)
    assert got is not None and got.id == long_id


def test_outbox_is_idempotent_and_counts_failures(store: AuditStore) -> None:
    first = OutboxItem("teams", "run1-teams", "run1", b'{"type":"message"}', T0)
    store.outbox_put(first)
    store.outbox_put(first)
    store.outbox_put(OutboxItem("mail", "run1-mail", "run1", b"{}", T0 + timedelta(seconds=1)))
    assert [i.id for i in store.outbox_list()] == ["run1-teams", "run1-mail"]
    failed = store.outbox_record_failure(first, "HTTP 502 from\nthe webhook")
    assert failed.attempts == 1 and failed.last_error == "HTTP 502 from the webhook"
    assert store.outbox_list("teams") == [failed]
    store.outbox_delete(failed)
    store.outbox_delete(failed)  # already gone: fine
    assert [i.channel for i in store.outbox_list()] == ["mail"]


def test_purge_removes_old_runs_history_and_resolved_states(store: AuditStore) -> None:
    old = _run("old", T0 - timedelta(days=500), request_id="msg-old")
    new = _run("new", T0, request_id="msg-new")
    store.finish_run(_finished(old, (_finding(1),), (_sku("sku-1", 1),)), history_day=old.started_at.date())
    store.finish_run(_finished(new, (_finding(2),), (_sku("sku-1", 2),)), history_day=new.started_at.date())
    resolved_old = AlertState(
        "gone", "nested_group", Severity.WARNING, T0, T0, status="resolved", resolved_at=old.started_at
    )
    still_open = AlertState("open", "nested_group", Severity.WARNING, old.started_at, T0)
    store.update_alert_states(TENANT, lambda _s: [resolved_old, still_open])

    counts = store.purge(TENANT, T0 - timedelta(days=400))
    assert counts == {"runs": 1, "findings": 1, "details": 2, "sku_days": 1, "alert_states": 1}
    assert store.get_run(TENANT, "old") is None and store.run_for_request(TENANT, "msg-old") is None
    assert store.run_findings("old") == []
    assert [r.id for r in store.runs(TENANT)] == ["new"]
    assert len(store.run_findings("new")) == 1
    assert [d.day for d in store.sku_history(TENANT, since=date(2000, 1, 1))["sku-1"]] == [T0.date()]
    assert set(store.alert_states(TENANT)) == {"open"}
    assert store.purge(TENANT, T0 - timedelta(days=400)) == dict.fromkeys(counts, 0)


def test_transient_failures_are_retried_with_injected_sleep(storage_connection: str, unique_name: str) -> None:
    failures = {"left": 2}
    sleeps: list[float] = []

    def flaky(request: object) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ServiceRequestError("connection reset")

    store = open_store(
        _connection(storage_connection),
        prefix=unique_name,
        retry=RetryPolicy(attempts=3, sleep=sleeps.append),
        raw_request_hook=flaky,
    )
    store.ensure_tables()
    try:
        assert len(sleeps) == 2
        failures["left"] = 3
        with pytest.raises(StorageUnavailableError) as info:
            store.get_run(TENANT, "x")
        assert "cannot reach" in str(info.value)
    finally:
        store.drop_tables()


def test_errors_are_one_line_and_carry_no_secrets(azurite: Azurite, unique_name: str) -> None:
    no_retry = RetryPolicy(attempts=2, sleep=lambda _s: None)
    dead = azurite.connection_string.replace(f":{azurite.table_port}/", ":1/")
    store = open_store(_connection(dead), prefix=unique_name, retry=no_retry)
    with pytest.raises(StorageUnavailableError) as info:
        store.ensure_tables()
    text = str(info.value)
    assert "cannot reach" in text and "\n" not in text and AZURITE_KEY not in text and "AccountKey" not in text

    wrong_key = azurite.connection_string.replace(AZURITE_KEY, "Aby8" + AZURITE_KEY[4:])
    with pytest.raises(StorageUnavailableError) as info_key:
        open_store(_connection(wrong_key), prefix=unique_name, retry=no_retry).ensure_tables()
    assert "refused our credentials" in str(info_key.value) and "Aby8" + AZURITE_KEY[4:] not in str(info_key.value)

    missing = open_store(_connection(azurite.connection_string), prefix=unique_name + "x", retry=FAST)
    with pytest.raises(StorageError) as info2:
        missing.latest_run(TENANT)
    assert "ensure_tables" in str(info2.value)
    with pytest.raises(ConfigurationError):
        open_store(_connection("AccountName=x;NoKey=y"))
