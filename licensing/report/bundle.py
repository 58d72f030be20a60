"""The files of one run's report as bytes (report.html, report.json and the three CSVs): what is published."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from licensing.model import AuditReport, SkuDay

__all__ = ["report_files"]


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
    return {
        "report.html": html.encode("utf-8"),
        "report.json": to_json_bytes(report),
        "findings.csv": ("\ufeff" + findings_csv(report.findings)).encode("utf-8"),
        "skus.csv": ("\ufeff" + skus_csv(report.skus)).encode("utf-8"),
        "groups.csv": ("\ufeff" + groups_csv(report.groups)).encode("utf-8"),
    }
