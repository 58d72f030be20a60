"""The Graph reader against the sandbox over real HTTP: complete snapshots, every fault survived, scoped reads."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from licensing.errors import BadRequestError
from licensing.graph import RetryPolicy, check_permissions, open_graph, read_snapshot
from licensing.model import AuditRequest, Scope, TenantSnapshot
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.faults import FaultRule, Faults
from licensing.sandbox.tenant import NO_GROUP, SandboxTenant
from licensing.settings import Settings

pytestmark = pytest.mark.timeout(120)

TENANT = generate_tenant(TenantSpec(seed=7, users=400, groups=16))


class NoSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(TENANT) as srv:
        yield srv


def read(
    server: SandboxServer,
    request: AuditRequest | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    sleeps: NoSleep | None = None,
    **options: Any,
) -> TenantSnapshot:
    async def main() -> TenantSnapshot:
        retry = RetryPolicy(sleep=sleeps or NoSleep())
        async with open_graph(Settings(graph_base_url=server.base_url), "none", retry=retry, **options) as graph:
            return await read_snapshot(graph, request or AuditRequest(), progress=progress)

    return asyncio.run(main())


def assert_complete(snap: TenantSnapshot, tenant: SandboxTenant, deleted: frozenset[str] = frozenset()) -> None:
    licensed = {g.id: g for g in tenant.groups if g.licensed and g.id not in deleted}
    assert {g.id for g in snap.groups} - deleted == set(licensed)
    expected_users: set[str] = set()
    for group in snap.groups:
        if group.id in deleted:
            continue
        truth = licensed[group.id]
        assert group.members_read
        assert group.display_name == truth.display_name
        assert set(group.sku_ids) == {tenant.skus[k].sku_id for k in truth.sku_indices}
        assert group.processing_state == truth.processing_state
        users = {tenant.user_id(u) for u in truth.users}
        assert set(group.user_ids) == users and len(group.user_ids) == len(users)
        assert {g.id for g in group.member_groups} == {tenant.groups[i].id for i in truth.member_groups}
        assert group.other_members == truth.devices
        expected_users |= users
    # Members, and every user the users scan found holding a state a licensed group assigned (e.g. a former member
    # whose removal failed, or a member of a group deleted during the read): nobody else.
    holders = {
        tenant.user_id(u) for u in tenant.iter_users() if any(s.group != NO_GROUP for s in tenant.user_states(u))
    }
    assert set(snap.users) == expected_users | holders
    for user_id in expected_users | holders:
        user = snap.users[user_id]
        index = tenant.user_index(user_id)
        assert index is not None
        states = {(s.sku_id, s.assigned_by_group, s.error) for s in user.assignments}
        assert len(states) == len(tenant.user_states(index))


def test_complete_snapshot_matches_the_tenant(sandbox: SandboxServer) -> None:
    phases: list[tuple[str, int, int]] = []
    snap = read(sandbox, progress=lambda *p: phases.append(p))
    assert snap.unreadable == ()
    assert snap.tenant_id == TENANT.tenant_id and snap.tenant_name == TENANT.tenant_name
    assert_complete(snap, TENANT)
    by_id = {s.sku_id: s for s in snap.skus}
    assert set(by_id) == set(TENANT.sku_ids)
    for truth in TENANT.skus:
        sku = by_id[truth.sku_id]
        assert (sku.sku_part_number, sku.enabled, sku.consumed, sku.warning, sku.suspended, sku.locked_out) == (
            truth.part_number,
            truth.enabled,
            truth.consumed,
            truth.warning,
            truth.suspended,
            truth.locked_out,
        )
    assert any(s.next_lifecycle is not None for s in snap.skus)
    # Each user once; B2B and error fixtures of the generator come through.
    assert any(u.is_b2b for u in snap.users.values())
    assert any(a.in_error for u in snap.users.values() for a in u.assignments)
    assert ("members", len(snap.groups), len(snap.groups)) in phases
    # Requests: groups list, SKUs, subscriptions, organization, and ceil(groups / 20) batches at most.
    stats = sandbox.stats
    assert snap.stats.requests == stats["requests"] - stats["batch_subrequests"]
    assert snap.stats.requests <= 4 + -(-len(snap.groups) // 20) + 2
    assert snap.stats.resource_units == stats["ru_charged"]


@pytest.mark.parametrize(
    "retry_after",
    ["2", "0.25", "date", None],
    ids=["integer", "fractional", "http-date", "missing"],
)
@pytest.mark.parametrize("route", ["members", "groups", "batch"])
def test_429_in_every_retry_after_form_is_survived(sandbox: SandboxServer, retry_after: str | None, route: str) -> None:
    value = retry_after
    if retry_after == "date":
        value = format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True)
    sandbox.set_faults(Faults(rules=(FaultRule("429", route=route, first=3, retry_after=value),)))
    sleeps = NoSleep()
    snap = read(sandbox, sleeps=sleeps)
    assert snap.unreadable == ()
    assert_complete(snap, TENANT)
    assert snap.stats.throttled == 3 and snap.stats.retried >= 1
    if retry_after in ("2", "0.25"):
        assert float(retry_after) in sleeps.calls


@pytest.mark.parametrize("kind", ["500", "502", "503", "504", "reset"])
@pytest.mark.parametrize("route", ["members", "subscribedSkus", "groups"])
def test_transient_failures_are_survived(sandbox: SandboxServer, kind: str, route: str) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule(kind, route=route, first=2, retry_after=None),)))
    snap = read(sandbox)
    assert snap.unreadable == ()
    assert_complete(snap, TENANT)
    assert snap.stats.retried >= 1


def test_a_timeout_is_retried(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule("timeout", route="batch", first=1, hold_s=3.0),)))
    snap = read(sandbox, timeout_s=0.5)
    assert snap.unreadable == ()
    assert_complete(snap, TENANT)
    assert snap.stats.retried == 1


@pytest.mark.parametrize("kind", ["empty_page", "short_page", "unknown_type"])
def test_odd_pages_lose_nothing(sandbox: SandboxServer, kind: str) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule(kind, route="*", rate=0.5),), seed=3))
    snap = read(sandbox)
    assert snap.unreadable == ()
    if kind == "unknown_type":
        # An unknown directory object type is counted as "other member", never mistaken for a user.
        extra = {g.id: g.other_members for g in snap.groups}
        truth = {g.id: g.devices for g in TENANT.groups if g.licensed}
        assert all(extra[i] >= truth[i] for i in truth)
        assert set(snap.users) == {TENANT.user_id(u) for g in TENANT.groups if g.licensed for u in g.users}
    else:
        assert_complete(snap, TENANT)


def test_group_deleted_mid_run_gives_a_partial_snapshot() -> None:
    victim = TENANT.licensed_group_ids[3]

    with SandboxServer(TENANT) as own:  # deletion is permanent: not on the shared server

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "groups":  # the groups are listed; their members are not read yet
                own.delete_group(victim)

        snap = read(own, progress=progress)
    lost = [u for u in snap.unreadable if u.subject_id == victim]
    assert len(lost) == 1 and lost[0].what == "members" and "404" in lost[0].reason
    assert next(g for g in snap.groups if g.id == victim).members_read is False
    assert_complete(snap, TENANT, deleted=frozenset({victim}))


def test_403_on_members_names_the_permission(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule("403", route="members", first=1),)))
    snap = read(sandbox)
    assert len(snap.unreadable) == 1
    part = snap.unreadable[0]
    assert part.what == "members" and part.permission == "GroupMember.Read.All"
    assert "GroupMember.Read.All" in part.reason
    assert sum(not g.members_read for g in snap.groups) == 1


def test_403_on_skus_degrades_and_on_subscriptions_is_not_fatal(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule("403", route="subscriptions"),)))
    snap = read(sandbox)
    assert snap.unreadable == () and len(snap.skus) == len(TENANT.skus)
    assert all(s.next_lifecycle is None for s in snap.skus)

    sandbox.set_faults(Faults(rules=(FaultRule("403", route="subscribedSkus"),)))
    snap = read(sandbox)
    assert [(u.what, u.permission) for u in snap.unreadable] == [
        ("skus", "LicenseAssignment.Read.All or Organization.Read.All")
    ]
    assert snap.skus == () and len(snap.groups) == len(TENANT.licensed_group_ids)


def test_persistent_failure_of_one_group_is_recorded(sandbox: SandboxServer) -> None:
    sandbox.set_faults(Faults(rules=(FaultRule("503", route="members", first=1, retry_after="400"),)))
    snap = read(sandbox)
    assert len(snap.unreadable) == 1 and "400 s" in snap.unreadable[0].reason


def test_group_scope(sandbox: SandboxServer) -> None:
    target = next(g for g in TENANT.groups if g.licensed and g.member_groups)
    snap = read(sandbox, AuditRequest(scope=Scope.GROUP, group_id=target.id))
    assert snap.scope is Scope.GROUP and snap.scope_id == target.id
    assert [g.id for g in snap.groups] == [target.id]
    former = {TENANT.user_id(u) for u, left in TENANT.removed.items() if any(g == target.index for g, _, _ in left)}
    assert set(snap.users) == {TENANT.user_id(u) for u in target.users} | former
    assert {s.sku_id for s in snap.skus} == {TENANT.skus[k].sku_id for k in target.sku_indices}

    with pytest.raises(BadRequestError, match="the tenant has no group 00000000-0000-0000-0000-000000000000"):
        read(sandbox, AuditRequest(scope=Scope.GROUP, group_id="00000000-0000-0000-0000-000000000000"))


@pytest.mark.parametrize("by", ["part_number", "sku_id"])
def test_sku_scope(sandbox: SandboxServer, by: str) -> None:
    sku = next(s for s in TENANT.skus if any(s.index in g.sku_indices for g in TENANT.groups))
    wanted = sku.part_number.lower() if by == "part_number" else sku.sku_id
    snap = read(sandbox, AuditRequest(scope=Scope.SKU, sku=wanted))
    assert snap.scope_id == sku.sku_id and [s.sku_id for s in snap.skus] == [sku.sku_id]
    assert {g.id for g in snap.groups} == {g.id for g in TENANT.groups if sku.index in g.sku_indices}
    with pytest.raises(BadRequestError, match="no subscribed SKU"):
        read(sandbox, AuditRequest(scope=Scope.SKU, sku="NOT_A_SKU"))


def test_check_permissions_and_send_mail(sandbox: SandboxServer) -> None:
    settings = Settings(graph_base_url=sandbox.base_url, alert_mail_from="alerts@contoso.example")

    async def main() -> list[Any]:
        async with open_graph(settings, "none", retry=RetryPolicy(sleep=NoSleep())) as graph:
            results = list(await check_permissions(graph))
            await graph.send_mail("alerts@contoso.example", {"message": {"subject": "t", "toRecipients": []}})
            return results

    results = asyncio.run(main())
    reads = [r for r in results if r.permission != "Mail.Send"]
    assert all(r.granted for r in reads), results
    assert len(sandbox.sent_mail) >= 1

    sandbox.set_faults(Faults(rules=(FaultRule("403", route="users"),)))
    results = asyncio.run(main_without_mail(sandbox))
    assert {r.permission: r.granted for r in results}["User.Read.All"] is False


async def main_without_mail(sandbox: SandboxServer) -> list[Any]:
    async with open_graph(Settings(graph_base_url=sandbox.base_url), "none") as graph:
        return list(await check_permissions(graph))


def test_the_users_scan_reports_how_many_users_it_has_read(sandbox: SandboxServer) -> None:
    """Issue 30, item 7: the scan's total is unknown until its end; each page reports the count read so far
    (it used to say "users 0/1" until the last page), and the end reports the total."""
    phases: list[tuple[str, int, int]] = []
    read(sandbox, progress=lambda *p: phases.append(p))
    users = [(done, total) for phase, done, total in phases if phase == "users"]
    counting = [done for done, total in users if total == 0]
    assert counting and counting == sorted(counting) and counting[-1] > 0
    assert users[-1] == (counting[-1], counting[-1])
