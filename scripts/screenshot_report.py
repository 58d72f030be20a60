"""Screenshot the demo's HTML report with headless Chromium (docs/report-screenshot.png, shown in the README).

The picture is of the real pipeline: `licensing-audit demo` (sandbox tenant, Azurite, two
nights) writes demo-output/report.html, and this script shoots it. Needs Azurite (`make demo`
installs it) and Debian's chromium.

    .venv/bin/python scripts/screenshot_report.py [--html demo-output/report.html] [--out docs/report-screenshot.png]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# Headless Chromium as this machine's closed network needs it (no background fetches, no first-run work).
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium_binary() -> str | None:
    return next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")) if p),
        None,
    )


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2000, timeout: float = 60.0) -> None:
    binary = chromium_binary()
    if binary is None:
        raise SystemExit("no Chromium found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                binary,
                *HEADLESS_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report-screenshot.png")
    parser.add_argument("--html", type=Path, default=None, help="an existing report (default: run the demo now)")
    parser.add_argument("--height", type=int, default=2200)
    args = parser.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.html is not None:
        screenshot(args.html, args.out, height=args.height)
    else:
        from rich.console import Console

        from licensing.demo import run_demo

        with tempfile.TemporaryDirectory() as tmp:
            run_demo(Console(quiet=True), output=Path(tmp) / "demo")
            screenshot(Path(tmp) / "demo" / "report.html", args.out, height=args.height)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
