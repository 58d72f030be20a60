"""The alerts' Full report link opens in one click: the app serves a published report (Azurite) to a reader signed in
through App Service authentication, through its real HTTP trigger and azure.functions objects (issue 30, item 1)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator

import azure.functions as func
import pytest

from licensing.cli import EXIT_OK, main
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.settings import load_settings
from licensing.store.reports import open_archive
from tests.functions.test_function_app import functions, load_app
from tests.unit.alerts_support import Receiver

pytestmark = pytest.mark.azurite

READER = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
OTHER = "11111111-2222-3333-4444-555555555555"
HOST = "func-audit-abc123.azurewebsites.net"
RUN = "20261207T023000Z-1a2b3c4d"
NEWER = "20261208T023000Z-5e6f7a8b"


@pytest.fixture
def container(unique_name: str) -> str:
    return f"r{unique_name[:40]}".lower().replace("_", "-")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, storage_connection: str, container: str) -> Iterator[pytest.MonkeyPatch]:
    for key in ("LICENSING_STORAGE", "AzureWebJobsStorage", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_REPORT_URL"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LICENSING_STORAGE", storage_connection)
    monkeypatch.setenv("REPORT_CONTAINER", container)
    yield monkeypatch


Handler = Callable[[func.HttpRequest], func.HttpResponse]


def _app(env: pytest.MonkeyPatch, **extra: str) -> Handler:
    """The report trigger's function, from function_app imported under these settings (indexed once)."""
    module = load_app(
        env, {"WEBSITE_AUTH_ENABLED": "True", "WEBSITE_HOSTNAME": HOST, "REPORT_READERS": READER, **extra}
    )
    handler: Handler = functions(module)["report"].get_user_function()
    return handler


def _get(handler: Handler, tenant: str, run: str, name: str, principal: str | None) -> func.HttpResponse:
    headers = {"X-MS-CLIENT-PRINCIPAL-ID": principal} if principal else {}
    request = func.HttpRequest(
        method="GET",
        url=f"https://{HOST}/api/reports/{tenant}/{run}/{name}",
        headers=headers,
        route_params={"tenant": tenant, "run": run, "name": name},
        body=b"",
    )
    return handler(request)


def _publish(storage_connection: str, container: str, tenant: str) -> None:
    archive = open_archive(load_settings({"LICENSING_STORAGE": storage_connection}).storage, container)
    archive.publish(tenant, RUN, {"report.html": b"<!doctype html><title>run</title>", "findings.csv": b"kind\n"})
    archive.publish(tenant, NEWER, {"report.html": b"<!doctype html><title>newer</title>"})


def test_a_listed_reader_signed_in_opens_the_report_and_the_latest_redirects(
    env: pytest.MonkeyPatch, storage_connection: str, container: str
) -> None:
    tenant = str(uuid.uuid4())
    _publish(storage_connection, container, tenant)
    app = _app(env)
    answer = _get(app, tenant, RUN, "report.html", READER.upper())  # object ids compare case-insensitively
    assert answer.status_code == 200
    assert answer.get_body() == b"<!doctype html><title>run</title>"
    assert answer.mimetype == "text/html"
    assert answer.headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    csv = _get(app, tenant, RUN, "findings.csv", READER)
    assert (csv.status_code, csv.mimetype, csv.get_body()) == (200, "text/csv", b"kind\n")
    latest = _get(app, tenant, "latest", "report.html", READER)
    assert latest.status_code == 302
    assert latest.headers["Location"] == f"/api/reports/{tenant}/{NEWER}/report.html"


@pytest.mark.parametrize(
    ("principal", "status", "says"),
    [
        (None, 401, "sign in"),  # App Service authentication lets it through only when unauthenticated access is on
        (OTHER, 403, f"object id {OTHER}"),  # signed in to the tenant is not enough
    ],
)
def test_a_reader_not_signed_in_or_not_listed_is_refused_in_one_line(
    env: pytest.MonkeyPatch, storage_connection: str, container: str, principal: str | None, status: int, says: str
) -> None:
    tenant = str(uuid.uuid4())
    _publish(storage_connection, container, tenant)
    answer = _get(_app(env), tenant, RUN, "report.html", principal)
    assert answer.status_code == status
    body = answer.get_body().decode()
    assert says in body and len(body.strip().splitlines()) == 1
    assert b"<title>" not in answer.get_body()


def test_without_app_service_authentication_forged_headers_open_nothing(
    env: pytest.MonkeyPatch, storage_connection: str, container: str
) -> None:
    # Off, the X-MS-CLIENT-PRINCIPAL-* headers come from whoever sends the request: the route does not exist.
    tenant = str(uuid.uuid4())
    _publish(storage_connection, container, tenant)
    for flag in ("False", ""):
        answer = _get(_app(env, WEBSITE_AUTH_ENABLED=flag), tenant, RUN, "report.html", READER)
        assert answer.status_code == 404


@pytest.mark.parametrize(
    ("tenant", "run", "name"),
    [
        ("{tenant}", "../../other", "report.html"),  # only run ids the pipeline makes
        ("{tenant}", RUN, "latest.json"),  # only the report's files, not the archive's pointer or other blobs
        ("..", RUN, "report.html"),
        ("{tenant}", "20991231T000000Z-00000000", "report.html"),  # well formed, never published
    ],
)
def test_only_published_report_files_are_served(
    env: pytest.MonkeyPatch, storage_connection: str, container: str, tenant: str, run: str, name: str
) -> None:
    real = str(uuid.uuid4())
    _publish(storage_connection, container, real)
    answer = _get(_app(env), tenant.format(tenant=real), run, name, READER)
    assert answer.status_code == 404
    assert b"<title>" not in answer.get_body()


def test_the_card_links_the_app_when_it_serves_the_reports(
    env: pytest.MonkeyPatch, storage_connection: str, container: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A stored run's card: Full report is https://<app>/api/reports/<tenant>/<run>/report.html (one click), and the
    # same link opens the report.
    tenant = str(uuid.uuid4())
    env.setenv("WEBSITE_AUTH_ENABLED", "True")
    env.setenv("WEBSITE_HOSTNAME", HOST)
    env.setenv("REPORT_READERS", READER)
    with (
        SandboxServer(generate_tenant(TenantSpec(seed=5, users=120, groups=12))) as server,
        Receiver() as teams,
    ):
        env.setenv("ALERT_TEAMS_WEBHOOK_URL", teams.url)
        args = ["run", "--graph-url", server.base_url, "--credential", "none", "--tenant-id", tenant]
        assert main(args) == EXIT_OK
    card = json.loads(teams.bodies[0])
    link = next(a["url"] for a in card["attachments"][0]["content"]["actions"] if a["title"] == "Full report")
    prefix = f"https://{HOST}/api/reports/{tenant}/"
    assert link.startswith(prefix) and link.endswith("/report.html")
    run_id = link[len(prefix) :].split("/")[0]
    assert link in capsys.readouterr().out
    answer = _get(_app(env), tenant, run_id, "report.html", READER)
    assert answer.status_code == 200 and answer.get_body().lower().startswith(b"<!doctype html>")
