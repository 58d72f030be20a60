"""Run every ``bench/bench_*.py`` module's ``main()`` and print its output: ``python -m bench [NAME ...]``.

With names (e.g. ``python -m bench reader``), only the modules whose name contains one of them run.
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    wanted = sys.argv[1:] if argv is None else argv
    modules = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    if wanted:
        modules = [m for m in modules if any(w in m for w in wanted)]
    if not modules:
        print(f"no benchmark matches {' '.join(wanted)}", file=sys.stderr)
        return 2
    for name in modules:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"bench.{name}").main()
        print(f"== {name} done in {time.perf_counter() - started:.1f} s\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
