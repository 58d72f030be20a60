"""Round three, items 2 and 7: no false all-clear from any read, and nothing raised from what was not read. Real
Table Storage (Azurite), the sandbox over HTTP and a loopback Teams webhook. Each failed before its fix."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from licensing.model import OutcomeStatus, RunStatus, Severity
from licensing.pipeline.conclusion import AuditOutcome
from licensing.pipeline.handlers import handle_audit_message
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import FaultRule, Faults, SandboxServer, SandboxTenant
from licensing.settings import Settings
from tests.reliability.conftest import SleepLog, WebhookReceiver, make_settings

pytestmark = pytest.mark.azurite


def tenant_run(settings: Settings, store: Any, request_id: str) -> AuditOutcome:
    body = orjson.dumps({"scope": "tenant", "request_id": request_id})
    runtime = Runtime(settings, store=store, credential="none")
    result = asyncio.run(handle_audit_message(body, runtime, message_id=f"m-{request_id}"))
    assert result.audit is not None, result
    return result.audit


def card_text(body: bytes) -> str:
    card = orjson.loads(body)["attachments"][0]["content"]
    return " ".join(str(b.get("text", "")) for b in card["body"]).replace("\\", "")


@pytest.mark.parametrize(
    ("route", "part", "blind"),
    [
        ("groups", "groups", {"b2b_member", "license_error", "nested_group", "empty_licensed_group"}),
        ("users", "users", {"seat_shortage", "seat_low", "license_error"}),
    ],
    ids=["empty-group-list", "empty-users-scan"],
)
def test_one_empty_answer_is_partial_and_neither_resolves_nor_raises_what_it_hid(
    route: str, part: str, blind: set[str], sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any,
    storage_connection: str, webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """An empty licensed-group list gave ``succeeded`` with 13 findings of 57 and resolved 49 alerts ("5 warning (5
    new, 25 resolved)"); an empty users scan gave ``partial`` and still resolved the critical seat shortage."""
    settings = make_settings(
        sandbox, storage=storage_connection, webhook_url=webhook.url, AZURE_TENANT_ID=small_tenant.tenant_id
    )
    first = tenant_run(settings, store, f"{route}-1")
    assert first.report.run.status is RunStatus.SUCCEEDED
    tenant = small_tenant.tenant_id
    open_before = {fid for fid, s in store.alert_states(tenant, open_only=True).items()}
    criticals = {f.id for f in first.report.findings if f.severity == Severity.CRITICAL}
    assert criticals and criticals <= open_before
    cards = len(webhook.accepted)

    sandbox.set_faults(Faults(rules=(FaultRule("empty_answer", route, first=1),)))
    second = tenant_run(settings, store, f"{route}-2")
    run = second.report.run
    assert run.status is RunStatus.PARTIAL, run.errors
    assert any(e.startswith(part) and "not trusted" in e for e in run.errors), run.errors
    still_open = {fid for fid, s in store.alert_states(tenant, open_only=True).items()}
    assert open_before <= still_open, f"{len(open_before - still_open)} alerts resolved by an empty answer"
    assert second.delivery is not None and second.delivery.plan is not None
    assert not second.delivery.plan.resolved and not second.delivery.plan.new
    outcomes = {o.rule_id: o for o in second.report.outcomes}
    for kind in blind:
        assert outcomes[kind].status is OutcomeStatus.NOT_EVALUATED, outcomes[kind]
        assert not [f for f in second.report.findings if f.kind == kind], f"{kind} raised from what was not read"
    assert all("resolved" not in card_text(body) for body in webhook.accepted[cards:])

    sandbox.set_faults(Faults())
    third = tenant_run(settings, store, f"{route}-3")
    assert third.report.run.status is RunStatus.SUCCEEDED
    assert {f.id for f in third.report.findings} == {f.id for f in first.report.findings}


@pytest.mark.parametrize(
    ("listed", "previous", "broken"),
    [
        (["g1"], None, True),  # one group left of three the scan shows assigning: the list lacks half or more
        (["g1", "g2", "x1"], None, True),  # an item that assigns nothing is not a licensed group
        ([f"g{i}" for i in range(1, 11)] + ["g12"], 30, True),  # 11 listed where the last tenant run had 30
        ([f"g{i}" for i in range(1, 12)], 12, False),  # one group licensed while we read: not a broken list
    ],
    ids=["lacks-half", "not-groups", "shrank", "one-new-group"],
)
def test_the_group_list_is_checked_against_the_users_scan(
    listed: list[str], previous: int | None, broken: bool
) -> None:
    from licensing.model import LicensedGroup, Part, Sku, TenantSnapshot
    from licensing.pipeline.crosscheck import ScanSummary, cross_check

    groups = tuple(LicensedGroup(id=g, sku_ids=() if g.startswith("x") else ("s1",)) for g in listed)
    assigning = {"g1", "g2", "g3"} if len(listed) < 5 else {f"g{i}" for i in range(1, 13)}
    snapshot = TenantSnapshot(tenant_id="t", skus=(Sku(sku_id="s1", sku_part_number="P", enabled=10, consumed=8),),
                              groups=groups)  # fmt: skip
    checked = cross_check(snapshot, ScanSummary(frozenset(assigning), holders=8), previous)
    assert any(u.what is Part.GROUPS for u in checked.unreadable) is broken, checked.unreadable


def test_a_partial_run_does_not_raise_a_renewal_for_a_sku_that_never_alerts(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    """With the SKUs unreadable the renewal finding lost its part number, so ALERT_EXCLUDE_SKUS no longer matched
    it and the excluded SKU alerted: the renewal is computed from the SKUs, so it is not evaluated then."""
    probe = make_settings(sandbox, storage=storage_connection, AZURE_TENANT_ID=small_tenant.tenant_id)
    renewals = [f for f in tenant_run(probe, store, "renew-probe").report.findings if f.kind == "subscription_renewal"]
    assert renewals and all(f.sku_part_number for f in renewals)
    excluded = ",".join(sorted({str(f.sku_part_number) for f in renewals}))
    settings = make_settings(sandbox, storage=storage_connection, webhook_url=webhook.url,
                             AZURE_TENANT_ID=small_tenant.tenant_id, ALERT_EXCLUDE_SKUS=excluded)  # fmt: skip
    sandbox.set_faults(Faults(rules=(FaultRule("empty_answer", "subscribedSkus"),)))
    partial = tenant_run(settings, store, "renew-partial")
    assert partial.report.run.status is RunStatus.PARTIAL
    assert not [f for f in partial.report.findings if f.kind == "subscription_renewal"]
    outcome = {o.rule_id: o for o in partial.report.outcomes}["subscription_renewal"]
    assert outcome.status is OutcomeStatus.NOT_EVALUATED
    assert all("subscription" not in card_text(body).lower() for body in webhook.accepted)
