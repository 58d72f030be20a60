"""Unit tests of the store's pure parts: key escaping, transaction planning, value splitting."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from licensing.errors import StorageError
from licensing.store.batching import MAX_TRANSACTION_BYTES, entity_size, plan_transactions, wire_size
from licensing.store.codec import (
    get_bytes,
    get_json,
    get_text,
    overflow_refs,
    put_bytes,
    put_json,
    put_text,
    restore_overflow,
    spill,
)
from licensing.store.keys import (
    MAX_KEY_CHARS,
    decode_key,
    encode_key,
    inverted_timestamp,
    join_keys,
    key_upper_bound,
    safe_key,
)

FORBIDDEN = "/\\#?"
CONTROL = "".join(chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)])
NASTY = FORBIDDEN + CONTROL + "'\"%~_-. aZ09😀שלום\u202e\ufeff\U0010ffff&=+:;,<>[]{}|^`"


def _random_strings(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out = ["", "~", "~z", "~_", "~7E", "%2F", "a" * 600]
    for _ in range(count):
        length = rng.randint(0, 40)
        out.append(
            "".join(
                rng.choice(NASTY)
                if rng.random() < 0.7
                else chr(rng.choice([rng.randint(0x20, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
                for _ in range(length)
            )
        )
    return out


def test_encode_key_round_trips_and_never_contains_forbidden_characters() -> None:
    for value in _random_strings(seed=7, count=3000):
        key = encode_key(value)
        assert decode_key(key) == value
        assert not any(c in FORBIDDEN or c in CONTROL for c in key)
        assert "'" not in key and "%" not in key
        assert key.isascii()


def test_encode_key_keeps_guids_and_finding_ids_readable() -> None:
    guid = "6fd2c87f-b296-42f0-b197-1e91e994b900"
    assert encode_key(guid) == guid
    assert encode_key("20261124T023000Z-1a2b3c4d") == "20261124T023000Z-1a2b3c4d"
    assert encode_key("a/b") == "a~2Fb"


def test_encoding_is_injective_on_random_inputs() -> None:
    values = set(_random_strings(seed=11, count=3000))
    assert len({encode_key(v) for v in values}) == len(values)


def test_joined_keys_do_not_collide() -> None:
    pairs = [("a", "b~_c"), ("a~_b", "c"), ("", "x"), ("x", ""), ("a_b", "c"), ("a", "b_c")]
    assert len({join_keys(*p) for p in pairs}) == len(pairs)


def test_decode_key_rejects_text_it_never_produced() -> None:
    with pytest.raises(StorageError):
        decode_key("a/b")
    with pytest.raises(StorageError):
        decode_key("~G1")


def test_safe_key_bounds_long_ids_and_keeps_them_distinct() -> None:
    a, b = "x" * 5000 + "a", "x" * 5000 + "b"
    assert len(safe_key(a)) <= MAX_KEY_CHARS and len(safe_key(b)) <= MAX_KEY_CHARS
    assert safe_key(a) != safe_key(b)
    assert safe_key("short") == "short"


def test_inverted_timestamp_sorts_newest_first() -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    moments = [base + timedelta(microseconds=i * 977) for i in range(50)] + [base.replace(year=2100)]
    keys = [inverted_timestamp(m) for m in moments]
    assert all(len(k) == 19 for k in keys)
    assert sorted(keys) == [inverted_timestamp(m) for m in sorted(moments, reverse=True)]


def test_key_upper_bound_covers_the_prefix() -> None:
    assert key_upper_bound("R") == "S"
    assert key_upper_bound("R") > "R9999" and key_upper_bound("a~_") > "a~_b"


# ---------------------------------------------------------------- transactions


def _ops(rng: random.Random, count: int, partitions: int) -> list[tuple[str, dict[str, object], dict[str, object]]]:
    ops: list[tuple[str, dict[str, object], dict[str, object]]] = []
    for i in range(count):
        pk = f"p{rng.randrange(partitions)}"
        rk = f"r{rng.randrange(count // 2 + 1)}"  # duplicates on purpose
        ops.append(("upsert", {"PartitionKey": pk, "RowKey": rk, "n": i}, {}))
    return ops


@pytest.mark.parametrize(("count", "partitions"), [(0, 1), (1, 1), (100, 1), (101, 1), (1000, 7), (2500, 40)])
def test_no_transaction_mixes_partitions_or_exceeds_100_operations(count: int, partitions: int) -> None:
    rng = random.Random(count * 31 + partitions)
    ops = _ops(rng, count, partitions)
    plans = plan_transactions(ops)
    assert sum(len(p) for p in plans) == count
    for plan in plans:
        assert 1 <= len(plan) <= 100
        assert len({op[1]["PartitionKey"] for op in plan}) == 1
        rows = [op[1]["RowKey"] for op in plan]
        assert len(rows) == len(set(rows)), "an entity twice in one transaction"
    # Order within a partition is kept (later upserts of the same row win).
    for pk in {op[1]["PartitionKey"] for op in ops}:
        flat = [op[1]["n"] for plan in plans for op in plan if op[1]["PartitionKey"] == pk]
        assert flat == [op[1]["n"] for op in ops if op[1]["PartitionKey"] == pk]


def test_distinct_rows_of_one_partition_fill_transactions_of_100() -> None:
    ops = [("upsert", {"PartitionKey": "run", "RowKey": f"{i:05d}"}, {}) for i in range(1000)]
    plans = plan_transactions(ops)
    assert [len(p) for p in plans] == [100] * 10


def test_transactions_stay_under_the_4_mib_payload_limit() -> None:
    big = "x" * 30_000
    ops = [
        ("upsert", {"PartitionKey": "p", "RowKey": str(i), **{f"m{j}": big for j in range(10)}}, {}) for i in range(60)
    ]
    plans = plan_transactions(ops)
    assert len(plans) > 1
    for plan in plans:
        assert sum(wire_size(op[1]) for op in plan) < MAX_TRANSACTION_BYTES


def test_plan_refuses_an_impossible_operation_count() -> None:
    with pytest.raises(ValueError):
        plan_transactions([], max_ops=101)


# ---------------------------------------------------------------- values


def test_long_text_is_split_under_the_property_limit_and_reads_back_intact() -> None:
    text = ("😀é" * 50_000) + "end"
    entity: dict[str, object] = {"PartitionKey": "p", "RowKey": "r"}
    put_text(entity, "message", text)
    for name, value in entity.items():
        if isinstance(value, str) and name.startswith("message"):
            assert len(value.encode("utf-16-le")) <= 64 * 1024
    assert get_text(entity, "message") == text


def test_bytes_and_json_round_trip() -> None:
    entity: dict[str, object] = {}
    payload = bytes(range(256)) * 1000
    put_bytes(entity, "payload", payload)
    put_json(entity, "ids", [f"user-{i}" for i in range(10_000)])
    assert get_bytes(entity, "payload") == payload
    assert get_json(entity, "ids") == [f"user-{i}" for i in range(10_000)]
    assert all(len(v) <= 64 * 1024 for v in entity.values() if isinstance(v, bytes))


def test_missing_part_is_an_error_not_a_short_value() -> None:
    entity: dict[str, object] = {}
    put_text(entity, "m", "y" * 70_000)
    del entity["m__1"]
    with pytest.raises(StorageError):
        get_text(entity, "m")


def test_oversized_entity_spills_to_overflow_rows_and_restores() -> None:
    entity: dict[str, object] = {"PartitionKey": "p", "RowKey": "r", "n": 1}
    put_text(entity, "message", "m" * 400_000)  # 800 KB as UTF-16
    put_bytes(entity, "payload", b"b" * 500_000)
    assert entity_size(entity) > 1024 * 1024
    main, rows = spill(dict(entity), "T")
    assert entity_size(main) < 1024 * 1024 and rows
    assert overflow_refs(main)
    restored = restore_overflow(main, {str(r["RowKey"]): r for r in rows})
    assert get_text(restored, "message") == "m" * 400_000
    assert get_bytes(restored, "payload") == b"b" * 500_000
    assert restored["n"] == 1


def test_small_entity_is_left_alone() -> None:
    entity: dict[str, object] = {"PartitionKey": "p", "RowKey": "r", "x": "y"}
    assert spill(entity, "T") == (entity, [])
