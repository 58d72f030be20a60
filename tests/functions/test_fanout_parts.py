"""The pieces of the fan-out on their own: the chunk message contract, the blobs, the part codecs, the merge."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta

import pytest

from licensing.errors import BadRequestError, StorageError
from licensing.model import AuditRequest, Scope, Trigger
from licensing.pipeline.fanout import _mark_done
from licensing.pipeline.parts import (
    ChunkRequest,
    decode_overview,
    decode_part,
    encode_chunk_message,
    encode_overview,
    encode_part,
    parse_chunk_message,
)
from licensing.rules import RuleContext, evaluate
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.settings import Secret, StorageConnection, load_settings
from licensing.store import open_store

GOOD = ChunkRequest(run_id="20261124T023000Z-1a2b3c4d", tenant_id="t-1", chunk=3, plan="0123456789ab", request_id="r")


def test_chunk_message_round_trips_and_accepts_base64() -> None:
    import base64

    text = encode_chunk_message(GOOD)
    assert parse_chunk_message(text) == GOOD
    assert parse_chunk_message(base64.b64encode(text.encode())) == GOOD
    assert parse_chunk_message(encode_chunk_message(ChunkRequest("r1", "t", 0, "a" * 12))).request_id is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ('{"run_id": "r", "tenant_id": "t", "chunk": 1, "plan": "0123456789ab", "scope": "x"}', "unknown field"),
        ('{"run_id": "r", "tenant_id": "t", "plan": "0123456789ab"}', "lacks chunk"),
        ('{"run_id": "r", "tenant_id": "t", "chunk": true, "plan": "0123456789ab"}', "chunk must be an integer"),
        ('{"run_id": "r", "tenant_id": "t", "chunk": -1, "plan": "0123456789ab"}', "chunk must be an integer"),
        ('{"run_id": "r", "tenant_id": "t", "chunk": 1, "plan": "XYZ"}', "plan must be"),
        ('{"run_id": "a#b", "tenant_id": "t", "chunk": 1, "plan": "0123456789ab"}', "run_id must be"),
        ('{"run_id": "r", "tenant_id": 5, "chunk": 1, "plan": "0123456789ab"}', "tenant_id must be"),
        ('["r"]', "must be a JSON object"),
    ],
)
def test_chunk_message_is_validated_strictly(body: str, problem: str) -> None:
    with pytest.raises(BadRequestError, match=problem):
        parse_chunk_message(body)


def test_only_the_update_completing_the_set_claims_the_final_step() -> None:
    now = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    extra = {"fanout": {"plan": "p" * 12, "chunks": 2, "done": [], "final": None}, "other": 1}
    one = _mark_done(extra, plan="p" * 12, index=0, token="m0", now=now)
    assert one["fanout"]["done"] == [0] and one["fanout"]["final"] is None and one["other"] == 1
    two = _mark_done(one, plan="p" * 12, index=1, token="m1", now=now)
    assert two["fanout"]["final"]["by"] == "m1"
    again = _mark_done(two, plan="p" * 12, index=0, token="m0", now=now + timedelta(minutes=1))
    assert again["fanout"]["final"]["by"] == "m1", "a live claim is not taken over"
    late = _mark_done(two, plan="p" * 12, index=0, token="m0", now=now + timedelta(hours=1))
    assert late["fanout"]["final"]["by"] == "m0", "an abandoned claim is"
    assert _mark_done(two, plan="q" * 12, index=0, token="m0", now=now) == two, "another plan's chunk changes nothing"


@pytest.mark.azurite
def test_blobs_of_several_entities_round_trip_and_are_checked(storage_connection: str, unique_name: str) -> None:
    store = open_store(StorageConnection(connection_string=Secret(storage_connection), source="AzureWebJobsStorage"),
                       prefix=unique_name)  # fmt: skip
    store.ensure_tables()
    try:
        data = os.urandom(2_500_000)  # incompressible: four entities of up to 768,000 bytes
        store.put_blob("fanout/run/plan/chunk-00000", data)
        assert store.get_blob("fanout/run/plan/chunk-00000") == data
        store.put_blob("fanout/run/plan/chunk-00000", b"second")  # a redelivery rewrites it
        assert store.get_blob("fanout/run/plan/chunk-00000") == b"second"
        store.put_blob("empty", b"")
        assert store.get_blob("empty") == b""
        assert store.get_blob("missing") is None
        assert store.delete_blob("fanout/run/plan/chunk-00000") == 6  # header + 4 + 1 parts of both versions
        assert store.get_blob("fanout/run/plan/chunk-00000") is None
        table = store._table(store.tables.overflow)
        header = table.get_entity("b~_empty", "h")
        header["sha256"] = "0" * 64
        table.upsert_entity(header)
        with pytest.raises(StorageError, match="does not match"):
            store.get_blob("empty")
    finally:
        store.drop_tables()


def test_chunked_reads_merged_equal_one_read_and_survive_their_codecs() -> None:
    from licensing.graph import open_graph, read_snapshot
    from licensing.graph.reader import merge_snapshot, read_members, read_overview, read_users

    tenant = generate_tenant(TenantSpec(seed=5, users=300, groups=24))
    with SandboxServer(tenant) as server:
        settings = load_settings({"GRAPH_BASE_URL": server.base_url})

        async def both() -> tuple[object, object]:
            async with open_graph(settings, credential="none") as graph:
                whole = await read_snapshot(graph, AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI))
            async with open_graph(settings, credential="none") as graph:
                overview = decode_overview(encode_overview(await read_overview(graph)))
            parts = []
            for start in range(0, len(overview.groups), 4):
                async with open_graph(settings, credential="none") as graph:
                    part = await read_members(graph, overview.groups[start : start + 4])
                parts.append(decode_part(encode_part(part)))
            async with open_graph(settings, credential="none") as graph:  # the users scan is a chunk of its own
                parts.append(decode_part(encode_part(await read_users(graph))))
            return whole, merge_snapshot(overview, parts)

        whole, merged = asyncio.run(both())
    ctx = RuleContext.from_settings(settings, now=datetime(2026, 11, 24, tzinfo=UTC))
    a, b = evaluate(whole, ctx), evaluate(merged, ctx)  # type: ignore[arg-type]
    assert [(f.id, f.kind, f.severity, f.message) for f in a.findings] == [
        (f.id, f.kind, f.severity, f.message) for f in b.findings
    ]
    assert a.skus == b.skus and a.groups == b.groups
    assert dict(whole.users) == dict(merged.users)  # type: ignore[attr-defined]
    assert merged.stats.requests > 0 and merged.unreadable == ()  # type: ignore[attr-defined]
