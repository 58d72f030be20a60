"""The reader over HTTP under a tight RU budget: once the sandbox signals throttling the pacer keeps 429s rare, and
the snapshot is the same as an unthrottled read's (counts asserted, never times).

The sandbox meters RU per sliding window as Graph's "per 10 seconds" (licensing/sandbox/metering.py); the window is
shortened to 1 s here, and the client's pacer told the same, so the read spans several windows in a few seconds.
The pacer runs on the real clock and sleep because the sandbox's meter does: nothing here is asserted on time.
"""

from __future__ import annotations

import asyncio

import pytest

from licensing.graph import open_graph, read_snapshot
from licensing.graph.pacing import Pacer
from licensing.model import AuditRequest, TenantSnapshot
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.faults import Faults
from licensing.settings import Settings

pytestmark = pytest.mark.timeout(180)

WINDOW_S = 1.0
BUDGET = 1000  # RU per window: the read needs several; the first signal (0.8) leaves room for what is in flight


def _read(server: SandboxServer, pacer: Pacer | None) -> tuple[TenantSnapshot, Pacer]:
    async def main() -> tuple[TenantSnapshot, Pacer]:
        settings = Settings(graph_base_url=server.base_url, graph_max_concurrency=4)
        async with open_graph(settings, "none", pacer=pacer) as graph:
            return await read_snapshot(graph, AuditRequest()), graph.pacer

    return asyncio.run(main())


def _shape(snap: TenantSnapshot) -> tuple[object, ...]:
    groups = {g.id: (frozenset(g.user_ids), g.members_read) for g in snap.groups}
    users = {
        u.id: frozenset((a.sku_id, a.assigned_by_group, a.error) for a in u.assignments) for u in snap.users.values()
    }
    return groups, users


def test_a_tight_budget_is_paced_with_few_429s_and_nothing_lost() -> None:
    tenant = generate_tenant(TenantSpec(seed=5, users=5_000, groups=3_000))
    licensed = {g.id for g in tenant.groups if g.licensed}
    with SandboxServer(tenant) as server:
        server.set_faults(Faults(ru_budget=BUDGET, ru_window_s=WINDOW_S))
        paced, pacer = _read(server, Pacer(window_s=WINDOW_S))
        charged = server.stats["ru_charged"]
        server.set_faults(Faults())
        free, _ = _read(server, None)
    assert paced.unreadable == () and {g.id for g in paced.groups} == licensed
    assert _shape(paced) == _shape(free)  # every group's members and every user's states, as without a budget
    assert charged > 3 * BUDGET, "the read must span several windows to say anything about pacing"
    assert pacer.engaged
    # Counted as Graph meters them, each $batch sub-request on its own: under 2 % answered 429.
    assert pacer.throttled < 0.02 * pacer.metered, (pacer.throttled, pacer.metered)
