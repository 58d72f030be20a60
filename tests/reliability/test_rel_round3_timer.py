"""Round three, the night (issue 27 items 4, 5 and 6), with real Table and Queue Storage (Azurite) and the sandbox:
an early firing is still its night, the timer's request cannot be copied with other options, and on-demand traffic
between two nights does not switch off ``licensed_group_shrank``. Each failed before its fix."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licensing.model import AuditReport, RunInfo, RunStatus, Scope, Trigger
from licensing.pipeline.handlers import MessageResult, handle_audit_message, handle_timer
from licensing.pipeline.requests import encode_request
from licensing.pipeline.runtime import Runtime
from licensing.pipeline.schedule import occurrence, occurrence_request_id
from licensing.sandbox import SandboxServer, SandboxTenant
from licensing.settings import Settings
from tests.reliability.conftest import SleepLog, make_settings

NIGHT = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)


def settings_for(sandbox: SandboxServer, storage: str, queue: str, tenant: SandboxTenant) -> Settings:
    return make_settings(sandbox, storage=storage, AUDIT_QUEUE=queue, AZURE_TENANT_ID=tenant.tenant_id)


def handle(body: str, settings: Settings, store: Any, message_id: str, now: datetime | None = None) -> MessageResult:
    runtime = Runtime(settings, store=store, credential="none", now=(lambda: now) if now else datetime.now().astimezone)
    return asyncio.run(handle_audit_message(body, runtime, message_id=message_id))


# ------------------------------------------------------------------ item 4: an early firing is its own night


@pytest.mark.parametrize("early", [timedelta(milliseconds=300), timedelta(seconds=2), timedelta(seconds=45)])
def test_an_early_firing_belongs_to_the_coming_occurrence(early: timedelta) -> None:
    """0.3 s before 02:30:00 the floor of "now" named last night (already done): the night was skipped."""
    assert occurrence("0 30 2 * * *", NIGHT - early) == NIGHT
    assert occurrence_request_id("0 30 2 * * *", NIGHT - early) == "schedule-20261124T023000Z"


def test_late_and_past_due_firings_keep_their_occurrence_and_far_early_ones_do_not_claim_the_next() -> None:
    assert occurrence("0 30 2 * * *", NIGHT + timedelta(milliseconds=400)) == NIGHT
    assert occurrence("0 30 2 * * *", NIGHT + timedelta(hours=3)) == NIGHT  # past due, caught up later
    assert occurrence("0 30 2 * * *", NIGHT - timedelta(minutes=10)) == NIGHT - timedelta(days=1)
    # A schedule every 30 s: a firing 20 s early is the previous one's late firing, not the next one's.
    every = "*/30 * * * * *"
    assert occurrence(every, NIGHT - timedelta(seconds=20)) == NIGHT - timedelta(seconds=30)
    assert occurrence(every, NIGHT - timedelta(seconds=1)) == NIGHT


@pytest.mark.azurite
def test_an_early_timer_firing_runs_the_night_instead_of_skipping_it(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    yesterday = handle_timer(settings, now=NIGHT - timedelta(days=1, seconds=-1), store_factory=lambda _s: store)
    done = handle(encode_request(yesterday), settings, store, "night-1")
    assert done.outcome == "completed", done.reason
    tonight = handle_timer(settings, now=NIGHT - timedelta(milliseconds=300), store_factory=lambda _s: store)
    assert tonight.request_id != yesterday.request_id
    night = handle(encode_request(tonight), settings, store, "night-2")
    assert night.outcome == "completed", f"the night was {night.outcome}: {night.reason}"


# ------------------------------------------------------------------ item 5: the timer's request is the timer's


@pytest.mark.azurite
@pytest.mark.parametrize(
    "options",
    [{"notify": False}, {"requested_by": "Global Administrator"}],
    ids=["notify-false", "requested-by"],
)
def test_a_copy_of_the_timers_request_with_other_options_is_rejected_and_the_night_runs(
    options: dict[str, Any], sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any,
    storage_connection: str, unique_name: str, graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    """A sender that reused the ticket with ``notify: false`` ran the night silently; the timer's message skipped."""
    import orjson

    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    request = handle_timer(settings, now=NIGHT, store_factory=lambda _s: store)
    copy = {**orjson.loads(encode_request(request)), **options}
    muted = handle(orjson.dumps(copy).decode(), settings, store, "evil")
    assert muted.outcome == "rejected", muted.outcome
    assert "timer's options" in (muted.reason or "")
    night = handle(encode_request(request), settings, store, "timer-msg")
    assert night.outcome == "completed", f"the timer's own message was {night.outcome}: {night.reason}"
    assert night.request is not None and night.request.notify is True


# ---------------------------------------------------------- item 6: group shrink compares with the last tenant run


@pytest.mark.azurite
def test_on_demand_runs_between_two_nights_do_not_switch_off_the_group_shrink_check(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str, unique_name: str,
    graph_sleeps: SleepLog,
) -> None:  # fmt: skip
    """49 on-demand messages between two nights pushed the last tenant run out of the 50 runs looked at."""
    settings = settings_for(sandbox, storage_connection, f"q{unique_name}", small_tenant)
    first = handle('{"scope": "tenant", "request_id": "night-a"}', settings, store, "n1")
    assert first.audit is not None
    outcomes = {o.rule_id: o for o in first.audit.report.outcomes}
    assert "no earlier tenant run" in (outcomes["licensed_group_shrank"].reason or ""), "the report says so"
    # 55 runs of other scopes (rejected junk, group audits) recorded after the night.
    started = first.audit.report.run.started_at
    group_id = small_tenant.licensed_group_ids[0]
    for i in range(55):
        at = started + timedelta(seconds=i + 1)
        run = RunInfo(
            id=f"junk-{i:03d}", tenant_id=small_tenant.tenant_id, trigger=Trigger.QUEUE,
            scope=Scope.GROUP if i % 2 else Scope.TENANT, scope_id=group_id if i % 2 else None, started_at=at,
            finished_at=at, status=RunStatus.SUCCEEDED if i % 2 else RunStatus.REJECTED, errors=("junk",),
            request_id=f"junk-{i}",
        )  # fmt: skip
        store.finish_run(AuditReport(run=run))
    second = handle(
        '{"scope": "tenant", "request_id": "night-b"}', settings, store, "n2", now=started + timedelta(hours=1)
    )
    assert second.audit is not None
    shrank = {o.rule_id: o for o in second.audit.report.outcomes}["licensed_group_shrank"]
    assert "no earlier tenant run" not in (shrank.reason or ""), shrank
