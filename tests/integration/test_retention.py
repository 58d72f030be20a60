"""Retention: the nightly run deletes runs, findings and SKU history older than RETENTION_DAYS; other runs do not."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from licensing.model import AuditReport, AuditRequest, Finding, RunInfo, RunStatus, Scope, Severity, SkuDay, Trigger
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.settings import load_settings
from licensing.store import open_store

pytestmark = pytest.mark.azurite


def test_nightly_run_purges_what_is_older_than_retention(storage_connection: str, unique_name: str) -> None:
    tenant = generate_tenant(TenantSpec(seed=17, users=120, groups=12))
    now = datetime.now(UTC).replace(microsecond=0)
    with SandboxServer(tenant) as server:
        settings = load_settings(
            {"GRAPH_BASE_URL": server.base_url, "LICENSING_STORAGE": storage_connection, "RETENTION_DAYS": "30"}
        )
        store = open_store(settings.storage, prefix=unique_name)
        store.ensure_tables()
        old_start = now - timedelta(days=45)
        old = RunInfo(
            id="20000101T000000Z-0ld0ld00",
            tenant_id=tenant.tenant_id,
            trigger=Trigger.SCHEDULE,
            scope=Scope.TENANT,
            started_at=old_start,
            finished_at=old_start,
            status=RunStatus.SUCCEEDED,
        )
        finding = Finding(id="f" * 32, kind="empty_licensed_group", severity=Severity.INFO, message="old", group_id="g")
        store.finish_run(AuditReport(run=old, findings=(finding,)))
        sku_id = tenant.sku_ids[0]
        store.write_sku_history(
            tenant.tenant_id,
            [SkuDay(sku_id=sku_id, day=(now - timedelta(days=d)).date(), enabled=10, consumed=5) for d in (40, 3)],
        )

        manual = asyncio.run(
            run_audit(
                AuditRequest(trigger=Trigger.CLI), Runtime(settings, store=store, credential="none"), alerts=False
            )
        )
        assert store.get_run(tenant.tenant_id, old.id) is not None, "only the nightly run purges"

        nightly = asyncio.run(
            run_audit(
                AuditRequest(trigger=Trigger.SCHEDULE, request_id="schedule-test"),
                Runtime(settings, store=store, credential="none", now=lambda: now),
                alerts=False,
            )
        )
    assert store.get_run(tenant.tenant_id, old.id) is None
    assert store.run_findings(old.id) == []
    days = store.sku_history(tenant.tenant_id, since=(now - timedelta(days=400)).date(), sku_id=sku_id)[sku_id]
    assert (now - timedelta(days=40)).date() not in {d.day for d in days}
    assert (now - timedelta(days=3)).date() in {d.day for d in days}
    for kept in (manual.report.run, nightly.report.run):
        assert store.get_run(tenant.tenant_id, kept.id) is not None
