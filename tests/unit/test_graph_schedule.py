"""Which pending pages go next in read_collections: as queued when unpaced; chain fronts first once paced."""

from __future__ import annotations

from collections import deque

from licensing.graph.client import CollectionRequest
from licensing.graph.schedule import BATCH_LIMIT, next_chunk

MEMBERS = "/groups/{id}/members"


def members(n: int) -> list[tuple[CollectionRequest, str]]:
    reqs = [CollectionRequest(f"g{i}", f"/groups/g{i}/members", MEMBERS) for i in range(n)]
    return [(r, r.path) for r in reqs]


SCAN = CollectionRequest("users", "/users?$top=500", "/users")


def test_unpaced_the_queue_is_taken_as_it_stands() -> None:
    pending = deque([*members(30), (SCAN, SCAN.path)])
    chunk, urgent = next_chunk(pending, paced=False)
    assert [r.key for r, _ in chunk] == [f"g{i}" for i in range(BATCH_LIMIT)] and not urgent


def test_paced_next_pages_go_apart_and_urgent() -> None:
    nxt = [(SCAN, "http://h/v1.0/users?$skiptoken=2"), (members(1)[0][0], "http://h/v1.0/groups/g0/members?x=2")]
    pending = deque([*nxt, *members(5)])
    chunk, urgent = next_chunk(pending, paced=True)
    assert chunk == nxt and urgent and len(pending) == 5


def test_paced_the_rarest_route_starts_first_so_the_long_chain_is_not_started_last() -> None:
    pending = deque([*members(2000), (SCAN, SCAN.path)])
    chunk, urgent = next_chunk(pending, paced=True)
    assert chunk == [(SCAN, SCAN.path)] and not urgent
    chunk, _ = next_chunk(pending, paced=True)  # then the members, in their order
    assert [r.key for r, _ in chunk] == [f"g{i}" for i in range(BATCH_LIMIT)] and len(pending) == 1980
