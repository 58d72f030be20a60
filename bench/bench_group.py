"""A group-scoped audit read and a plan of a ~50-member group, against the tenant audit of the same sandbox.

Run: .venv/bin/python -m bench group      (or .venv/bin/python -m bench.bench_group)
The realistic 100k sandbox of bench/bench_reader.py (same TenantSpec, latency model and RU budget, served in its own
process by that module's ``serve`` child): BENCH_READER_USERS, BENCH_READER_GROUPS, BENCH_READER_LATENCY_MS,
BENCH_READER_PER_OBJECT_US, BENCH_READER_RU_BUDGET apply. BENCH_GROUP_SIZE (50): the licensed group picked is the
one whose direct user count is closest to it. BENCH_GROUP_TENANT=0 skips the tenant audit's read (the baseline,
about a minute): the ratios are then against the latency floor alone.

Each contender runs in a fresh interpreter (its own CPU time and peak RSS):
* group   licensing.graph.read_snapshot with scope group (licensing/graph/group_scope.py)
* plan    licensing.plan.plan_group for that group and SPE_E3
* reader  the tenant audit's read, bench_reader's child, for the baseline request count and wall time
The tenant audit's latency floor is its longest chain: the licensed groups list, then the largest group's members
(the users scan is split into UPN-prefix chains; without the tenant read, one scan chain of 500-user pages stands in).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

from bench.bench_reader import (
    CONCURRENCY,
    GROUPS,
    LATENCY_MS,
    PER_OBJECT_US,
    ROOT,
    RU_BUDGET,
    USERS,
    Scenario,
    _child,
    _peak_rss_mb,
    _start_sandbox,
)

SIZE = int(os.environ.get("BENCH_GROUP_SIZE", "50"))
WITH_TENANT = os.environ.get("BENCH_GROUP_TENANT", "1") == "1"
PLAN_SKU = "SPE_E3"


def pick_group() -> tuple[str, str, int, int]:
    """The licensed group of bench_reader's tenant whose direct user count is closest to SIZE, preferring one with a
    former member in error (the case the users scan existed for): (id, name, users, users in its error list)."""
    from licensing.sandbox import TenantSpec, generate_tenant

    tenant = generate_tenant(TenantSpec(seed=7, users=USERS, groups=GROUPS, shape="realistic"))
    left: dict[int, int] = {}
    for _u, states in tenant.removed.items():
        for g, _s, _e in states:
            left[g] = left.get(g, 0) + 1
    errors: dict[int, int] = {}
    for _u, g, _s in tenant.errors:
        errors[g] = errors.get(g, 0) + 1
    licensed = [g for g in tenant.groups if g.licensed and g.users]
    best = min(licensed, key=lambda g: (abs(len(g.users) - SIZE), -left.get(g.index, 0), g.index))
    return best.id, best.display_name, len(best.users), errors.get(best.index, 0) + left.get(best.index, 0)


def child_group(url: str, group_id: str) -> dict[str, Any]:
    import asyncio

    from licensing.graph import open_graph, read_snapshot
    from licensing.model import AuditRequest, Scope
    from licensing.settings import Settings

    async def run() -> dict[str, Any]:
        settings = Settings(graph_base_url=url, graph_max_concurrency=CONCURRENCY)
        async with open_graph(settings, credential="none") as graph:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            snap = await read_snapshot(graph, AuditRequest(scope=Scope.GROUP, group_id=group_id))
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "requests": snap.stats.requests,
            "ru": snap.stats.resource_units,
            "throttled": snap.stats.throttled,
            "users": len(snap.users),
            "unreadable": len(snap.unreadable),
            "sign_ins_read": snap.sign_ins_read,
        }

    out = asyncio.run(run())
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def child_plan(url: str, group_id: str) -> dict[str, Any]:
    import asyncio

    from licensing.graph import open_graph
    from licensing.plan import plan_group
    from licensing.settings import Settings

    async def run() -> dict[str, Any]:
        settings = Settings(graph_base_url=url, graph_max_concurrency=CONCURRENCY)
        async with open_graph(settings, credential="none") as graph:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            plan = await plan_group(graph, group_id, [PLAN_SKU])
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            stats = graph.stats
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "requests": stats.requests,
            "ru": stats.resource_units,
            "throttled": stats.throttled,
            "verdict": plan.verdict.value,
            "users": plan.group.users,
        }

    out = asyncio.run(run())
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _own_child(kind: str, url: str, group_id: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_group", "--child", kind, url, group_id],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    sc = Scenario("realistic", LATENCY_MS, PER_OBJECT_US)
    started = time.perf_counter()
    group_id, name, members, in_error = pick_group()
    sandbox, url = _start_sandbox(sc)
    try:
        print(
            f"--- realistic: sandbox {USERS:,} users, {GROUPS:,} groups, {sc.latency_ms:g} ms per response "
            f"+ {sc.per_object_us:g} us per object, RU budget {RU_BUDGET}, separate process "
            f"({time.perf_counter() - started:.1f} s to generate)"
        )
        print(f"group {name} ({group_id}): {members} direct users, {in_error} in its error list")
        group = _own_child("group", url, group_id)
        plan = _own_child("plan", url, group_id)
        tenant = _child("reader", url) if WITH_TENANT else None
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)

    # Each read's own floor: its sequential round trips at the latency model. The group read: subscribedSkus then
    # subscriptions (organization and the group beside them), the member count and error list, the members, the users
    # (one $batch). The plan: the licensed groups list (pages of 999 in a chain; the SKUs and the group beside it),
    # the user count, the members, the users.
    group_floor = 2 * sc.page_s(0) + sc.page_s(in_error) + sc.page_s(members) + sc.page_s(members + in_error)
    licensed = int(GROUPS * 2 / 3)  # bench_reader's tenant: a third of the generic groups assign nothing
    plan_floor = sc.chain_s(licensed) + sc.page_s(0) + 2 * sc.page_s(members)
    # The tenant audit's longest chain (bench_reader's floor): the licensed groups list, then the largest group's
    # members; the users scan is split into UPN-prefix chains (users_scan.py). Without the tenant read (its size
    # unknown), the single users scan chain stands in, as before the split.
    if tenant is not None:
        floor = sc.chain_s(licensed) + sc.chain_s(tenant["largest_group"])
        floor_how = f"groups list, then the largest group's members ({tenant['largest_group']:,})"
    else:
        from licensing.graph.users_scan import SIGN_IN_PAGE

        scan_pages = max(1, math.ceil(USERS / SIGN_IN_PAGE))
        floor = scan_pages * sc.page_s(SIGN_IN_PAGE)
        floor_how = f"one users scan chain, {scan_pages} pages of {SIGN_IN_PAGE}"
    print(f"{'':34}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>13}{'requests':>10}{'RU':>10}{'429s':>7}")
    rows = [("group audit read", group), (f"plan ({PLAN_SKU})", plan)]
    if tenant is not None:
        rows.append(("tenant audit read (baseline)", tenant))
    for label, r in rows:
        print(
            f"{label:34}{r['wall_s']:10.2f}{r['cpu_s']:10.2f}{r['peak_rss_mb']:13.0f}{r['requests']:10,}"
            f"{r['ru']:10,.0f}{r['throttled']:7}"
        )
    print(f"{'group read floor: 5 round trips':34}{group_floor:10.2f}")
    print(f"{'plan floor: groups list + 3 trips':34}{plan_floor:10.2f}   ~{licensed:,} licensed groups, pages of 999")
    print(f"{'tenant floor: longest chain':34}{floor:10.2f}{'':>33}   {floor_how}")
    print(
        f"group read: {group['users']} users kept, unreadable parts {group['unreadable']}, "
        f"sign-ins read {group['sign_ins_read']}; plan verdict {plan['verdict']} ({plan['users']} users)"
    )
    print("ratios (target: <= 25 requests and <= 3 s each):")
    for (label, r), own in zip(rows[:2], (group_floor, plan_floor), strict=True):
        line = (
            f"  {label:22} requests {r['requests']:4}  wall {r['wall_s']:5.2f} s = {r['wall_s'] / own:.2f}x its floor"
        )
        if tenant is not None:
            line += (
                f"  = {r['requests'] / tenant['requests']:.3f}x the tenant read's requests, "
                f"{r['wall_s'] / tenant['wall_s']:.3f}x its wall"
            )
        line += f", {r['wall_s'] / floor:.3f}x the tenant floor"
        print(line, flush=True)


def _child_main(argv: list[str]) -> None:
    kind, url, group_id = argv[0], argv[1], argv[2]
    if kind == "group":
        result = child_group(url, group_id)
    elif kind == "plan":
        result = child_plan(url, group_id)
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        main()
