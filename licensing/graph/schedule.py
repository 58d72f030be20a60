"""Which pending pages ``read_collections`` sends next: in order, or, once Graph throttles, chain fronts first.

Unpaced (the normal case) the queue is taken as it stands: next pages at its front (the client puts them there),
then first pages in the caller's order, 20 to a $batch. Once the pacer is engaged every request waits for the RU
bucket, and the wall time is the larger of *RU needed ÷ rate* and *the longest chain of pages*: a chain must then
neither queue behind first pages nor start late. So next pages go apart and ``urgent`` (ahead of the bucket), and
among first pages the rarest route goes first: a route with a handful of collections (the users scan) holds long
chains, one with thousands (group members) mostly single pages, and started last the long chain would begin only
when the thousands of first pages had been paced out (measured: docs/benchmarks.md).
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Final, Protocol, TypeVar

__all__ = ["BATCH_LIMIT", "next_chunk"]

BATCH_LIMIT: Final = 20  # https://learn.microsoft.com/graph/json-batching: at most 20 requests per batch


class _Collection(Protocol):
    @property
    def path(self) -> str: ...
    @property
    def route(self) -> str: ...


E = TypeVar("E", bound=tuple[_Collection, str])


def _is_next(entry: tuple[_Collection, str]) -> bool:
    req, url = entry
    return url != req.path  # a first page is the request's own path; anything else is a next link


def next_chunk(pending: deque[E], *, paced: bool) -> tuple[list[E], bool]:
    """Take the next chunk (at most BATCH_LIMIT entries) off ``pending``; also whether it is urgent."""
    if not paced:
        return [pending.popleft() for _ in range(min(BATCH_LIMIT, len(pending)))], False
    if _is_next(pending[0]):
        nexts = [pending.popleft()]
        while pending and len(nexts) < BATCH_LIMIT and _is_next(pending[0]):
            nexts.append(pending.popleft())
        return nexts, True
    counts = Counter(req.route for req, url in pending if url == req.path)
    rarest = min(counts, key=lambda route: counts[route])  # ties: the first such route in the queue
    chunk: list[E] = []
    rest: deque[E] = deque()
    for entry in pending:
        if len(chunk) < BATCH_LIMIT and not _is_next(entry) and entry[0].route == rarest:
            chunk.append(entry)
        else:
            rest.append(entry)
    pending.clear()
    pending.extend(rest)
    return chunk, False
