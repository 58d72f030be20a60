"""Serving a published report to a signed-in reader: the one-click target of the alerts' "Full report" link.

A private blob's URL needs a bearer token that a browser never sends, so the card's link points at the app itself,
``https://<app>/api/reports/<tenant id>/<run id>/report.html``, behind App Service authentication (Entra sign-in,
configured by the Bicep when ``reportSignInClientId`` is given: docs/deploy.md, "The report"). The app reads the
blob with its own identity and answers only when all of these hold:

* App Service authentication is on (``WEBSITE_AUTH_ENABLED``, injected by the platform). Only then are the
  ``X-MS-CLIENT-PRINCIPAL-*`` headers trustworthy: "App Service passes user claims to your app by using special
  headers. External requests aren't allowed to set these headers, so they are present only if set by App Service"
  (https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities). Off, anyone could
  forge them: the route answers 404 as if it did not exist.
* The request carries the signed-in principal's object id (``X-MS-CLIENT-PRINCIPAL-ID``), and that id is one of
  ``REPORT_READERS``: signing in to the tenant is not enough to read its licensing.
* The tenant, run and file name are ones the archive writes (no other blob of the account can be asked for).

No SAS, key or token is ever put in a URL or an answer; every answer is ``no-store`` and never framed.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final
from urllib.parse import quote

from licensing.errors import LicensingError
from licensing.model import UNKNOWN_TENANT
from licensing.report.bundle import REPORT_FILES
from licensing.settings import Settings, is_guid

if TYPE_CHECKING:
    from licensing.store.reports import ReportArchive

__all__ = ["REPORT_FILES", "ViewerAnswer", "report_link", "serve_report"]

log = logging.getLogger(__name__)

PRINCIPAL_ID: Final = "x-ms-client-principal-id"
_RUN_ID: Final = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")
# The report is a self-contained page: never cached on a shared machine, never framed by another site.
_HEADERS: Final = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True, slots=True)
class ViewerAnswer:
    """What the HTTP trigger returns: a status, a body and its headers (text answers are one line)."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=lambda: dict(_HEADERS))


def _text(status: int, line: str) -> ViewerAnswer:
    return ViewerAnswer(status, (line + "\n").encode())


def _path(tenant_id: str, run_id: str, name: str) -> str:
    """The app's path of a published report file (the HTTP trigger's route, served by the host under /api)."""
    return "/api/reports/" + "/".join(quote(part, safe="-_.") for part in (tenant_id, run_id, name))


def report_link(settings: Settings, tenant_id: str, run_id: str) -> str | None:
    """The one-click link to a run's report through the app, or None when the app cannot serve it (no sign-in in
    front of it, no host name, or nobody allowed to read): the alerts then carry the blob's plain URL instead."""
    if not (settings.website_auth_enabled and settings.website_hostname and settings.report_readers):
        return None
    return f"https://{settings.website_hostname}{_path(tenant_id, run_id, 'report.html')}"


def serve_report(
    settings: Settings,
    headers: Mapping[str, str],
    tenant: str,
    run: str,
    name: str,
    *,
    archive: ReportArchive | None = None,
) -> ViewerAnswer:
    """The answer to ``GET /api/reports/<tenant>/<run>/<name>`` (``run`` may be ``latest``: a redirect to the
    newest published run). ``archive`` is a :class:`~licensing.store.reports.ReportArchive` (opened from the
    settings when None)."""
    if not settings.website_auth_enabled:
        # Without App Service authentication the principal headers could be forged: the route does not exist.
        return _text(404, "not found")
    lowered = {k.lower(): v for k, v in headers.items()}
    principal = lowered.get(PRINCIPAL_ID, "").strip().lower()
    if not principal:
        return _text(401, "sign in with your work account to open the report (App Service authentication)")
    if principal not in settings.report_readers:
        log.warning("report %s/%s refused to object id %s: not in REPORT_READERS", tenant, run, principal)
        return _text(403, f"your account (object id {principal}) may not open these reports: ask for REPORT_READERS")
    tenant = tenant.lower()
    if not (is_guid(tenant) or tenant == UNKNOWN_TENANT) or name not in REPORT_FILES:
        return _text(404, "no such report file")
    if run != "latest" and not _RUN_ID.match(run):
        return _text(404, "no such run")
    if settings.storage is None or not settings.report_container:
        return _text(503, "reports are not published here (no storage or REPORT_CONTAINER=none)")
    from licensing.store.reports import CONTENT_TYPES, open_archive

    try:
        store = archive or open_archive(settings.storage, settings.report_container)
        if run == "latest":
            pointer = store.latest(tenant)
            newest = str(pointer.get("run_id", "")) if pointer else ""
            if not _RUN_ID.match(newest):
                return _text(404, "no report is published for this tenant yet")
            return ViewerAnswer(302, b"", headers={**_HEADERS, "Location": _path(tenant, newest, name)})
        body = store.run_file(tenant, run, name)
    except LicensingError as exc:
        log.warning("report %s/%s not readable: %s", tenant, run, exc)
        return _text(503, f"the report could not be read now: {exc}")
    if body is None:
        return _text(404, f"no report {name} for run {run} (deleted after RETENTION_DAYS, or never published)")
    log.info("report %s/%s/%s served to object id %s", tenant, run, name, principal)
    return ViewerAnswer(200, body, CONTENT_TYPES[name[name.rfind(".") :]])
