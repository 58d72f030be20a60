"""Records <-> plain data: today's hand-written fan-out part codec against msgspec and cattrs, same snapshot.

Run: .venv/bin/python -m bench.bench_codec   (BENCH_CODEC_USERS to resize; default 100,000 members)
The snapshot is what the real reader makes of a sandbox tenant, read in process. Each codec encodes the
snapshot to bytes and decodes it back to equal records; zlib (what the fan-out stores) is left out of the
other two; today's decode includes it, and the inflate time is printed beside. Issue 17, item 4 asks for
this measurement before one converter replaces the four hand-written mappings.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import orjson

from licensing.model import TenantSnapshot
from licensing.pipeline import parts
from licensing.sandbox import TenantSpec, generate_tenant
from licensing.sandbox.inprocess import read_in_process

USERS = int(os.environ.get("BENCH_CODEC_USERS", "140000"))  # about 100,000 memberships
ROUNDS = 5


def _snapshot() -> TenantSnapshot:
    tenant = generate_tenant(TenantSpec(seed=11, users=USERS, groups=max(12, USERS // 100)))
    snap = read_in_process(tenant)
    return replace(snap, users=dict(snap.users))  # plain dict: what every codec can take


def _time(fn: Callable[[], Any]) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    import cattrs.preconf.orjson
    import msgspec

    snap = _snapshot()
    members = sum(len(g.user_ids) for g in snap.groups)
    print(f"snapshot: {len(snap.users):,} users, {len(snap.groups):,} groups, {members:,} memberships")

    # Today: orjson of the dataclasses, decoded by the hand-written mapping of licensing/pipeline/parts.py.
    today_bytes = orjson.dumps({"v": parts.FORMAT, "groups": snap.groups, "users": snap.users,
                                "unreadable": snap.unreadable, "stats": snap.stats})  # fmt: skip
    packed = parts.encode_part(snap)

    msg_enc = msgspec.msgpack.Encoder()
    msg_dec = msgspec.msgpack.Decoder(TenantSnapshot)
    msg_bytes = msg_enc.encode(snap)
    back = msg_dec.decode(msg_bytes)
    assert (len(back.users), back.groups[:50]) == (len(snap.users), snap.groups[:50]), "msgspec round trip differs"

    conv = cattrs.preconf.orjson.make_converter()
    cattrs_bytes = conv.dumps(snap)
    again = conv.loads(cattrs_bytes, TenantSnapshot)
    assert (len(again.users), again.groups[:50]) == (len(snap.users), snap.groups[:50]), "cattrs round trip differs"

    rows = [
        ("today (orjson + hand mapping)", lambda: orjson.dumps({"groups": snap.groups, "users": snap.users,
         "unreadable": snap.unreadable, "stats": snap.stats}), lambda: parts.decode_part(packed), len(today_bytes)),
        ("msgspec.msgpack (typed decode)", lambda: msg_enc.encode(snap), lambda: msg_dec.decode(msg_bytes),
         len(msg_bytes)),
        ("cattrs + orjson", lambda: conv.dumps(snap), lambda: conv.loads(cattrs_bytes, TenantSnapshot),
         len(cattrs_bytes)),
    ]  # fmt: skip
    import zlib

    inflate = _time(lambda: zlib.decompress(packed))
    print(f"(today's decode includes inflating the zlib blob: {inflate:.3f} s of it)")
    base_enc = base_dec = 0.0
    print(f"{'codec':34} {'encode s':>9} {'decode s':>9} {'bytes':>12} {'enc x':>6} {'dec x':>6}")
    for name, enc, dec, size in rows:
        e, d = _time(enc), _time(dec)
        base_enc, base_dec = (base_enc or e), (base_dec or d)
        print(f"{name:34} {e:9.3f} {d:9.3f} {size:12,} {e / base_enc:6.2f} {d / base_dec:6.2f}")


if __name__ == "__main__":
    main()
