"""End to end: a real sandbox audit (one throttled Graph request, a Teams delivery that fails) seen through telemetry.

Checks what an operator would look at the morning after (the run span and its phases, Graph
request spans, throttling and delivery counters, seat gauges) and proves that no user name, UPN,
webhook URL or connection-string key reaches any exported span, metric point or log line.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import licensing.pipeline.run as audit
from licensing import telemetry
from licensing.alerts.notifier import MAYBE_MARK
from licensing.model import AuditRequest, Trigger
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import FaultRule, Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.settings import Secret, Settings

SIG = "SIGSECRETe2e0123"
ACCOUNT_KEY = "ACCOUNTKEYe2e0123=="
AI_KEY = "9f0c4f37-aaaa-bbbb-cccc-e2e000000001"


class _FailingWebhook(BaseHTTPRequestHandler):
    """A Teams Workflows endpoint that is down: every post gets 500."""

    posts = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).posts += 1
        self.send_response(500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingWebhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/workflows/e2e/triggers/manual/paths/invoke?api-version=1&sig={SIG}"
    finally:
        server.shutdown()
        server.server_close()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(telemetry.CorrelatingFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def test_sandbox_audit_telemetry_answers_what_happened_and_leaks_nothing(otel, webhook: str) -> None:
    tenant = generate_tenant(TenantSpec(seed=11, users=120, groups=14))
    faults = Faults(rules=(FaultRule("429", route="subscribedSkus", first=1, retry_after="0"),))
    lines = _Lines()
    telemetry.install_log_filters(lines)
    root = logging.getLogger()
    root.addHandler(lines)
    level = logging.getLogger("licensing").level
    logging.getLogger("licensing").setLevel(logging.DEBUG)

    throttled_before = sum(otel.points("graph.throttled").values())
    requests_before = sum(otel.points("graph.requests").values())
    failed_key = frozenset({"alert.channel": "teams", "alert.outcome": "failed"}.items())
    failed_before = otel.points("alerts.deliveries").get(failed_key, 0)
    posts_before = _FailingWebhook.posts
    try:
        with SandboxServer(tenant, faults) as server:
            settings = Settings(
                graph_base_url=server.base_url,
                alert_teams_webhook_url=Secret(webhook),
                applicationinsights_connection_string=Secret(f"InstrumentationKey={AI_KEY};IngestionEndpoint=x"),
            )

            async def run() -> Any:
                with telemetry.span("test.e2e"):
                    return await audit.run_audit(
                        AuditRequest(trigger=Trigger.DEMO, request_id=None), Runtime(settings, credential="none")
                    )

            outcome = asyncio.run(asyncio.wait_for(run(), timeout=120))
    finally:
        root.removeHandler(lines)
        logging.getLogger("licensing").setLevel(level)
    report = outcome.report

    # ---- traces: the run, its phases, and the Graph requests
    (run_span,) = otel.spans("audit.run")
    assert run_span.attributes["run.id"] == report.run.id
    assert run_span.attributes["tenant.id"] == report.run.tenant_id
    assert run_span.attributes["run.trigger"] == "demo"
    assert run_span.attributes["run.scope"] == "tenant"
    (outer,) = otel.spans("test.e2e")
    for phase in ("audit.read", "audit.evaluate", "audit.alert"):
        (phase_span,) = otel.spans(phase)
        assert phase_span.context.trace_id == outer.context.trace_id, phase
    for phase in ("audit.evaluate", "audit.alert"):
        (phase_span,) = otel.spans(phase)
        assert phase_span.parent is not None and phase_span.parent.span_id == run_span.context.span_id, phase

    graph_spans = otel.spans("graph.request")
    assert graph_spans, "no graph.request span: the Graph client should call telemetry.graph_request"
    routes = {s.attributes["graph.route"] for s in graph_spans}
    assert "/subscribedSkus" in routes
    assert all("{" in r or r.count("/") <= 2 for r in routes), routes
    sku_spans = [s for s in graph_spans if s.attributes["graph.route"] == "/subscribedSkus"]
    assert sum(int(s.attributes.get("graph.throttled", 0)) for s in sku_spans) == 1

    # ---- metrics
    assert sum(otel.points("graph.throttled").values()) - throttled_before == 1
    assert sum(otel.points("graph.requests").values()) - requests_before == report.run.graph_requests
    assert report.run.graph_throttled == 1
    # What a webhook 500 means: Teams Workflows may have accepted the post before failing, so the outcome is
    # unknown ("may have been delivered"): not retried in this run, counted as a failed delivery, exactly once.
    (failure,) = outcome.delivery.failed
    assert failure[0] == "teams" and failure[2].startswith(MAYBE_MARK)
    assert otel.points("alerts.deliveries").get(failed_key, 0) - failed_before == 1
    assert _FailingWebhook.posts - posts_before == 1
    free = otel.points("licensing.sku.free_seats")
    for sku in report.skus:
        assert free[frozenset({"licensing.sku": sku.sku_part_number}.items())] == sku.available
    findings = otel.points("licensing.findings")
    for finding in report.findings:
        key = frozenset({"finding.kind": finding.kind, "finding.severity": str(finding.severity)}.items())
        assert findings[key] == sum(
            1 for f in report.findings if f.kind == finding.kind and f.severity == finding.severity
        )

    # ---- nothing personal or secret anywhere in what is exported
    forbidden = {SIG, webhook, ACCOUNT_KEY, AI_KEY}
    for index in tenant.iter_users():
        display, _first, _last, upn = tenant.user_names(index)
        forbidden.add(upn)
        if len(display) >= 6:  # very short odd names would match by accident
            forbidden.add(display)
    exported: list[str] = []
    for s in otel.spans():
        exported.extend(v for value in s.attributes.values() for v in _strings(value))
        exported.extend(v for e in s.events for value in e.attributes.values() for v in _strings(value))
        exported.append(s.status.description or "")
        exported.append(s.name)
    data = otel.reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    exported.extend(v for value in (p.attributes or {}).values() for v in _strings(value))
    exported.extend(lines.lines)
    assert not [s.name for s in otel.spans() if "url.full" in s.attributes], "full request URLs in span attributes"
    assert not [t for t in exported if "$select" in t or "$skiptoken" in t], "query strings in telemetry"
    leaks = sorted({secret for secret in forbidden for text in exported if secret in text})
    assert leaks == [], f"exported telemetry contains: {leaks[:5]}"
