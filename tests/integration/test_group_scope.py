"""A group-scoped read over the sandbox (licensing/graph/group_scope.py): the group's members, its error list and only
those users, never the users scan, with the same findings for the group as the tenant audit gives."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from licensing.graph import group_scope, open_graph, read_snapshot
from licensing.graph.candidates import read_candidate
from licensing.graph.reader import read_snapshot as read_whole
from licensing.model import AuditReport, AuditRequest, Finding, Scope, TenantSnapshot, Trigger
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.plan import assess, plan_group, plan_to_plain
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.faults import FaultRule, Faults
from licensing.sandbox.tenant import G_E3, G_E5, PLAN_GROUPS, U_B2B, SandboxTenant
from licensing.settings import Settings, load_settings

pytestmark = pytest.mark.timeout(240)

AS_OF = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)  # the tenant's now and the runs' clock: nothing reads the wall clock
# Realistic: big groups hold most users (their audit reads the scan, cheaper for them) beside small ones; the tenant
# has more P1 seats than users, so a plan reads no scan either (see test_a_plan_scans_when_the_p1_seats_are_fewer…).
TENANT = generate_tenant(TenantSpec(seed=5, users=1500, groups=40, shape="realistic", big_groups=4), as_of=AS_OF)
# Kinds whose findings name the group (group_id): what a group audit must find exactly as the tenant audit does.
GROUP_KINDS = frozenset(
    {
        "b2b_member",
        "nested_group",
        "license_error",
        "processing_incomplete",
        "disabled_user_licensed",
        "empty_licensed_group",
        "dynamic_group_paused",
        "dynamic_rule_admits_guests",
        "inactive_user_licensed",
    }
)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(TENANT) as srv:
        yield srv


def audit(server: SandboxServer, request: AuditRequest) -> AuditReport:
    settings = load_settings({"GRAPH_BASE_URL": server.base_url})
    runtime = Runtime(settings, store=None, credential="none", now=lambda: AS_OF)
    return asyncio.run(run_audit(request, runtime, alerts=False)).report


def snapshot(server: SandboxServer, group_id: str, *, whole: bool = False) -> TenantSnapshot:
    async def main() -> TenantSnapshot:
        async with open_graph(Settings(graph_base_url=server.base_url), "none") as graph:
            request = AuditRequest(scope=Scope.GROUP, group_id=group_id)
            return await (read_whole if whole else read_snapshot)(graph, request)

    return asyncio.run(main())


def of_group(findings: tuple[Finding, ...], group_id: str) -> set[tuple[str, str, str | None, str | None]]:
    return {(f.id, f.kind, f.user_id, f.member_group_id) for f in findings if f.group_id == group_id}


def left_in_error(tenant: SandboxTenant) -> dict[str, set[str]]:
    """Group id -> ids of the users who left it and still hold its seat in error (the sandbox's ground truth)."""
    out: dict[str, set[str]] = {}
    for u, states in tenant.removed.items():
        for g, _sku, _err in states:
            out.setdefault(tenant.groups[g].id, set()).add(tenant.user_id(u))
    return out


def test_a_group_audit_finds_for_its_group_what_the_tenant_audit_finds(sandbox: SandboxServer) -> None:
    full = audit(sandbox, AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI))
    assert full.run.status == "succeeded"
    left = left_in_error(TENANT)
    assert left, "the tenant has former members stuck in error"
    seen_kinds: set[str] = set()
    scanned = 0
    for group in [g for g in TENANT.groups if g.licensed]:
        sandbox.reset_stats()
        scoped = audit(sandbox, AuditRequest(scope=Scope.GROUP, group_id=group.id, trigger=Trigger.CLI))
        assert scoped.run.status == "succeeded", (group.display_name, scoped.run.errors)
        wanted = len(group.users) + len(left.get(group.id, ()))
        if wanted <= group_scope.TARGETED_WITHOUT_COUNT:
            assert sandbox.stats["objects"] < TENANT.user_count // 2, f"{group.display_name}: the users were scanned"
        else:
            scanned += not group_scope.targeted_costs_less(wanted, TENANT.user_count)
        mine = of_group(scoped.findings, group.id)
        assert mine == {x for x in of_group(full.findings, group.id) if x[1] in GROUP_KINDS}, group.display_name
        assert not {f.kind for f in scoped.findings if f.group_id == group.id} - GROUP_KINDS
        seen_kinds |= {x[1] for x in mine}
        errors = {x[2] for x in mine if x[1] == "license_error"}
        assert left.get(group.id, set()) <= errors, f"{group.display_name}: a former member in error was missed"
    assert scanned, "a big group's audit reads the scan (and finds the same)"
    # The cases the comparison must cover: licence errors (former members among them), nested groups, B2B members.
    assert {"license_error", "nested_group", "b2b_member", "disabled_user_licensed"} <= seen_kinds
    assert {TENANT.groups[G_E5].id, TENANT.groups[G_E3].id} <= set(left) | {
        f.group_id for f in full.findings if f.kind == "nested_group"
    }
    assert any(f.user_id == TENANT.user_id(U_B2B[0]) for f in full.findings if f.kind == "b2b_member")


def test_the_group_read_is_the_snapshot_the_scan_gives(sandbox: SandboxServer) -> None:
    """Members, their users (every property the rules read), the former members in error, what is unreadable."""
    for group in [g for g in TENANT.groups if g.licensed]:
        ours, scanned = snapshot(sandbox, group.id), snapshot(sandbox, group.id, whole=True)
        assert ours.groups == scanned.groups, group.display_name
        assert dict(ours.users) == dict(scanned.users), group.display_name
        assert ours.unreadable == scanned.unreadable == ()
        # A group without users reads none: sign-ins are then not known to be readable (never "passed" on nothing).
        assert scanned.sign_ins_read and ours.sign_ins_read is bool(ours.users)
        assert ours.stats.requests <= scanned.stats.requests + 3, group.display_name  # + counts, error list


def test_a_group_read_costs_a_fixed_handful_of_requests(sandbox: SandboxServer) -> None:
    """organization, subscribedSkus, subscriptions, the group, its member count and error list, its members, then its
    users 15 ids a request, packed in one $batch: deterministic on a generated tenant."""
    group = TENANT.groups[G_E3]
    members = len(group.users)
    assert 15 < members <= 300
    read = snapshot(sandbox, group.id)
    assert read.stats.requests == 8
    stats = sandbox.stats
    assert stats["batch_requests"] == 1 and stats["batch_subrequests"] >= -(-members // 15)


def test_when_the_scan_is_cheaper_it_is_read_and_the_snapshot_is_the_same(
    sandbox: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 1,500 users are 3 scan pages; a group of more than 45 users would cost more by id: counted, then scanned.
    monkeypatch.setattr(group_scope, "TARGETED_WITHOUT_COUNT", 0)
    group = max((g for g in TENANT.groups if g.licensed), key=lambda g: len(g.users))
    assert len(group.users) > 45
    ours = snapshot(sandbox, group.id)
    assert sandbox.stats["objects"] >= TENANT.user_count, "the users scan was read"
    scanned = snapshot(sandbox, group.id, whole=True)
    assert ours.groups == scanned.groups and dict(ours.users) == dict(scanned.users)
    assert not group_scope.targeted_costs_less(46, 1500) and group_scope.targeted_costs_less(45, 1500)


def test_an_unreadable_error_list_makes_the_run_partial(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule("403", route="membersWithLicenseErrors"),)))
    group = TENANT.groups[G_E3]
    report = audit(sandbox, AuditRequest(scope=Scope.GROUP, group_id=group.id, trigger=Trigger.CLI))
    assert report.run.status == "partial"
    assert not [f for f in report.findings if f.kind == "license_error"], "nothing raised from what was not read"
    outcomes = {o.rule_id: o.status for o in report.outcomes}
    assert outcomes.get("license_error") == "not_evaluated"


def test_refused_sign_ins_are_read_again_without_them_as_the_scan_does(sandbox: SandboxServer) -> None:
    tenant = generate_tenant(TenantSpec(seed=5, users=300, groups=14, entra_premium=False), as_of=AS_OF)
    with SandboxServer(tenant) as srv:
        group = tenant.groups[G_E3]
        ours, scanned = snapshot(srv, group.id), snapshot(srv, group.id, whole=True)
    assert not ours.sign_ins_read and ours.sign_ins_note and "sign-in activity not readable" in ours.sign_ins_note
    assert dict(ours.users) == dict(scanned.users) and ours.unreadable == scanned.unreadable


def _plans(server: SandboxServer, group_id: str) -> tuple[dict[str, object], dict[str, object], int, int]:
    async def main() -> tuple[dict[str, object], dict[str, object], int, int]:
        async with open_graph(Settings(graph_base_url=server.base_url), "none") as graph:
            ours = plan_to_plain(await plan_group(graph, group_id, ["SPE_E3", "EMS"]))
            n_ours = graph.stats.requests
        async with open_graph(Settings(graph_base_url=server.base_url), "none") as graph:
            scanned = plan_to_plain(assess(await read_candidate(graph, group_id, ["SPE_E3", "EMS"])))
            n_scanned = graph.stats.requests
        return ours, scanned, n_ours, n_scanned

    return asyncio.run(main())


def test_a_plan_reads_the_members_only_and_answers_as_with_the_scan(sandbox: SandboxServer) -> None:
    for key in PLAN_GROUPS:
        group = TENANT.plan_group(key)
        sandbox.reset_stats()
        ours, scanned, _n, _m = _plans(sandbox, group.id)
        assert ours == scanned, key
    sandbox.reset_stats()
    _plans(sandbox, TENANT.plan_group("plan_ready").id)
    # The two plans of the last call: ours never scans, the scan's reads every user once.
    assert TENANT.user_count <= sandbox.stats["objects"] < 2 * TENANT.user_count


def test_a_plan_scans_when_the_p1_seats_are_fewer_than_the_users() -> None:
    """p1_not_covered counts who holds a licence through any group tenant-wide: only the scan tells, and it is read."""
    tenant = generate_tenant(TenantSpec(seed=5, users=300, groups=14, premium_spare=False), as_of=AS_OF)
    with SandboxServer(tenant) as srv:
        ours, scanned, n_ours, n_scanned = _plans(srv, tenant.plan_group("plan_ready").id)
    assert ours == scanned
    assert any(w["kind"] == "p1_not_covered" for w in ours["warnings"])  # type: ignore[union-attr,index]
    assert n_ours == n_scanned + 1  # the user count that did not settle it
