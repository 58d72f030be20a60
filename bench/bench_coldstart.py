"""Cold start: the import time of function_app against a bare `import azure.functions`, same interpreter, same run.

Run: .venv/bin/python -m bench.bench_coldstart   (or `make bench`)
Each measurement is a fresh interpreter (that is what a cold start is); medians of N runs.
Target (issue "Triggers and the queue pipeline"): function_app costs < 0.5 s more than the bare import.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("BENCH_COLDSTART_RUNS", "7"))

_PROBE = """
import sys, time
t = time.perf_counter()
import {module}
elapsed = time.perf_counter() - t
heavy = sorted({{m.split('.')[0] for m in sys.modules if m.startswith(('msgraph', 'kiota', 'jinja2', 'rich'))}})
print(f"{{elapsed:.6f}} {{len(sys.modules)}} {{','.join(heavy) or '-'}}")
"""


def _measure(module: str) -> tuple[float, int, str]:
    env = {**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true", "PYTHONDONTWRITEBYTECODE": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), int(out[1]), out[2]


def main() -> None:
    _measure("function_app")  # warm the bytecode cache once, as a deployed app has it
    rows = []
    for module in ("azure.functions", "function_app"):
        samples = [_measure(module) for _ in range(RUNS)]
        rows.append((module, statistics.median(s[0] for s in samples), samples[-1][1], samples[-1][2]))
    bare, app = rows[0][1], rows[1][1]
    print(f"cold start, median of {RUNS} fresh interpreters")
    for module, seconds, modules, heavy in rows:
        print(f"  import {module:16} {seconds * 1000:8.1f} ms  {modules:5d} modules  heavy: {heavy}")
    print(f"  function_app - azure.functions = {(app - bare) * 1000:.1f} ms (target < 500 ms); ratio {app / bare:.2f}x")


if __name__ == "__main__":
    main()
