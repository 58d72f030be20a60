"""Publishing a tenant run's report (HTML, JSON, CSV) to the private blob container, before its alerts link to it.

A report that cannot be published never fails the audit: it is logged, and the alerts go out without the link
(or with ``ALERT_REPORT_URL`` when that is set: an address of the operator's own wins over the blob's).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from licensing.errors import LicensingError
from licensing.model import AuditReport, Scope, SkuDay
from licensing.pipeline.runtime import Runtime

__all__ = ["publish_report"]

log = logging.getLogger(__name__)


def publish_report(report: AuditReport, history: Mapping[str, Sequence[SkuDay]], runtime: Runtime) -> str | None:
    """The published report's URL (no SAS), or None: not a stored tenant run, REPORT_CONTAINER=none, or a failure."""
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
        return archive.publish(report.run.tenant_id, report.run.id, files).url
    except LicensingError as exc:
        log.warning("the report of run %s was not published: %s", report.run.id, exc)
        return None
