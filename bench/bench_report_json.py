"""The JSON report through the one converter against orjson alone, in the same run.

Run: .venv/bin/python -m bench.bench_report_json   (BENCH_REPORT_FINDINGS to resize; default 50,000)
The floor is what no converter can beat: ``orjson.dumps`` of the frozen records as they are (orjson
writes dataclasses itself, but cannot put the report's keys in contract order nor read them back) and
``orjson.loads`` of the bytes. Ours writes the contract document and reads it back into equal records.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import orjson

from licensing.model import AuditReport
from licensing.report.json_report import report_from_json, to_json_bytes
from tests.factories import finding, run_info, sku_summary

FINDINGS = int(os.environ.get("BENCH_REPORT_FINDINGS", "50000"))
ROUNDS = 5


def _best(fn: Callable[[], Any]) -> float:
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return min(samples)


def main() -> None:
    report = AuditReport(
        run=run_info(),
        skus=tuple(sku_summary(sku_id=f"sku-{i}") for i in range(200)),
        findings=tuple(finding(user_id=f"user-{i}", message="m" * 80) for i in range(FINDINGS)),
    )
    raw = to_json_bytes(report)
    assert report_from_json(raw) == report
    floor_encode = _best(lambda: orjson.dumps(report, option=orjson.OPT_INDENT_2))
    floor_decode = _best(lambda: orjson.loads(raw))
    encode = _best(lambda: to_json_bytes(report))
    decode = _best(lambda: report_from_json(raw))
    print(f"report: {FINDINGS:,} findings, {len(raw):,} bytes; best of {ROUNDS}")
    print(f"encode  orjson floor {floor_encode:.3f} s   ours {encode:.3f} s   {encode / floor_encode:.2f}x")
    print(f"decode  orjson floor {floor_decode:.3f} s   ours {decode:.3f} s   {decode / floor_decode:.2f}x")


if __name__ == "__main__":
    main()
