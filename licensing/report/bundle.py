"""The files of one run's report as bytes (report.html, report.json and the three CSVs): what is published."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from licensing.model import AuditReport, SkuDay

__all__ = ["REPORT_FILES", "report_files"]

# The names of a run's report files, in the order report_files returns them (the app serves these and no other).
REPORT_FILES: Final = ("report.html", "report.json", "findings.csv", "skus.csv", "groups.csv")


def report_files(
    report: AuditReport,
    *,
    history: Mapping[str, Sequence[SkuDay]] | None = None,
    cloud: str = "global",
    forecast_days: int = 30,
    prices: Sequence[tuple[str, float]] = (),
    currency: str = "USD",
) -> dict[str, bytes]:
    """File name -> bytes, the same renderings as ``run --html/--json/--csv`` (the CSVs with a BOM, for Excel)."""
    from licensing.report.csv_report import findings_csv, groups_csv, skus_csv
    from licensing.report.html import render_html
    from licensing.report.json_report import to_json_bytes

    html = render_html(
        report,
        history=history or None,
        cloud=cloud,
        forecast_days=forecast_days,
        prices=prices,
        currency=currency,
    )
    contents = (
        html.encode("utf-8"),
        to_json_bytes(report),
        ("\ufeff" + findings_csv(report.findings)).encode("utf-8"),
        ("\ufeff" + skus_csv(report.skus)).encode("utf-8"),
        ("\ufeff" + groups_csv(report.groups)).encode("utf-8"),
    )
    return dict(zip(REPORT_FILES, contents, strict=True))
