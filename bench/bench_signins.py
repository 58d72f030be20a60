"""What reading signInActivity in the users scan costs (issue 19): the scan with and without it, side by side.

Run: .venv/bin/python -m bench signins    (BENCH_SIGNINS_USERS, default 100000; the sandbox's RU budget on)

Both contenders read the same sandbox tenant through licensing.graph.read_users (the users scan alone, as a
fan-out chunk does). With signInActivity the page is 500 users instead of 999 (List users), so the scan takes
about twice the requests; each request costs the same resource units. The figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
import os
import time

from licensing.graph import open_graph
from licensing.graph.reader import read_users
from licensing.sandbox import Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.settings import load_settings

USERS = int(os.environ.get("BENCH_SIGNINS_USERS", "100000"))


def _scan(server: SandboxServer, *, sign_ins: bool) -> dict[str, float]:
    # Without AuditLog.Read.All the reader's first page is refused and it scans without signInActivity: subtract
    # that one refused request by measuring the plain scan with the permission missing (what a tenant without the
    # grant pays), and the full scan with every permission.
    perms = None if sign_ins else frozenset({"User.Read.All", "GroupMember.Read.All", "Organization.Read.All"})
    server.set_faults(Faults(ru_budget=0, permissions=perms))
    server.reset_stats()
    settings = load_settings({"GRAPH_BASE_URL": server.base_url})

    async def run() -> object:
        async with open_graph(settings, credential="none") as graph:
            return await read_users(graph)

    started = time.perf_counter()
    snap = asyncio.run(run())
    wall = time.perf_counter() - started
    stats = server.stats
    assert getattr(snap, "sign_ins_read") is sign_ins  # noqa: B009 - the contender read what it claims
    return {"requests": stats["requests"], "ru": stats["ru_charged"], "throttled": stats["throttled"], "s": wall}


def main() -> None:
    tenant = generate_tenant(TenantSpec(seed=3, users=USERS, groups=max(12, USERS // 100)))
    with SandboxServer(tenant) as server:
        plain = _scan(server, sign_ins=False)
        full = _scan(server, sign_ins=True)
    print(f"users: {USERS:,}  (sandbox RU budget on: Graph's for the tenant size)")
    print(f"{'':24}{'requests':>10}{'RU':>10}{'429s':>8}{'seconds':>10}")
    for name, r in (("without signInActivity", plain), ("with signInActivity", full)):
        print(f"{name:24}{r['requests']:>10.0f}{r['ru']:>10.0f}{r['throttled']:>8.0f}{r['s']:>10.2f}")
    print(
        f"ratio with/without: requests {full['requests'] / plain['requests']:.2f}, RU {full['ru'] / plain['ru']:.2f}, "
        f"time {full['s'] / plain['s']:.2f}"
    )


if __name__ == "__main__":
    main()
