"""Refresh licensing/data/sku_names.csv (and group_licensing_skus.csv) from Microsoft's product-names table.

Usage: ``python scripts/refresh_sku_names.py [--source FILE_OR_URL] [--output PATH]``

Microsoft publishes "Product names and service plan identifiers for licensing" as a CSV with
one row per (SKU, service plan); we keep one row per SKU: ``String_Id,GUID,Product_Display_Name``,
and, beside the output, the SKUs that license group-based licensing (``group_licensing_skus.csv``).
https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from licensing.skus import parse_official_csv, parse_official_qualifying, to_qualifying_csv, to_table_csv  # noqa: E402

OFFICIAL_URL = (
    "https://download.microsoft.com/download/e/3/e/e3e9faf2-f28b-490a-9ada-c6089a1fc5b0/"
    "Product%20names%20and%20service%20plan%20identifiers%20for%20licensing.csv"
)
DEFAULT_OUTPUT = ROOT / "licensing" / "data" / "sku_names.csv"


def fetch(source: str, timeout: float = 60.0) -> str:
    """The CSV text from a URL (https) or a local file."""
    if source.startswith(("https://", "http://")):
        import httpx

        response = httpx.get(source, timeout=timeout, follow_redirects=True)
        response.raise_for_status()
        # The file is UTF-8 with a BOM; decode explicitly rather than trusting the content type.
        return response.content.decode("utf-8-sig")
    return Path(source).read_text(encoding="utf-8-sig")


def refresh(source: str, output: Path) -> int:
    text = fetch(source)
    rows = parse_official_csv(text)
    if len(rows) < 50:  # the real table has hundreds of SKUs; a tiny result means a broken download
        raise SystemExit(f"refusing to write {output}: only {len(rows)} SKUs parsed from {source}")
    output.write_text(to_table_csv(rows), encoding="utf-8")
    qualifying = to_qualifying_csv(parse_official_qualifying(text))
    output.with_name("group_licensing_skus.csv").write_text(qualifying, encoding="utf-8")
    return len(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default=OFFICIAL_URL, help="URL or local path of Microsoft's CSV")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="data file to rewrite")
    args = parser.parse_args(argv)
    count = refresh(args.source, args.output)
    print(f"wrote {count} SKUs to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
