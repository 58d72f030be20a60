"""licensed_group_shrank over two tenant runs of the queue pipeline: the store's last run is the baseline."""

from __future__ import annotations

import asyncio

import azure.functions.queue as fq
import orjson
import pytest

from licensing.model import RunStatus
from tests.functions.test_queue_pipeline import Pipeline, pipe  # noqa: F401 - the fixture

pytestmark = pytest.mark.azurite


def night(p: Pipeline, fns: dict, request_id: str) -> None:  # type: ignore[type-arg]
    body = orjson.dumps({"scope": "tenant", "request_id": request_id})
    asyncio.run(fns["audit_request"](fq.QueueMessage(id=f"m-{request_id}", body=body, dequeue_count=1)))


def test_a_group_that_lost_more_than_the_threshold_is_found(pipe: Pipeline) -> None:  # noqa: F811
    fns = pipe.load(GROUP_DROP_PCT="25")
    night(pipe, fns, "n1")
    first = pipe.report("n1")
    assert first.run.status is RunStatus.SUCCEEDED
    assert "licensed_group_shrank" not in {f.kind for f in first.findings}, "no earlier run: nothing to compare"
    big = sorted(
        (g for g in pipe.tenant.groups if g.licensed and len(g.users) >= 8 and not g.member_groups and not g.devices),
        key=lambda g: -len(g.users),
    )
    shrinking, trimmed = big[0], big[1]
    lost_many = len(shrinking.users) // 2  # 50 % > 25 %
    lost_few = len(trimmed.users) // 5  # 20 % <= 25 %
    pipe.graph.remove_members(shrinking.id, lost_many)
    pipe.graph.remove_members(trimmed.id, lost_few)
    night(pipe, fns, "n2")
    second = pipe.report("n2")
    shrank = [f for f in second.findings if f.kind == "licensed_group_shrank"]
    assert [f.group_id for f in shrank] == [shrinking.id]
    before, after = len(shrinking.users), len(shrinking.users) - lost_many
    assert f"({before} -> {after}," in shrank[0].message
