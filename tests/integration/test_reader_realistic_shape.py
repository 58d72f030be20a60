"""The whole audit over HTTP on the realistic licensing shape (big groups read over several pages)."""

from __future__ import annotations

import asyncio

from licensing.model import AuditRequest, RunStatus, Scope, Trigger
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.settings import load_settings


def _keys(findings) -> set[tuple]:  # type: ignore[no-untyped-def]
    return {(f.kind, str(f.severity), f.sku_id, f.group_id, f.user_id, f.member_group_id, f.error) for f in findings}


def test_audit_matches_ground_truth_on_the_realistic_shape() -> None:
    # 2,000 users with 70 % in one group: its members span two 999-object pages.
    tenant = generate_tenant(TenantSpec(seed=11, users=2_000, groups=60, shape="realistic", big_groups=6))
    assert max(g.member_count for g in tenant.groups) > 999
    with SandboxServer(tenant) as server:
        settings = load_settings({"GRAPH_BASE_URL": server.base_url, "GRAPH_MAX_CONCURRENCY": "8"})
        request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI)
        outcome = asyncio.run(run_audit(request, Runtime(settings, store=None, credential="none"), alerts=False))
    report = outcome.report
    assert report.run.status is RunStatus.SUCCEEDED and report.run.errors == ()
    assert _keys(report.findings) == _keys(tenant.ground_truth)
    assert len(report.findings) == len(tenant.ground_truth)
