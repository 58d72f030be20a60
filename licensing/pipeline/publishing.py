"""Publishing a tenant run's report (HTML, JSON, CSV) to the private blob container, before its alerts link to it.

The link the alerts carry opens in one click where the app serves its reports behind Entra sign-in
(:func:`licensing.pipeline.viewer.report_link`); elsewhere it is the blob's plain URL (no SAS), opened with
``licensing-audit report`` or the portal. A report that cannot be published never fails the audit: it is logged, and
the alerts go out without the link (or with ``ALERT_REPORT_URL`` when that is set: an address of the operator's own
wins over both).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from licensing.errors import LicensingError
from licensing.model import AuditReport, Scope, SkuDay
from licensing.pipeline.runtime import Runtime
from licensing.pipeline.viewer import report_link

__all__ = ["publish_report"]

log = logging.getLogger(__name__)


def publish_report(report: AuditReport, history: Mapping[str, Sequence[SkuDay]], runtime: Runtime) -> str | None:
    """The published report's link (the app's, else the blob's plain URL), or None: not a stored tenant run,
    REPORT_CONTAINER=none, or a failure."""
    settings = runtime.settings
    if runtime.store is None or settings.storage is None or not settings.report_container:
        return None
    if report.run.scope is not Scope.TENANT:
        return None
    from licensing.report.bundle import report_files
    from licensing.store.reports import open_archive

    files = report_files(
        report,
        history=history,
        cloud=settings.graph_cloud,
        forecast_days=settings.forecast_days,
        prices=settings.sku_prices,
        currency=settings.sku_price_currency,
    )
    try:
        archive = open_archive(settings.storage, settings.report_container)
        published = archive.publish(report.run.tenant_id, report.run.id, files)
    except LicensingError as exc:
        log.warning("the report of run %s was not published: %s", report.run.id, exc)
        return None
    return report_link(settings, published.tenant_id, published.run_id) or published.url
