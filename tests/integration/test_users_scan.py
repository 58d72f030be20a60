"""The split users scan against the sandbox over HTTP: the same users as the single scan, a lost range caught by the
count, signInActivity refused in every chain, and a failed chain read again as one scan."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from licensing.graph import RetryPolicy, open_graph, read_snapshot
from licensing.graph.reader import read_users
from licensing.graph.users_scan import SPLIT_FROM, UPN_PREFIXES, ScanResult, UsersScan, is_users_key, upn_filter
from licensing.model import AuditRequest
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.faults import FaultRule, Faults
from licensing.sandbox.tenant import SandboxTenant
from licensing.settings import Settings

pytestmark = pytest.mark.timeout(180)

# A tenant just over the split threshold; its UPNs start with letters of both cases, digits and the documented
# symbols (the generator's ODD_UPN_STARTS), guests with #EXT# UPNs among them.
BIG = generate_tenant(TenantSpec(seed=7, users=SPLIT_FROM + 300, groups=16))


async def _no_sleep(_seconds: float) -> None:
    return None


def scan(server: SandboxServer, *, split_from: int = 0) -> tuple[ScanResult, dict[str, dict[str, Any]], int]:
    """One UsersScan alone: its result, the users it handed over by id, and how many it handed over in all."""

    async def main() -> tuple[ScanResult, dict[str, dict[str, Any]], int]:
        users: dict[str, dict[str, Any]] = {}
        handed = 0

        def take(items: list[dict[str, Any]]) -> None:
            nonlocal handed
            handed += len(items)
            users.update((i["id"], i) for i in items)

        def restart() -> None:
            nonlocal handed
            users.clear()
            handed = 0

        settings = Settings(graph_base_url=server.base_url)
        async with open_graph(settings, "none", retry=RetryPolicy(sleep=_no_sleep)) as graph:
            users_scan = UsersScan(graph, take, on_restart=restart, split_from=split_from)
            await users_scan.count()
            results = await graph.read_collections(
                users_scan.requests(), on_items=lambda k, page: users_scan.items(page) if is_users_key(k) else None
            )
            return await users_scan.finish(results), users, handed

    return asyncio.run(main())


def user_ids(tenant: SandboxTenant) -> set[str]:
    return {tenant.user_id(u) for u in tenant.iter_users()}


def test_upn_filter_doubles_the_quote_and_every_documented_first_character_has_a_chain() -> None:
    assert upn_filter("a") == "startswith(userPrincipalName,'a')"
    assert upn_filter("'") == "startswith(userPrincipalName,'''')"
    # "Only the following characters are allowed A - Z, a - z, 0 - 9, ' . - _ ! # ^ ~" (user resource); letters once.
    assert set(UPN_PREFIXES) == set("abcdefghijklmnopqrstuvwxyz0123456789'.-_!#^~")
    assert len(UPN_PREFIXES) == len(set(UPN_PREFIXES))


@pytest.mark.parametrize(
    "spec",
    [
        TenantSpec(seed=3, users=400, groups=12),
        TenantSpec(seed=11, users=1_500, groups=20, shape="realistic", big_groups=1),
        TenantSpec(seed=5, users=900, groups=12, entra_premium=False),
    ],
    ids=["flat", "realistic", "no-premium"],
)
def test_the_split_read_returns_exactly_what_the_single_scan_returns(spec: TenantSpec) -> None:
    tenant = generate_tenant(spec)
    with SandboxServer(tenant) as server:
        split, split_users, split_handed = scan(server, split_from=0)
        single, single_users, _ = scan(server, split_from=10**9)
    assert split.error is None and split.fallbacks == () and split.chains == len(UPN_PREFIXES)
    assert single.chains == 1 and single.error is None
    assert split.counted == split.users == tenant.user_count
    assert split_handed == tenant.user_count, "every user handed over once: the chains are disjoint"
    assert set(split_users) == set(single_users) == user_ids(tenant)
    assert split_users == single_users, "the same records, signInActivity included"
    assert split.sign_ins_read is single.sign_ins_read is spec.entra_premium


def test_a_range_lost_mid_read_trips_the_count_and_the_single_scan_reads_everyone(caplog: Any) -> None:
    """A chain answered empty with no next link (a broken proxy): the split read comes back short of /users/$count,
    so the users are read again as one chain, and nobody is missing."""
    with SandboxServer(BIG) as server:
        server.set_faults(Faults(rules=(FaultRule("empty_answer", route="users", first=1),)))
        with caplog.at_level(logging.WARNING, logger="licensing.graph.users_scan"):
            result, users, handed = scan(server, split_from=SPLIT_FROM)
        assert server.stats["faults"] == {"empty_answer": 1}
    assert result.chains == 1 and result.error is None
    [why] = result.fallbacks
    assert f"/users/$count says {BIG.user_count:,}" in why and f"read {BIG.user_count:,} users" not in why
    assert "reading the users again as one chain" in caplog.text
    assert set(users) == user_ids(BIG) and handed == BIG.user_count
    assert result.users == result.counted == BIG.user_count


def test_sign_in_activity_refused_reads_every_chain_again_without_it() -> None:
    with SandboxServer(BIG) as server:
        server.set_faults(Faults(permissions=frozenset({"User.Read.All", "GroupMember.Read.All"})))
        result, users, _ = scan(server, split_from=SPLIT_FROM)
    assert result.error is None and not result.sign_ins_read
    assert result.sign_ins_note is not None and "AuditLog.Read.All" in result.sign_ins_note
    assert result.chains == len(UPN_PREFIXES) and result.fallbacks == ()
    assert set(users) == user_ids(BIG)
    assert not any("signInActivity" in u for u in users.values())


def test_a_failed_chain_is_read_again_as_one_scan() -> None:
    # after=1: the first "users" request is GET /users/$count; the 404 falls on the first chain's first page.
    with SandboxServer(BIG) as server:
        server.set_faults(Faults(rules=(FaultRule("404", route="users", first=1, after=1),)))
        result, users, _ = scan(server, split_from=SPLIT_FROM)
    assert result.error is None and result.sign_ins_read and result.chains == 1
    [why] = result.fallbacks
    assert why.startswith("a UPN chain failed")
    assert set(users) == user_ids(BIG)


def test_the_reader_splits_a_big_tenant_and_the_snapshot_is_whole() -> None:
    """read_users and read_snapshot over the split scan: every user, sign-ins read, one count request."""
    with SandboxServer(BIG) as server:

        async def main() -> tuple[Any, Any]:
            async with open_graph(Settings(graph_base_url=server.base_url), "none") as graph:
                part = await read_users(graph)
                snap = await read_snapshot(graph, AuditRequest())
                return part, snap

        part, snap = asyncio.run(main())
        by_route = server.stats["by_route"]
    assert part.unreadable == () and part.sign_ins_read
    assert set(part.users) == user_ids(BIG)
    assert snap.unreadable == () and snap.sign_ins_read
    # Two reads: each one count and one chain per prefix (a few more pages for the letters that hold many users).
    assert by_route["users"] >= 2 * (1 + len(UPN_PREFIXES))


def test_a_tenant_audit_over_the_split_scan_finds_exactly_the_ground_truth() -> None:
    """The whole audit (run_audit, as the CLI runs it) on a tenant big enough to split: the findings are the
    generator's ground truth, no more and no fewer (inactive members included: signInActivity in every chain)."""
    from licensing.model import AuditRequest as Request
    from licensing.model import RunStatus, Scope, Trigger
    from licensing.pipeline.run import run_audit
    from licensing.pipeline.runtime import Runtime
    from licensing.settings import load_settings

    def keys(findings: Any) -> set[tuple[Any, ...]]:
        return {
            (str(f.kind), str(f.severity), f.sku_id, f.group_id, f.user_id, f.member_group_id, f.error)
            for f in findings
        }

    with SandboxServer(BIG) as server:
        config = load_settings({"GRAPH_BASE_URL": server.base_url})
        request = Request(scope=Scope.TENANT, trigger=Trigger.CLI)
        report = asyncio.run(run_audit(request, Runtime(config, store=None, credential="none"), alerts=False)).report
        filtered = server.stats["by_route"]["users"]
    assert report.run.status is RunStatus.SUCCEEDED, report.run.errors
    assert filtered > len(UPN_PREFIXES), "the users were read as UPN chains"
    expected, found = keys(BIG.ground_truth), keys(report.findings)
    assert found - expected == set() and expected - found == set()
    assert any(k[0] == "inactive_user_licensed" for k in found)


def test_the_reader_forgets_a_failed_split_read_and_the_second_read_is_whole(caplog: Any) -> None:
    """A chain answered empty: the reader reads the users again as one chain, keeping nothing of the first attempt
    (Members.forget_scanned), and every member's user comes back from the second read: nothing unreadable."""
    with SandboxServer(BIG) as server:
        server.set_faults(Faults(rules=(FaultRule("empty_answer", route="users", first=1, after=1),)))

        async def main() -> Any:
            async with open_graph(Settings(graph_base_url=server.base_url), "none") as graph:
                return await read_snapshot(graph, AuditRequest())

        with caplog.at_level(logging.WARNING, logger="licensing.graph.users_scan"):
            snap = asyncio.run(main())
        assert server.stats["faults"] == {"empty_answer": 1}
    assert "reading the users again as one chain" in caplog.text
    assert snap.unreadable == () and snap.sign_ins_read
    members = {uid for g in snap.groups for uid in g.user_ids}
    assert members and members <= set(snap.users)
    assert all(snap.users[uid].account_enabled is not None for uid in members), "records from the scan, not stand-ins"
