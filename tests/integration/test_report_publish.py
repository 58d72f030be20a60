"""Issue 30, item 1: each stored tenant run publishes its report to a private blob container, the alerts link to it
(no SAS), and `licensing-audit report` fetches the latest one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import BlobServiceClient

from licensing.cli import EXIT_OK, EXIT_USAGE, main
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from tests.unit.alerts_support import Receiver

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(generate_tenant(TenantSpec(seed=5, users=120, groups=12))) as running:
        yield running


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_MAIL_TO", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALERT_REPORT_URL", raising=False)


def _run(server: SandboxServer, connection: str, tenant: str) -> list[str]:
    return ["run", "--graph-url", server.base_url, "--credential", "none", "--store", connection, "--tenant-id", tenant]


def test_a_stored_run_publishes_its_report_privately_and_the_card_links_it(
    server: SandboxServer,
    storage_connection: str,
    unique_name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tenant = str(uuid.uuid4())
    container = f"r{unique_name[:40]}".lower().replace("_", "-")
    monkeypatch.setenv("REPORT_CONTAINER", container)
    with Receiver() as teams:
        monkeypatch.setenv("ALERT_TEAMS_WEBHOOK_URL", teams.url)
        assert main(_run(server, storage_connection, tenant)) == EXIT_OK
    out = capsys.readouterr().out
    blobs = BlobServiceClient.from_connection_string(storage_connection).get_container_client(container)
    names = {b.name for b in blobs.list_blobs(name_starts_with=f"{tenant}/")}
    latest = json.loads(blobs.download_blob(f"{tenant}/latest.json").readall())
    run_id = latest["run_id"]
    assert {f"{tenant}/{run_id}/{n}" for n in ("report.html", "report.json", "findings.csv", "skus.csv")} <= names
    # Private: no anonymous access on the container.
    assert blobs.get_container_properties().public_access is None
    html = blobs.get_blob_client(f"{tenant}/{run_id}/report.html")
    assert html.get_blob_properties().content_settings.content_type.startswith("text/html")
    # The card links the published HTML by its plain URL: no SAS, no key.
    card = json.loads(teams.bodies[0])
    actions = card["attachments"][0]["content"]["actions"]
    link = next(a["url"] for a in actions if a["title"] == "Full report")
    assert link.endswith(f"/{container}/{tenant}/{run_id}/report.html")
    assert "?" not in link and "sig=" not in link
    assert link in out  # the run's last lines say where the report is

    # `report` fetches the latest one.
    target = tmp_path / "latest.html"
    assert main(["report", "--store", storage_connection, "--tenant-id", tenant, "--output", str(target)]) == EXIT_OK
    assert target.read_bytes() == html.download_blob().readall()
    assert run_id in capsys.readouterr().out
    assert (
        main(
            [
                "report",
                "--store",
                storage_connection,
                "--tenant-id",
                tenant,
                "--file",
                "json",
                "-o",
                str(tmp_path / "r.json"),
            ]
        )
        == EXIT_OK
    )
    assert json.loads((tmp_path / "r.json").read_text())["run"]["id"] == run_id


def test_report_none_published_is_a_one_line_usage_error(
    storage_connection: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, unique_name: str
) -> None:
    monkeypatch.setenv("REPORT_CONTAINER", f"r{unique_name[:40]}".lower().replace("_", "-"))
    tenant = str(uuid.uuid4())
    assert main(["report", "--store", storage_connection, "--tenant-id", tenant]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no report is published" in err


def test_anonymous_read_of_a_published_report_is_refused(storage_connection: str, unique_name: str) -> None:
    from licensing.settings import load_settings
    from licensing.store.reports import open_archive

    container = f"r{unique_name[:40]}".lower().replace("_", "-")
    archive = open_archive(load_settings({"LICENSING_STORAGE": storage_connection}).storage, container)
    published = archive.publish("t1", "20261207T020000Z-aaaa0000", {"report.html": b"<!doctype html>"})
    assert "?" not in published.url
    from azure.storage.blob import BlobClient

    with pytest.raises(HttpResponseError):
        BlobClient.from_blob_url(published.url).download_blob().readall()  # no credential: not readable
    # An older run published later does not move latest.json back.
    archive.publish("t1", "20261206T020000Z-bbbb0000", {"report.html": b"old"})
    assert archive.latest("t1") == {"run_id": "20261207T020000Z-aaaa0000", "files": ["report.html"]}
