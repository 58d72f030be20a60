"""What Microsoft documents, end to end over HTTP: limited information, former members' errors, all-or-nothing
groups, lifecycle-only SKUs, the tenant id, and check-permissions proving what it reads (docs/graph-fidelity.md)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from licensing.alerts.policy import EvaluatedScope
from licensing.graph import check_permissions, open_graph
from licensing.kinds import GROUP_SUBJECT_KINDS, SKU_SUBJECT_KINDS
from licensing.model import AuditReport, AuditRequest, RunStatus, Scope, Trigger, finding_id
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import Faults, SandboxServer, SandboxTenant, TenantSpec, generate_tenant
from licensing.sandbox import tenant as tm
from licensing.settings import load_settings

USER_RULES = ("b2b_member", "license_error", "disabled_user_licensed", "redundant_direct_assignment")
BASE = frozenset({"GroupMember.Read.All", "LicenseAssignment.Read.All", "Organization.Read.All"})


@pytest.fixture(scope="module")
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=17, users=400, groups=20))


@pytest.fixture(scope="module")
def server(tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(tenant) as srv:
        yield srv


def audit(server: SandboxServer, **settings: str) -> AuditReport:
    config = load_settings({"GRAPH_BASE_URL": server.base_url, **settings})
    request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI)
    outcome = asyncio.run(run_audit(request, Runtime(config, store=None, credential="none"), alerts=False))
    return outcome.report


@pytest.mark.parametrize(
    "granted",
    [BASE, BASE | {"User.ReadBasic.All"}],
    ids=["no-user-permission", "basic-profile-only"],
)
def test_without_user_read_all_user_rules_are_not_evaluated_and_nothing_resolves(
    sandbox: SandboxServer, granted: frozenset[str]
) -> None:
    sandbox.set_faults(Faults(permissions=granted))
    report = audit(sandbox)
    assert report.run.status is RunStatus.PARTIAL
    outcomes = {o.rule_id: o for o in report.outcomes}
    for rule in USER_RULES:
        assert outcomes[rule].status == "not_evaluated", rule
        assert "User.Read.All" in (outcomes[rule].reason or ""), outcomes[rule].reason
    assert not [f for f in report.findings if f.kind in USER_RULES]
    # Alert state: no user-rule finding may be called resolved by this run.
    scope = EvaluatedScope.from_report(report)
    assert not scope.complete and scope.kinds.isdisjoint(USER_RULES)
    # The members were still read (GroupMember.Read.All): nested groups are found.
    assert any(f.kind == "nested_group" for f in report.findings)


def test_a_former_member_holding_the_seat_is_a_license_error(sandbox: SandboxServer, tenant: SandboxTenant) -> None:
    report = audit(sandbox)
    assert report.run.status is RunStatus.SUCCEEDED, report.run.errors
    for u, left in tenant.removed.items():
        for g, k, err in left:
            uid, gid, sku = tenant.user_id(u), tenant.groups[g].id, tenant.skus[k].sku_id
            [found] = [f for f in report.findings if (f.user_id, f.group_id, f.sku_id) == (uid, gid, sku)]
            assert found.kind == "license_error" and found.error == err
            assert "no longer a member" in found.message
            assert uid not in {m for grp in tenant.groups if grp.id == gid for m in map(tenant.user_id, grp.users)}


def test_all_or_nothing_names_the_short_product_and_counts_seats_right(
    sandbox: SandboxServer, tenant: SandboxTenant
) -> None:
    report = audit(sandbox)
    short, ems = tenant.sku_by_part("ENTERPRISEPACK"), tenant.sku_by_part("EMS")
    group = tenant.groups[tm.G_SHORT]  # assigns Office 365 E3 (short) and EMS E3 (seats free)
    blocked = [
        f for f in report.findings if f.kind == "license_error" and f.group_id == group.id and f.sku_id == ems.sku_id
    ]
    assert blocked, "users waiting for E3 in the E3 + EMS group get no EMS either"
    for f in blocked:
        assert "all or nothing" in f.message and "Office 365 E3 has no seat left" in f.message
    summaries = {s.sku_id: s for s in report.skus}
    assert summaries[ems.sku_id].waiting_users == 0  # EMS seats are not what they wait for
    assert summaries[short.sku_id].waiting_users > 0
    assert not [f for f in report.findings if f.kind == "seat_shortage" and f.sku_id == ems.sku_id]


def test_a_suspended_sku_is_units_expiring_never_a_shortage(sandbox: SandboxServer, tenant: SandboxTenant) -> None:
    report = audit(sandbox)
    suspended = tenant.sku_by_part("EMSPREMIUM")
    assert (suspended.capability_status, suspended.enabled) == ("Suspended", 0) and suspended.consumed > 0
    kinds = {f.kind for f in report.findings if f.sku_id == suspended.sku_id}
    assert kinds == {"units_expiring"}


def test_the_tenant_id_is_configured_then_organization_then_sku_id_never_account(
    sandbox: SandboxServer, tenant: SandboxTenant
) -> None:
    assert audit(sandbox).run.tenant_id == tenant.tenant_id  # /organization
    configured = "11111111-2222-3333-4444-555555555555"
    assert audit(sandbox, AZURE_TENANT_ID=configured).run.tenant_id == configured
    # Without Organization.Read.All: the tenant part of subscribedSku.id, not the SKUs' billing accountId.
    sandbox.set_faults(
        Faults(permissions=frozenset({"GroupMember.Read.All", "LicenseAssignment.Read.All", "User.Read.All"}))
    )
    assert audit(sandbox).run.tenant_id == tenant.tenant_id


def test_check_permissions_proves_the_properties_not_just_the_id(sandbox: SandboxServer) -> None:
    async def checks() -> dict[str, Any]:
        settings = load_settings({"GRAPH_BASE_URL": sandbox.base_url})
        async with open_graph(settings, credential="none") as graph:
            return {c.permission: c for c in await check_permissions(graph)}

    full = asyncio.run(checks())
    assert full["User.Read.All"].granted is True, full["User.Read.All"].detail
    sandbox.set_faults(Faults(permissions=BASE | {"User.ReadBasic.All"}))
    limited = asyncio.run(checks())
    assert limited["User.Read.All"].granted is False and "limited information" in limited["User.Read.All"].detail
    sandbox.set_faults(Faults(permissions=frozenset({"GroupMember.Read.All", "LicenseAssignment.Read.All"})))
    denied = asyncio.run(checks())
    assert denied["Organization.Read.All (tenant name and id, subscription lifecycle dates)"].granted is False


def test_sign_in_activity_is_read_in_the_users_scan_and_its_absence_is_not_a_pass(
    sandbox: SandboxServer, tenant: SandboxTenant
) -> None:
    from licensing.sandbox.truth import ground_truth

    full = audit(sandbox)
    inactive = {(f.group_id, f.user_id) for f in full.findings if f.kind == "inactive_user_licensed"}
    expected = {(f.group_id, f.user_id) for f in ground_truth(tenant) if f.kind == "inactive_user_licensed"}
    assert inactive == expected and inactive, "the sandbox's inactive members, exactly"
    # (The scan asks for signInActivity at its documented page size, 500; a larger $top is served 500 a page.)
    # Without AuditLog.Read.All: the scan runs again without it, the rule says why, the run is not partial.
    sandbox.set_faults(Faults(permissions=BASE | {"User.Read.All"}))
    report = audit(sandbox)
    [outcome] = [o for o in report.outcomes if o.rule_id == "inactive_user_licensed"]
    assert outcome.status == "not_evaluated" and "sign-in activity not readable" in (outcome.reason or "")
    assert "AuditLog.Read.All" in (outcome.reason or "") and "User.Read.All" not in (outcome.reason or "")
    assert not [f for f in report.findings if f.kind == "inactive_user_licensed"]
    assert report.run.status is RunStatus.SUCCEEDED
    others = {f.id for f in full.findings if f.kind not in ("inactive_user_licensed", "seat_shortage", "seat_low")}
    assert others <= {f.id for f in report.findings}, "everything else is found as before"


def test_reclaim_lines_and_safe_redundant_assignments_match_the_sandbox(
    sandbox: SandboxServer, tenant: SandboxTenant
) -> None:
    from licensing.sandbox.tenant import ENABLED, U_REDUNDANT_BI, U_REDUNDANT_E3

    report = audit(sandbox)
    e3 = tenant.sku_by_part("ENTERPRISEPACK")
    [short] = [f for f in report.findings if f.kind == "seat_shortage" and f.sku_id == e3.sku_id]
    holders = {u for u in tenant.iter_users() for st in tenant.user_states(u) if st.sku == e3.index and st.holds_seat}
    disabled = {u for u in holders if not tenant.flags[u] & ENABLED}
    inactive = {
        u
        for u in holders - disabled
        if ((d := tenant.sign_in_days_ago(u)) is not None and d > 90) or (d is None and not tenant.created_recently(u))
    }
    assert (
        f"or reclaim {len(disabled) + len(inactive)} ({len(disabled)} disabled, {len(inactive)} inactive"
        in short.message
    )
    redundant = {f.user_id: f.message for f in report.findings if f.kind == "redundant_direct_assignment"}
    # Power BI Pro through its group enables every plan: the direct copy adds nothing. Microsoft 365 E3 through
    # its group leaves Yammer off, which the direct assignment enables: not safe.
    assert redundant[tenant.user_id(U_REDUNDANT_BI)].endswith("is safe to remove")
    assert "compare them before removing it" in redundant[tenant.user_id(U_REDUNDANT_E3[0])]


def test_audit_log_is_an_optional_permission_in_check_permissions(sandbox: SandboxServer) -> None:
    async def checks() -> list[Any]:
        settings = load_settings({"GRAPH_BASE_URL": sandbox.base_url})
        async with open_graph(settings, credential="none") as graph:
            return list(await check_permissions(graph))

    [full] = [c for c in asyncio.run(checks()) if c.permission.startswith("AuditLog.Read.All")]
    assert full.granted is True and full.optional
    sandbox.set_faults(Faults(permissions=BASE | {"User.Read.All"}))
    [without] = [c for c in asyncio.run(checks()) if c.permission.startswith("AuditLog.Read.All")]
    assert without.granted is False and without.optional
    from licensing.cli import main

    assert main(["check-permissions", "--graph-url", sandbox.base_url, "--credential", "none"]) == 0, (
        "an optional permission missing is not a failure"
    )


def test_a_tenant_without_entra_premium_is_told_apart_from_a_missing_permission() -> None:
    """Graph refuses signInActivity in a tenant without Entra ID P1/P2 (403
    Authentication_RequestFromNonPremiumTenantOrB2CTenant) whatever the app holds: the remedy is a licence."""
    tenant = generate_tenant(TenantSpec(seed=17, users=200, groups=12, entra_premium=False))
    assert not [f for f in tenant.ground_truth if f.kind == "inactive_user_licensed"]
    with SandboxServer(tenant) as server:
        report = audit(server)
        settings = load_settings({"GRAPH_BASE_URL": server.base_url})

        async def checks() -> dict[str, Any]:
            async with open_graph(settings, credential="none") as graph:
                return {c.permission.split(" ")[0]: c for c in await check_permissions(graph)}

        probes = asyncio.run(checks())
    assert report.run.status is RunStatus.SUCCEEDED, report.run.errors
    [outcome] = [o for o in report.outcomes if o.rule_id == "inactive_user_licensed"]
    reason = outcome.reason or ""
    assert outcome.status == "not_evaluated" and "P1 or P2" in reason, reason
    assert "needs the Graph application permission" not in reason, "no permission fixes a missing licence"
    audit_log = probes["AuditLog.Read.All"]
    assert audit_log.granted is None and "P1 or P2" in audit_log.detail and "User.Read.All" not in audit_log.detail
    assert probes["User.Read.All"].granted is True


def scoped_audit(server: SandboxServer, scope: Scope, **ids: str) -> AuditReport:
    config = load_settings({"GRAPH_BASE_URL": server.base_url})
    request = AuditRequest(scope=scope, trigger=Trigger.CLI, **ids)  # type: ignore[arg-type]
    outcome = asyncio.run(run_audit(request, Runtime(config, store=None, credential="none"), alerts=False))
    return outcome.report


def test_a_group_scoped_audit_opens_and_resolves_only_what_belongs_to_its_group(
    sandbox: SandboxServer, tenant: SandboxTenant
) -> None:
    """subscription_renewal reads subscriptions tenant-wide: a group audit judges only its group's SKUs, exactly
    as the tenant audit does; what it may open is what the tenant audit reports, and what it may resolve is its
    group's and its SKUs' (the seats, whose waiting users it cannot all see, it never resolves)."""
    full = audit(sandbox)
    tenant_ids = {f.id for f in full.findings}
    assert any(f.kind == "subscription_renewal" for f in full.findings)
    for group in [g for g in tenant.groups if g.licensed]:
        report = scoped_audit(sandbox, Scope.GROUP, group_id=group.id)
        own = {s.sku_id for s in report.skus}
        assert own == {tenant.skus[k].sku_id for k in group.sku_indices}
        renewals = [f for f in report.findings if f.kind == "subscription_renewal"]
        assert {f.sku_id for f in renewals} <= own, f"{group.display_name}: a product the group does not assign"
        stray = {f.id for f in report.findings if f.kind in ("subscription_renewal", "units_expiring")} - tenant_ids
        assert not stray, f"{group.display_name}: opened what the tenant audit never reports"
        scope = EvaluatedScope.from_report(report)
        seats = {finding_id(k, s) for k in ("seat_shortage", "seat_low") for s in own}
        assert not scope.complete and not seats & scope.finding_ids, "seats are never resolved by a group audit"
        mine = {finding_id(k, s) for k in SKU_SUBJECT_KINDS for s in own}
        mine |= {finding_id(k, group.id) for k in GROUP_SUBJECT_KINDS}
        assert scope.finding_ids <= mine, f"{group.display_name}: would resolve state outside its scope"


def test_an_audit_of_a_group_that_assigns_no_license_says_so(sandbox: SandboxServer, tenant: SandboxTenant) -> None:
    group = tenant.plan_group("plan_ready")  # a security group with members and no license
    report = scoped_audit(sandbox, Scope.GROUP, group_id=group.id)
    assert not report.findings and not report.skus
    reasons = {o.reason for o in report.outcomes}
    assert {o.status for o in report.outcomes} == {"not_evaluated"}
    assert len(reasons) == 1 and f"group {group.id} assigns no license" in reasons.pop()
    assert EvaluatedScope.from_report(report).kinds == frozenset(), "no alert state moves"


def test_group_then_nightly_alerts_neither_open_nor_resolve_anything_outside_the_group(
    sandbox: SandboxServer, tenant: SandboxTenant
) -> None:
    """The README's joiner runbook, then the nightly: after the nightly's state, a group audit of every licensed
    group sends nothing new that the nightly did not report, and the next nightly resolves nothing it opened."""
    from licensing.alerts.policy import plan_alerts

    settings = load_settings({"GRAPH_BASE_URL": sandbox.base_url, "ALERT_MIN_SEVERITY": "info"})
    nightly = audit(sandbox)
    now = nightly.run.started_at
    states = {s.finding_id: s for s in plan_alerts(nightly, {}, settings, now).next_states}
    scopes = [(Scope.GROUP, {"group_id": g.id}) for g in tenant.groups if g.licensed]
    scopes += [(Scope.SKU, {"sku": s.part_number}) for s in tenant.skus]
    for scope, ids in scopes:
        scoped = scoped_audit(sandbox, scope, **ids)
        joiner = plan_alerts(scoped, states, settings, now)
        assert not joiner.new and not joiner.resolved, (ids, joiner.new, joiner.resolved)
        after = {s.finding_id: s for s in joiner.next_states} | {
            k: v for k, v in states.items() if k not in {s.finding_id for s in joiner.next_states}
        }
        again = plan_alerts(audit(sandbox), after, settings, now)
        assert not again.new and not again.resolved, ids
