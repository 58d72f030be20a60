"""Load check run as a subprocess by test_rel_load.py: audit a large sandbox tenant with faults on, print figures.

The sandbox is a separate process (``python -m licensing.sandbox``), so the audit's peak RSS is its own
and the two use both cores. Prints one JSON line: peak RSS, timings, Graph counters and the finding
comparison with the sandbox's ground truth.
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FAULTS = (
    "429@members:rate=0.05:retry_after=0.01;503@members:rate=0.02:retry_after=0;"
    "empty_page@members:rate=0.02;short_page@members:rate=0.02;unknown_type@members:rate=0.02;"
    "429@groups:first=1:retry_after=0.01;reset@batch:first=2;500@subscribedSkus:first=1;seed=7"
)


def main(users: int, groups: int, storage: str | None) -> int:
    from licensing.model import AuditRequest, Scope, Trigger
    from licensing.pipeline.run import run_audit
    from licensing.pipeline.runtime import Runtime
    from licensing.settings import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        truth_file = Path(tmp) / "truth.json"
        started = time.monotonic()
        sandbox = subprocess.Popen(
            [
                sys.executable, "-m", "licensing.sandbox", "--seed", "5", "--users", str(users),
                "--groups", str(groups), "--faults", FAULTS, "--ground-truth", str(truth_file),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        try:
            assert sandbox.stdout is not None
            base_url = sandbox.stdout.readline().strip()
            if not base_url.startswith("http://127.0.0.1"):
                print(json.dumps({"error": f"sandbox did not start: {base_url!r}"}))
                return 1
            generated = time.monotonic()
            settings = load_settings({"GRAPH_BASE_URL": base_url, "GRAPH_MAX_CONCURRENCY": "8"})
            request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI, request_id="load-1")
            store = None
            if storage:
                from licensing.settings import Secret, StorageConnection
                from licensing.store import open_store

                prefix = f"load{int(time.time() * 1000) % 10**9}"
                store = open_store(StorageConnection(connection_string=Secret(storage)), prefix=prefix)
                store.ensure_tables()
            outcome = asyncio.run(run_audit(request, Runtime(settings, store=store, credential="none"), alerts=False))
            audited = time.monotonic()
            stored = -1
            if store is not None:
                stored = len(store.run_findings(outcome.report.run.id))
                store.drop_tables()
        finally:
            sandbox.terminate()
            sandbox.wait(10)
        truth = json.loads(truth_file.read_bytes())["findings"]

    def key(f: dict[str, object]) -> tuple[object, ...]:
        return tuple(
            str(f[k]) for k in ("kind", "severity", "sku_id", "group_id", "user_id", "member_group_id", "error")
        )

    report = outcome.report
    found = {
        key({"kind": f.kind, "severity": f.severity, "sku_id": f.sku_id, "group_id": f.group_id,
             "user_id": f.user_id, "member_group_id": f.member_group_id, "error": f.error})
        for f in report.findings
    }  # fmt: skip
    expected = {key(f) for f in truth}
    print(
        json.dumps(
            {
                "users": users,
                "groups": groups,
                "status": report.run.status.value,
                "errors": list(report.run.errors),
                "findings": len(report.findings),
                "expected": len(truth),
                "missing": len(expected - found),
                "extra": len(found - expected),
                # a few of each, so a failed run in CI says which findings differed and not only how many
                "missing_sample": sorted(map(list, expected - found))[:5],
                "extra_sample": sorted(map(list, found - expected))[:5],
                "graph_requests": report.run.graph_requests,
                "graph_throttled": report.run.graph_throttled,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "sandbox_start_s": round(generated - started, 1),
                "audit_s": round(audited - generated, 1),
                "stored_findings": stored,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None))
