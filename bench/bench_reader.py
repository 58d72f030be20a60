"""The Graph reader against the sandbox in a separate process, next to the plain msgraph-sdk way and the latency floor.

Run: .venv/bin/python -m bench reader      (or .venv/bin/python -m bench.bench_reader)
Scenarios (BENCH_READER_SHAPES, default "realistic,flat"):
* realistic  a few big licensed groups hold most users (TenantSpec(shape="realistic")), Graph-like latency:
             BENCH_READER_LATENCY_MS (100) per response + BENCH_READER_PER_OBJECT_US (400) per object returned
* flat       the wide and shallow tenant (largest licensed group ~60 members), 30 ms per response, nothing per object
Sizes: BENCH_READER_USERS (100000), BENCH_READER_GROUPS (3000 groups, of which ~2/3 licensed),
BENCH_READER_SDK_GROUPS / BENCH_READER_SDK_OBJECTS (the SDK baseline's slice, then extrapolated: 40 / 3000).
BENCH_READER_WARM (1): the sandbox renders every object once (an unmetered read) before the timed reads, so that it
answers at its latency model and not at the speed of its own CPU, shared with the reader; 0 measures it cold.

Each contender runs in its own fresh interpreter so that CPU time and peak RSS are its own:
* reader      licensing.graph.read_snapshot (raw JSON, $batch, concurrency GRAPH_MAX_CONCURRENCY=8)
* sdk         the straightforward msgraph-sdk code: GraphServiceClient, typed models, PageIterator,
              one group after the other; on a slice of the licensed groups, extrapolated per member object
* user-scan   the user-centric alternative: one /users?$select=…,licenseAssignmentStates chain (for the strategy choice)
Lower bound (b), issue 31: max(the RU the read needs at Graph's rate, the longest chain of sequential pages that no
documented form splits: the groups list, then the largest group's members), each page at its simulated latency;
printed with the chain that sets it. The users scan is split into UPN-prefix chains on a big tenant
(licensing/graph/users_scan.py); its longest chain is shown beside it (also shown: requests ÷ concurrency ×
latency, and the sandbox's own CPU time).
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
USERS = int(os.environ.get("BENCH_READER_USERS", "100000"))
GROUPS = int(os.environ.get("BENCH_READER_GROUPS", "3000"))
SHAPES = [s.strip() for s in os.environ.get("BENCH_READER_SHAPES", "realistic,flat").split(",") if s.strip()]
# Graph-like latency for the realistic scenario: see docs/benchmarks.md ("Latency model") for the figures.
LATENCY_MS = float(os.environ.get("BENCH_READER_LATENCY_MS", "100"))
PER_OBJECT_US = float(os.environ.get("BENCH_READER_PER_OBJECT_US", "400"))
FLAT_LATENCY_MS = float(os.environ.get("BENCH_READER_FLAT_LATENCY_MS", "30"))
SDK_GROUPS = int(os.environ.get("BENCH_READER_SDK_GROUPS", "40"))
SDK_OBJECTS = int(os.environ.get("BENCH_READER_SDK_OBJECTS", "3000"))
# The users scan is part of the reader now; the stand-alone scan is still measured on request.
SKIP_SCAN = os.environ.get("BENCH_READER_SKIP_SCAN", "1") == "1"
# Graph's RU budget per app and tenant (https://learn.microsoft.com/graph/throttling-limits): "auto" picks the
# tenant-size budget (8,000 RU per 10 s above 500 users); "off" measures without throttling.
RU_BUDGET = os.environ.get("BENCH_READER_RU_BUDGET", "auto")
RU_WINDOW_S = 10.0
# The sandbox renders every object once before the timed reads (BENCH_READER_WARM=0: cold, as before 2026-12-07).
WARM = os.environ.get("BENCH_READER_WARM", "1") == "1"
CONCURRENCY = 8
PAGE = 999


@dataclass(frozen=True, slots=True)
class Scenario:
    shape: str
    latency_ms: float
    per_object_us: float

    def page_s(self, objects: int) -> float:
        """The simulated latency of one response holding ``objects`` objects."""
        return (self.latency_ms + self.per_object_us * objects / 1000.0) / 1000.0

    def chain_s(self, total: int, page: int = PAGE) -> float:
        """Latency of reading ``total`` objects as one sequential chain of full pages (at least one page)."""
        full, rest = divmod(total, page)
        return full * self.page_s(page) + (self.page_s(rest) if rest or not full else 0.0)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------- children (one per contender)


def child_reader(url: str) -> dict[str, Any]:
    import asyncio

    from licensing.graph import open_graph, read_snapshot
    from licensing.graph.reader import SIGN_IN_PAGE
    from licensing.model import AuditRequest
    from licensing.settings import Settings

    async def run() -> dict[str, Any]:
        settings = Settings(graph_base_url=url, graph_max_concurrency=CONCURRENCY)
        async with open_graph(settings, credential="none") as graph:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            snap = await read_snapshot(graph, AuditRequest())
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        sizes = [g.member_count for g in snap.groups]
        return {
            "wall_s": wall,
            "cpu_s": cpu,
            "requests": snap.stats.requests,
            "ru": snap.stats.resource_units,
            "throttled": snap.stats.throttled,
            "metered": graph.pacer.metered,  # requests as Graph meters them: each $batch sub-request on its own
            "paced": graph.pacer.engaged,
            "learned_limit": graph.pacer.limit,  # RU per 10 s the pacer learned (None: never signalled)
            "cooled": graph.pacer.cooled,
            "raised": graph.pacer.raised,
            "groups": len(snap.groups),
            "users": len(snap.users),
            "users_scanned": USERS,  # the scan reads every user of the tenant
            # With signInActivity in the scan, List users serves at most 500 a page (graph-fidelity.md).
            "scan_page": SIGN_IN_PAGE if snap.sign_ins_read else PAGE,
            "member_objects": sum(sizes),
            "member_pages": sum(max(1, math.ceil(n / PAGE)) for n in sizes),
            "largest_group": max(sizes, default=0),
            "unreadable": len(snap.unreadable),
        }

    out = asyncio.run(run())
    out["peak_rss_mb"] = _peak_rss_mb()
    out.update(_prefix_sizes(url, out["users_scanned"]))
    return out


def _prefix_sizes(url: str, users: int) -> dict[str, Any]:
    """How many users each UPN-prefix chain of the split users scan holds (asked after the timed read, so it counts
    neither in the reader's figures nor its wall time), and whether the reader split at all (its own rule)."""
    import httpx

    from licensing.graph.users_scan import SPLIT_FROM, SPLIT_PAGE, UPN_PREFIXES, upn_filter

    sizes: dict[str, int] = {}
    if users >= SPLIT_FROM:
        with httpx.Client(base_url=url, timeout=60) as client:
            for prefix in UPN_PREFIXES:
                r = client.get(
                    "/users/$count", params={"$filter": upn_filter(prefix)}, headers={"ConsistencyLevel": "eventual"}
                )
                r.raise_for_status()
                sizes[prefix] = int(r.text)
    return {"split": bool(sizes), "prefix_users": sizes, "split_page": SPLIT_PAGE}


def child_sdk(url: str, limit: int, cap: int) -> dict[str, Any]:
    """The straightforward SDK way: typed models and PageIterator, group after group.

    Reads at most ``limit`` groups and stops at the first page boundary past ``cap`` member objects,
    so that a big group does not make the baseline run for minutes; the result is extrapolated."""
    import asyncio

    from kiota_abstractions.authentication import AnonymousAuthenticationProvider
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from msgraph import GraphServiceClient
    from msgraph.generated.groups.groups_request_builder import GroupsRequestBuilder
    from msgraph.generated.groups.item.members.members_request_builder import MembersRequestBuilder
    from msgraph.graph_request_adapter import GraphRequestAdapter
    from msgraph_core.tasks.page_iterator import PageIterator

    from licensing.graph.reader import USER_FIELDS

    async def run() -> dict[str, Any]:
        adapter = GraphRequestAdapter(AnonymousAuthenticationProvider())
        adapter.base_url = url
        client = GraphServiceClient(request_adapter=adapter)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        config = RequestConfiguration(
            query_parameters=GroupsRequestBuilder.GroupsRequestBuilderGetQueryParameters(
                filter="assignedLicenses/$count ne 0",
                count=True,
                select=["id", "displayName", "assignedLicenses", "licenseProcessingState"],
                top=PAGE,
            )
        )
        config.headers.add("ConsistencyLevel", "eventual")
        groups: list[Any] = []
        first = await client.groups.get(request_configuration=config)
        iterator = PageIterator(first, adapter)
        # Next pages of a $count query need the header again (PageIterator.set_headers(**dict) is broken).
        iterator.headers.add("ConsistencyLevel", "eventual")
        await iterator.iterate(lambda g: groups.append(g) or True)
        groups_wall, groups_cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        objects = 0
        requests = 0
        read = 0
        for group in groups[:limit]:
            if objects >= cap:
                break
            read += 1
            members: list[Any] = []
            page = await client.groups.by_group_id(group.id).members.get(
                request_configuration=RequestConfiguration(
                    query_parameters=MembersRequestBuilder.MembersRequestBuilderGetQueryParameters(
                        select=USER_FIELDS.split(","), top=PAGE
                    )
                )
            )
            requests += 1 + (1 if page and page.odata_next_link else 0)
            it = PageIterator(page, adapter)
            start = objects

            def take(m: Any, members: list[Any] = members, start: int = start) -> bool:
                members.append(m)
                # Stop only at the end of a full page, so every object parsed is counted.
                return not (len(members) % PAGE == 0 and start + len(members) >= cap)

            await it.iterate(take)
            objects += len(members)
        return {
            "wall_s": time.perf_counter() - wall0,
            "cpu_s": time.process_time() - cpu0,
            "groups_total": len(groups),
            "groups_read": read,
            "member_objects": objects,
            "groups_phase_wall_s": groups_wall,
            "groups_phase_cpu_s": groups_cpu,
        }

    out = asyncio.run(run())
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def child_user_scan(url: str) -> dict[str, Any]:
    import asyncio

    from licensing.graph import open_graph
    from licensing.graph.client import query
    from licensing.graph.reader import USER_FIELDS
    from licensing.settings import Settings

    async def run() -> dict[str, Any]:
        async with open_graph(Settings(graph_base_url=url), credential="none") as graph:
            wall0, cpu0 = time.perf_counter(), time.process_time()
            path = "/users?" + query({"$select": USER_FIELDS, "$top": PAGE})
            users = await graph.get_collection(path, route="/users")
            return {
                "wall_s": time.perf_counter() - wall0,
                "cpu_s": time.process_time() - cpu0,
                "requests": graph.stats.requests,
                "ru": graph.stats.resource_units,
                "users": len(users),
            }

    return asyncio.run(run())


# ---------------------------------------------------------------- the parent


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child(kind: str, url: str, *extra: str, server_pid: int | None = None) -> dict[str, Any]:
    server_cpu0 = _cpu_of(server_pid) if server_pid else 0.0
    out = subprocess.run(
        [sys.executable, "-m", "bench.bench_reader", "--child", kind, url, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if server_pid:
        result["server_cpu_s"] = _cpu_of(server_pid) - server_cpu0
    return result


def child_serve(shape: str, latency_ms: float, per_object_us: float) -> None:
    """The sandbox for one scenario: prints its URL, then serves until terminated."""
    import signal
    import threading

    from licensing.sandbox import Faults, SandboxServer, TenantSpec, generate_tenant

    tenant = generate_tenant(TenantSpec(seed=7, users=USERS, groups=GROUPS, shape=shape))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    budget = None if RU_BUDGET == "off" else 0 if RU_BUDGET == "auto" else int(RU_BUDGET)
    faults = Faults(per_object_us=per_object_us, ru_budget=budget, ru_window_s=RU_WINDOW_S)
    with SandboxServer(tenant) as server:
        if WARM:
            _warm(server.base_url)
        server.latency_ms = latency_ms
        server.set_faults(faults)  # the latency model and the budget from here on; the rendered objects are kept
        server.reset_stats()
        print(server.base_url, flush=True)
        stop.wait()


def _warm(url: str) -> None:
    """One unmetered read at no latency, so that the timed read meets objects already rendered. Cold, the sandbox
    spent ~5 s of CPU on the first 160 member pages (it shares the 2 cores with the reader): answers the latency
    model puts at 0.5 s came back after 5 to 6 s, and the first throttling signal with them (docs/benchmarks.md)."""
    import asyncio

    from licensing.graph import open_graph, read_snapshot
    from licensing.model import AuditRequest
    from licensing.settings import Settings

    async def run() -> None:
        async with open_graph(Settings(graph_base_url=url, graph_max_concurrency=CONCURRENCY), credential="none") as g:
            await read_snapshot(g, AuditRequest())

    asyncio.run(run())


def _start_sandbox(sc: Scenario) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.bench_reader",
            "--child",
            "serve",
            sc.shape,
            str(sc.latency_ms),
            str(sc.per_object_us),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.terminate()
        raise RuntimeError(f"the sandbox did not start (first line {url!r})")
    return proc, url


def run_scenario(sc: Scenario) -> None:
    started = time.perf_counter()
    sandbox, url = _start_sandbox(sc)
    try:
        print(
            f"--- {sc.shape}: sandbox {USERS:,} users, {GROUPS:,} groups, {sc.latency_ms:g} ms per response "
            f"+ {sc.per_object_us:g} us per object, separate process "
            f"({time.perf_counter() - started:.1f} s to generate)"
        )
        reader = _child("reader", url, server_pid=sandbox.pid)
        sdk = _child("sdk", url, str(SDK_GROUPS), str(SDK_OBJECTS))
        scan = None if SKIP_SCAN else _child("user-scan", url)
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=30)

    # (b) the floor: max(the RU the read needs at Graph's rate, the longest chain of sequential pages that no documented
    # form splits). That chain is the licensed-groups list, then the largest group's member pages (members are
    # read as one @odata.nextLink chain per group). The users scan is split into UPN-prefix chains on a big tenant
    # (licensing/graph/users_scan.py): its longest chain is shown beside it; unsplit (a small tenant) it is one chain.
    groups, largest = reader["groups"], reader["largest_group"]
    group_pages = max(1, math.ceil(groups / PAGE))
    member_chain = max(1, math.ceil(largest / PAGE))
    floor_groups = sc.chain_s(groups)
    groups_chain = floor_groups + sc.chain_s(largest)
    scan_page = reader["scan_page"]
    sizes: dict[str, int] = reader["prefix_users"]
    if reader["split"]:
        scan_page = min(scan_page, reader["split_page"])  # the split chains' pages are smaller (users_scan.SPLIT_PAGE)
        widest = max(sizes, key=lambda p: sizes[p])
        users_chain = sc.chain_s(sizes[widest], scan_page)
        users_pages = sum(max(1, math.ceil(n / scan_page)) for n in sizes.values())
        users_longest = max(1, math.ceil(sizes[widest] / scan_page))
        users_name = (
            f"the users scan: {len(sizes)} UPN-prefix chains, {users_pages} pages of {scan_page}; "
            f"the longest startswith '{widest}' ({sizes[widest]:,} users, {users_longest} pages)"
        )
        unsplit_chain, unsplit_pages = groups_chain, group_pages + member_chain
        unsplit_name = f"the groups list ({group_pages} pages), then the largest group's members ({largest:,})"
    else:
        users_pages = users_longest = max(1, math.ceil(reader["users_scanned"] / scan_page))
        users_chain = sc.chain_s(reader["users_scanned"], scan_page)
        users_name = f"the users scan: one chain of {users_pages} pages of {scan_page} (not split below the threshold)"
        unsplit_chain = max(groups_chain, users_chain)
        if users_chain >= groups_chain:
            unsplit_pages, unsplit_name = users_pages, users_name
        else:
            unsplit_pages = group_pages + member_chain
            unsplit_name = f"the groups list ({group_pages} pages), then the largest group's members ({largest:,})"
    floor_chain = max(unsplit_chain, users_chain)
    # Throttling is a floor too: the RU the read needs at the budget's rate (8,000 RU per 10 s for > 500 users).
    tenant_budget = 8000 if USERS > 500 else 5000 if USERS >= 50 else 3500
    ru_rate = (tenant_budget if RU_BUDGET in ("auto", "off") else int(RU_BUDGET)) / RU_WINDOW_S
    floor_ru = reader["ru"] / ru_rate if RU_BUDGET != "off" else 0.0
    floor_issue = max(unsplit_chain, floor_ru)  # issue 31: max(RU / rate, the longest chain nothing documented splits)
    floor_set_by = unsplit_name if unsplit_chain >= floor_ru else f"the RU the read needs ({reader['ru']:,.0f} RU)"
    # With $batch, first pages go 20 to a request; CONCURRENCY requests at a time, each at least the base latency.
    # The users count (GET /users/$count) is one request before the chains.
    paged = reader["member_pages"] + (users_pages if reader["split"] else 0)
    min_requests = 3 + group_pages + max(math.ceil(paged / 20), member_chain) + (1 if reader["split"] else users_pages)
    floor_conc = floor_groups + math.ceil((min_requests - 3 - group_pages) / CONCURRENCY) * sc.page_s(0)
    floor = max(floor_chain, floor_conc, floor_ru)
    # The sandbox is one Python process: producing the JSON of every member costs it CPU time that no
    # client can overlap away. That time (measured on the sandbox process) is a floor too.
    floor_server = max(floor, reader["server_cpu_s"])

    # (a) the SDK baseline, extrapolated from its slice to every member object. It reads one page after the
    # other, so its wall time is its CPU time plus every page's latency.
    per_object_cpu = (sdk["cpu_s"] - sdk["groups_phase_cpu_s"]) / max(1, sdk["member_objects"])
    sdk_cpu = sdk["groups_phase_cpu_s"] + per_object_cpu * reader["member_objects"]
    sdk_wall = (
        sdk["groups_phase_wall_s"]
        + reader["member_pages"] * sc.page_s(0)
        + reader["member_objects"] * (sc.per_object_us / 1e6 + per_object_cpu)
    )

    print(
        f"licensed groups {groups:,}, users read {reader['users']:,}, member objects "
        f"{reader['member_objects']:,}, member pages {reader['member_pages']:,}, largest group {largest:,}"
    )
    print(f"{'':34}{'wall s':>10}{'CPU s':>10}{'peak RSS MB':>13}{'requests':>10}{'RU':>10}")
    print(
        f"{'reader (concurrency 8, $batch)':34}{reader['wall_s']:10.2f}{reader['cpu_s']:10.2f}"
        f"{reader['peak_rss_mb']:13.0f}{reader['requests']:10,}{reader['ru']:10,.0f}"
    )
    print(
        f"{'(a) msgraph-sdk typed + PageIterator':34}{sdk_wall:10.1f}{sdk_cpu:10.1f}{sdk['peak_rss_mb']:13.0f}"
        f"{'':>10}{'':>10}   extrapolated from {sdk['groups_read']} groups / {sdk['member_objects']:,} objects "
        f"({per_object_cpu * 1000:.2f} ms CPU per object)"
    )
    print(
        f"{'(b) floor: unsplittable chain':34}{unsplit_chain:10.2f}{'':>23}{unsplit_pages:10}   pages in the chain: "
        f"{unsplit_name}"
    )
    print(f"{'    users scan, longest chain':34}{users_chain:10.2f}{'':>23}{users_longest:10}   {users_name}")
    print(
        f"{'    floor: RU needed / RU rate':34}{floor_ru:10.2f}{'':>23}{reader['ru']:10,.0f}"
        f"   RU at {ru_rate:,.0f} RU/s (budget {RU_BUDGET}); 429s answered: {reader['throttled']}"
    )
    print(f"{'    floor = max(chain, RU)':34}{floor_issue:10.2f}   set by {floor_set_by}")
    share, per_http = reader["throttled"] / max(1, reader["metered"]), reader["throttled"] / max(1, reader["requests"])
    print(
        f"{'    429 share':34}{share:10.2%}   of {reader['metered']:,} requests metered (sub-requests one by one); "
        f"{per_http:.2%} of {reader['requests']:,} HTTP requests; paced: {reader['paced']}"
        + (
            f" (learned {reader['learned_limit']:,.0f} RU per 10 s, lowered {reader['cooled']}x,"
            f" raised {reader['raised']}x)"
            if reader["paced"]
            else ""
        )
    )
    print(f"{'    floor with concurrency 8':34}{floor:10.2f}{'':>10}{'':>13}{min_requests:10,}   minimum requests")
    print(
        f"{'    floor with sandbox CPU time':34}{floor_server:10.2f}   the sandbox spent "
        f"{reader['server_cpu_s']:.2f} s CPU answering the reader"
    )
    if scan is not None:
        print(
            f"{'user-centric scan (alternative)':34}{scan['wall_s']:10.2f}{scan['cpu_s']:10.2f}{'':>13}"
            f"{scan['requests']:10,}{scan['ru']:10,.0f}   {scan['users']:,} users, one sequential chain"
        )
    print("ratios (target):")
    print(f"  CPU  sdk / reader          = {sdk_cpu / reader['cpu_s']:8.1f}x   (>= 30x)")
    print(f"  wall reader / max(chain, RU) = {reader['wall_s'] / floor_issue:6.2f}x   (<= 2x; 0 answers 429)")
    print(f"  wall reader / floor chain  = {reader['wall_s'] / floor_chain:8.2f}x")
    print(f"  wall reader / floor conc.  = {reader['wall_s'] / floor:8.2f}x")
    print(f"  wall reader / floor server = {reader['wall_s'] / floor_server:8.2f}x")
    print(f"  peak RSS reader            = {reader['peak_rss_mb']:8.0f} MB (< 300 MB)")
    print(f"  requests reader / minimum  = {reader['requests'] / min_requests:8.2f}x   (<= 1.1x)")
    print(f"  unreadable parts           = {reader['unreadable']}", flush=True)


def main() -> None:
    scenarios = {
        "realistic": Scenario("realistic", LATENCY_MS, PER_OBJECT_US),
        "flat": Scenario("flat", FLAT_LATENCY_MS, 0.0),
    }
    for shape in SHAPES:
        if shape not in scenarios:
            raise SystemExit(f"BENCH_READER_SHAPES: unknown shape {shape!r} (realistic, flat)")
        run_scenario(scenarios[shape])


def _child_main(argv: list[str]) -> None:
    kind, url = argv[0], argv[1]
    if kind == "serve":
        child_serve(argv[1], float(argv[2]), float(argv[3]))
        return
    if kind == "reader":
        result = child_reader(url)
    elif kind == "sdk":
        result = child_sdk(url, int(argv[2]), int(argv[3]))
    elif kind == "user-scan":
        result = child_user_scan(url)
    else:
        raise SystemExit(f"unknown child {kind}")
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child_main(sys.argv[2:])
    else:
        main()
