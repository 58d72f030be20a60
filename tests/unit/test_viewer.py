"""The one-click report link (licensing/pipeline/viewer.py): the app links itself only when it can serve the report."""

from __future__ import annotations

import pytest

from licensing.errors import ConfigurationError
from licensing.pipeline.viewer import report_link, serve_report
from licensing.settings import load_settings

READER = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ON = {"WEBSITE_AUTH_ENABLED": "True", "WEBSITE_HOSTNAME": "func-a.azurewebsites.net", "REPORT_READERS": READER}


def test_the_link_is_the_apps_when_sign_in_host_and_readers_are_all_there() -> None:
    link = report_link(load_settings(ON), "7d1f0000-0000-4000-8000-000000000001", "20261207T023000Z-1a2b3c4d")
    assert link == (
        "https://func-a.azurewebsites.net/api/reports/"
        "7d1f0000-0000-4000-8000-000000000001/20261207T023000Z-1a2b3c4d/report.html"
    )


@pytest.mark.parametrize("missing", ["WEBSITE_AUTH_ENABLED", "WEBSITE_HOSTNAME", "REPORT_READERS"])
def test_without_any_of_them_the_alerts_keep_the_blob_link(missing: str) -> None:
    env = {k: v for k, v in ON.items() if k != missing}
    assert report_link(load_settings(env), "t", "20261207T023000Z-1a2b3c4d") is None
    assert report_link(load_settings({**ON, "WEBSITE_AUTH_ENABLED": "False"}), "t", "r") is None


def test_bad_platform_values_and_reader_ids_are_named() -> None:
    with pytest.raises(ConfigurationError, match=r"REPORT_READERS='alice@contoso\.com' is invalid"):
        load_settings({"REPORT_READERS": "alice@contoso.com"})
    with pytest.raises(ConfigurationError, match="WEBSITE_HOSTNAME"):
        load_settings({"WEBSITE_HOSTNAME": "https://x/"})


def test_refusals_happen_before_storage_is_touched() -> None:
    # No storage configured at all: the answers below come from the checks alone (nothing to read, nothing leaked).
    settings = load_settings(ON)
    tenant, run = "7d1f0000-0000-4000-8000-000000000001", "20261207T023000Z-1a2b3c4d"
    reader = {"X-MS-CLIENT-PRINCIPAL-ID": READER}
    assert serve_report(load_settings({}), reader, tenant, run, "report.html").status == 404
    assert serve_report(settings, {}, tenant, run, "report.html").status == 401
    other = {"x-ms-client-principal-id": "11111111-2222-3333-4444-555555555555"}
    assert serve_report(settings, other, tenant, run, "report.html").status == 403
    assert serve_report(settings, reader, tenant, run, "secrets.txt").status == 404
    assert serve_report(settings, reader, tenant, run, "report.html").status == 503  # no storage here
