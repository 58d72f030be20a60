"""No secret in anything a faulty run leaves behind: log lines (every logger, DEBUG), exception messages, reports
(JSON, CSV, HTML, terminal), stored rows (runs, outbox errors) and telemetry (span attributes, events, metrics).

The secrets are distinctive: a webhook URL whose ``sig=`` is random per session, bearer tokens from a fake
credential, and the Azurite account key of the storage connection string."""

from __future__ import annotations

import asyncio
import io
import logging
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from licensing.emulator import AZURITE_KEY, Azurite
from licensing.errors import LicensingError
from licensing.model import AuditRequest, Scope, Trigger
from licensing.pipeline.conclusion import AuditOutcome
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import FaultRule, Faults, SandboxServer, SandboxTenant
from tests.reliability.conftest import (
    WEBHOOK_SIG,
    ExpiringCredential,
    Reply,
    SleepLog,
    StorageLink,
    WebhookReceiver,
    make_settings,
    open_test_store,
    use_credential,
)

pytestmark = pytest.mark.azurite

NEEDLES = (WEBHOOK_SIG, "fake-token-", AZURITE_KEY[:20], AZURITE_KEY[-20:], "sig=")


def _otel_texts(otel: Any) -> list[str]:
    out: list[str] = []
    for span in otel.spans():
        out.append(f"span {span.name} {dict(span.attributes or {})} {span.status.description or ''}")
        out.extend(f"event {e.name} {dict(e.attributes or {})}" for e in span.events)
    data = otel.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                out.extend(f"metric {m.name} {dict(p.attributes or {})}" for p in m.data.data_points)
    return out


def _exception_texts(exc: BaseException) -> list[str]:
    texts = ["".join(traceback.format_exception_only(type(exc), exc))]
    cause = exc.__cause__ or exc.__context__
    while cause is not None and len(texts) < 10:  # what a log handler with exc_info would print
        texts.append("".join(traceback.format_exception_only(type(cause), cause)))
        cause = cause.__cause__ or cause.__context__
    return texts


def _leaks(texts: dict[str, list[str]]) -> list[str]:
    return [
        f"{where}: {text[:160]!r}"
        for where, items in texts.items()
        for text in items
        for needle in NEEDLES
        if needle in text
    ]


@pytest.fixture
def faulty_runs(
    sandbox: SandboxServer, small_tenant: SandboxTenant, azurite: Azurite, unique_name: str, webhook: WebhookReceiver,
    graph_sleeps: SleepLog, alert_sleeps: SleepLog, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    otel: Any,
) -> Iterator[dict[str, list[str]]]:  # fmt: skip
    """A partial run (throttling, a refused token, a failing webhook) and a failed one (storage down)."""
    from licensing.report.csv_report import findings_csv
    from licensing.report.html import render_html
    from licensing.report.json_report import to_json_bytes
    from licensing.report.terminal import render_summary

    credential = ExpiringCredential()
    use_credential(monkeypatch, credential)
    caplog.set_level(logging.DEBUG)  # every logger, the SDKs' HTTP logging included
    sandbox.set_faults(
        Faults(
            rules=(
                FaultRule("429", "members", first=2, retry_after="0"),
                FaultRule("401", "subscribedSkus"),
                FaultRule("500", "sendMail", retry_after="0"),
            )
        )
    )
    webhook.then(*[Reply(500)] * 10)
    link = StorageLink(azurite.table_port)
    connection = link.connection_string(azurite)
    settings = make_settings(sandbox, storage=connection, webhook_url=webhook.url, mail=True)
    store = open_test_store(connection, unique_name)
    request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.QUEUE, request_id="secret-run")
    texts: dict[str, list[str]] = {"exceptions": [], "settings": [repr(settings), str(settings)]}
    try:
        outcome: AuditOutcome = asyncio.run(run_audit(request, Runtime(settings, store=store, credential="default")))
        assert credential.issued >= 1 and webhook.attempts >= 1, "the secrets were really used"
        report = outcome.report
        console_out = io.StringIO()
        from rich.console import Console

        render_summary(report, console=Console(file=console_out, width=200, color_system=None), verbose=True)
        texts["reports"] = [
            to_json_bytes(report).decode(),
            findings_csv(report.findings),
            render_html(report),
            console_out.getvalue(),
            repr(outcome.delivery),
        ]
        texts["store"] = [repr(store.get_run(report.run.tenant_id, report.run.id)), repr(store.outbox_list())]
        # The same request once more with the storage account unreachable: it fails, and says so safely.
        link.down()
        with pytest.raises(LicensingError) as failure:
            asyncio.run(
                run_audit(
                    AuditRequest(scope=Scope.TENANT, trigger=Trigger.QUEUE, request_id="secret-run-2"),
                    Runtime(settings, store=store, credential="default"),
                )
            )
        texts["exceptions"] += _exception_texts(failure.value)
        # A bad connection string is reported by the setting's name, never quoted.
        from licensing.settings import load_settings

        with pytest.raises(LicensingError) as bad:
            load_settings(
                {"LICENSING_STORAGE": f"AccountKey={AZURITE_KEY}", "ALERT_TEAMS_WEBHOOK_URL": "ftp://x?sig=1"}
            )
        texts["exceptions"] += _exception_texts(bad.value)
        texts["telemetry"] = _otel_texts(otel)
        yield texts
    finally:
        link.down()


def test_no_secret_in_exceptions_reports_store_or_telemetry(faulty_runs: dict[str, list[str]]) -> None:
    assert faulty_runs["reports"] and faulty_runs["telemetry"] and faulty_runs["exceptions"]
    assert _leaks(faulty_runs) == []


def test_no_secret_in_log_lines_of_our_code_and_the_azure_sdks(
    faulty_runs: dict[str, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    records = caplog.get_records("setup")  # the runs happen in the fixture
    lines = [f"{r.name}: {r.getMessage()}" for r in records if not r.name.startswith(("httpx", "httpcore"))]
    assert any(line.startswith("licensing") for line in lines) and any(line.startswith("azure") for line in lines)
    assert _leaks({"logs": lines}) == []


def test_no_secret_in_any_log_line(faulty_runs: dict[str, list[str]], caplog: pytest.LogCaptureFixture) -> None:
    lines = [f"{r.name}: {r.getMessage()}" for r in caplog.get_records("setup")]
    assert len(lines) > 100
    assert _leaks({"logs": lines}) == []
