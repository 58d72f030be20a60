"""licensing.telemetry helpers against the SDK's in-memory exporter and metric reader (conftest ``otel``)."""

from __future__ import annotations

import logging
import uuid

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from licensing import telemetry
from licensing.model import AuditReport, Finding, FindingKind, RunInfo, RunStatus, Scope, Severity, SkuSummary, Trigger
from tests.factories import finding, run_info, sku_summary

GUID = "0b5c3e2a-1111-2222-3333-444455556666"
GUID2 = "c7df2760-2c81-4ef7-b578-5b5392b571df"
WEBHOOK = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig=SIGSECRET123"
CONN = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=KEYSECRET456==;EndpointSuffix=core.windows.net"
UPN = "alice.smith@contoso.onmicrosoft.com"


def unique(prefix: str) -> str:
    """Letters only: a segment with several digits would be templated as an id."""
    return prefix + uuid.uuid4().hex[:10].translate(str.maketrans("0123456789", "ghijklmnop"))


# ---------------------------------------------------------------- route templates


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"/v1.0/groups/{GUID}/members/microsoft.graph.user?$select=id,displayName,userPrincipalName&$top=999",
            "/groups/{id}/members/microsoft.graph.user",
        ),
        (f"/groups/{GUID}/members/microsoft.graph.group?$select=id", "/groups/{id}/members/microsoft.graph.group"),
        (
            "https://graph.microsoft.com/v1.0/users?$select=id,assignedLicenses,licenseAssignmentStates&$top=999"
            "&$skiptoken=RFNwdAIAAQAAACA6YWxpY2VAY29udG9zby5jb20pVXNlcl8",
            "/users",
        ),
        (
            f"https://graph.microsoft.us/beta/groups/{GUID}/transitiveMembers/$count",
            "/groups/{id}/transitiveMembers/$count",
        ),
        (f"/groups/{GUID}/membersWithLicenseErrors?$select=id", "/groups/{id}/membersWithLicenseErrors"),
        ("/groups?$filter=assignedLicenses/$count ne 0&$count=true&$select=id,displayName", "/groups"),
        (f"/users/{UPN}/sendMail", "/users/{id}/sendMail"),
        ("/users/alice_fabrikam.com%23EXT%23@contoso.onmicrosoft.com/licenseDetails", "/users/{id}/licenseDetails"),
        (f"/users/{GUID}/licenseDetails", "/users/{id}/licenseDetails"),
        (f"/users/{GUID}/licenseDetails/ZtJ3aW5kb3dzQmFzZTEyMzQ1Njc4", "/users/{id}/licenseDetails/{id}"),
        (f"/subscribedSkus/{GUID}_{GUID2}", "/subscribedSkus/{id}"),
        ("/subscribedSkus?$select=skuId,skuPartNumber,prepaidUnits,consumedUnits", "/subscribedSkus"),
        (f"/directory/subscriptions/{GUID2}", "/directory/subscriptions/{id}"),
        ("/directory/subscriptions", "/directory/subscriptions"),
        ("/organization?$select=id,displayName", "/organization"),
        (f"/organization/{GUID}", "/organization/{id}"),
        ("/$batch", "/$batch"),
        ("/v1.0/$batch", "/$batch"),
        (f"/groups/{GUID}/members/{GUID2}/$ref", "/groups/{id}/members/{id}/$ref"),
        ("/users(userPrincipalName='alice@contoso.com')", "/users({key})"),
        ("/groups/delta()?$deltatoken=abcdef0123456789", "/groups/delta()"),
        ("/users/microsoft.graph.delta()", "/users/microsoft.graph.delta()"),
        ("/me/memberOf/microsoft.graph.group", "/me/memberOf/microsoft.graph.group"),
        ("/users/alice", "/users/{id}"),
        ("/groups/12345678", "/groups/{id}"),
        ("/applications/some-app-id/owners", "/applications/{id}/owners"),
        ("/v1.0/users/4f1c2d3e4f5a6b7c8d9e/memberOf", "/users/{id}/memberOf"),
        ("/groups/{id}/members", "/groups/{id}/members"),
        ("/users/{id}/sendMail", "/users/{id}/sendMail"),
        ("", "/"),
        ("https://graph.microsoft.com/v1.0/users#fragment", "/users"),
    ],
)
def test_route_template_real_graph_paths(path: str, expected: str) -> None:
    assert telemetry.route_template(path) == expected


@pytest.mark.parametrize(
    "path",
    [
        f"/v1.0/groups/{GUID}/members/microsoft.graph.user?$select=id",
        f"/users/{UPN}/sendMail",
        "/users(userPrincipalName='bob@contoso.com')",
        f"/subscribedSkus/{GUID}_{GUID2}",
    ],
)
def test_route_template_is_idempotent_and_never_keeps_ids(path: str) -> None:
    once = telemetry.route_template(path)
    assert telemetry.route_template(once) == once
    for leak in (GUID, GUID2, "@", "contoso", "?", "$select"):
        assert leak not in once


# ---------------------------------------------------------------- spans


def _run(**overrides: object) -> RunInfo:
    fields: dict[str, object] = {
        "id": unique("run-"),
        "tenant_id": GUID,
        "scope": Scope.GROUP,
        "scope_id": GUID2,
        "request_id": "msg-42",
        "requested_by": UPN,
    }
    return run_info(**{**fields, **overrides})


def test_run_span_sets_run_attributes_and_never_requested_by(otel) -> None:
    run = _run()
    with telemetry.run_span(run) as current:
        assert current.is_recording()
        with telemetry.span("audit.evaluate", {"run.id": run.id}):
            pass
    (run_span,) = otel.spans("audit.run")
    (phase,) = otel.spans("audit.evaluate")
    assert dict(run_span.attributes) == {
        "run.id": run.id,
        "run.trigger": "queue",
        "run.scope": "group",
        "tenant.id": GUID,
        "run.scope_id": GUID2,
        "run.request_id": "msg-42",
    }
    assert phase.parent is not None and phase.parent.span_id == run_span.context.span_id
    assert run_span.status.status_code is StatusCode.UNSET
    assert UPN not in str(run_span.to_json())


def test_run_span_records_a_scrubbed_exception_and_fails(otel) -> None:
    run = _run(scope=Scope.TENANT, scope_id=None, request_id=None)
    with pytest.raises(RuntimeError), telemetry.run_span(run):
        raise RuntimeError(f"post to {WEBHOOK} for {UPN} failed with {CONN} and Bearer eyJhbGciOiJSUzI1NiJ9.abc.def")
    (failed,) = otel.spans("audit.run")
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description.startswith("RuntimeError: post to https://prod-00.westeurope.logic.azure.com")
    (event,) = [e for e in failed.events if e.name == "exception"]
    assert event.attributes["exception.type"] == "builtins.RuntimeError"
    dumped = failed.to_json()
    for secret in ("SIGSECRET123", "KEYSECRET456", UPN, "eyJhbGciOiJSUzI1NiJ9"):
        assert secret not in dumped
    assert "run.scope_id" not in failed.attributes and "run.request_id" not in failed.attributes


def test_set_run_outcome_puts_status_and_counts_on_the_run_span(otel) -> None:
    run = _run()
    report = AuditReport(
        run=RunInfo(
            **{
                **{f: getattr(run, f) for f in run.__slots__},  # type: ignore[attr-defined]
                "status": RunStatus.FAILED,
                "errors": (f"Teams webhook {WEBHOOK} refused",),
                "graph_requests": 12,
                "graph_throttled": 2,
                "resource_units": 7.0,
            }
        ),
        findings=(_finding(FindingKind.SEAT_LOW, Severity.WARNING),),
    )
    with telemetry.run_span(run):
        telemetry.set_run_outcome(report)
    (s,) = otel.spans("audit.run")
    assert s.attributes["run.status"] == "failed"
    assert s.attributes["run.findings"] == 1
    assert s.attributes["graph.requests"] == 12
    assert s.attributes["graph.throttled"] == 2
    assert s.attributes["graph.resource_units"] == 7.0
    assert s.status.status_code is StatusCode.ERROR
    assert "SIGSECRET123" not in s.status.description


def test_span_records_exception_of_a_phase(otel) -> None:
    with pytest.raises(ValueError, match="boom"), telemetry.span("audit.store", {"run.id": "r1"}):
        raise ValueError("boom")
    (s,) = otel.spans("audit.store")
    assert s.status.status_code is StatusCode.ERROR
    assert [e.name for e in s.events] == ["exception"]


# ---------------------------------------------------------------- Graph


def test_graph_request_counts_exchanges_throttling_and_resource_units(otel) -> None:
    """(The graph_span aggregate that used to wrap these was never used by the client and is gone.)"""
    route = "/" + unique("telemetrytest")
    before_requests = otel.points("graph.requests")
    telemetry.graph_request("GET", f"{route}/{{id}}", 429, throttled=True, resource_units=0, duration_s=0.01)
    telemetry.graph_request("GET", f"{route}/{{id}}", 503, throttled=False, resource_units=0, duration_s=0.02)
    telemetry.graph_request("GET", f"{route}/{{id}}", 200, throttled=False, resource_units=3, duration_s=0.03)
    assert [s.kind for s in otel.spans("graph.request")] == [SpanKind.CLIENT] * 3

    key_429 = frozenset(
        {"http.request.method": "GET", "graph.route": f"{route}/{{id}}", "http.response.status_code": 429}.items()
    )
    assert otel.points("graph.requests")[key_429] == 1
    assert key_429 not in before_requests
    assert otel.points("graph.throttled") == {**otel.points("graph.throttled"), key_429: 1}
    assert otel.points("graph.resource_units")[frozenset({"graph.route": f"{route}/{{id}}"}.items())] == 3
    key_200 = frozenset(
        {"http.request.method": "GET", "graph.route": f"{route}/{{id}}", "http.response.status_code": 200}.items()
    )
    assert otel.points("graph.request.duration")[key_200] == 1  # one histogram sample


def test_graph_request_without_graph_span_records_a_span_per_exchange(otel) -> None:
    route = "/" + unique("telemetrytest")
    with telemetry.span("audit.read"):
        telemetry.graph_request(
            "GET", f"/users/{UPN}/licenseDetails", 429, throttled=True, resource_units=0, duration_s=0.5
        )
        telemetry.graph_request("GET", route, 200, throttled=False, resource_units=2, duration_s=0.25)
    throttled, ok = otel.spans("graph.request")
    (parent,) = otel.spans("audit.read")
    assert throttled.attributes["graph.route"] == "/users/{id}/licenseDetails"
    assert throttled.attributes["graph.throttled"] == 1
    assert throttled.status.status_code is StatusCode.ERROR
    assert ok.parent is not None and ok.parent.span_id == parent.context.span_id
    assert ok.attributes["graph.resource_units"] == 2.0
    assert (ok.end_time - ok.start_time) == pytest.approx(0.25e9, rel=0.01)
    assert UPN not in throttled.to_json()


# ---------------------------------------------------------------- alerts, runs


def test_delivery_counter_and_outbox_gauge(otel) -> None:
    channel = unique("chan")
    with telemetry.span("audit.alert"):
        telemetry.delivery(channel, "failed")
        telemetry.delivery(channel, "queued")
        telemetry.delivery(channel, "failed")
    telemetry.outbox_depth(channel, 3)
    telemetry.outbox_depth(channel, 1)
    deliveries = otel.points("alerts.deliveries")
    assert deliveries[frozenset({"alert.channel": channel, "alert.outcome": "failed"}.items())] == 2
    assert deliveries[frozenset({"alert.channel": channel, "alert.outcome": "queued"}.items())] == 1
    assert otel.points("alerts.outbox.depth")[frozenset({"alert.channel": channel}.items())] == 1
    (s,) = otel.spans("audit.alert")
    assert [e.name for e in s.events] == ["alert.delivery"] * 3


def test_a_channel_enum_and_its_name_are_one_series_of_plain_strings(otel) -> None:
    """The notifier passes Channel members, other callers strings: one series per channel, exported as text."""
    from licensing.model import Channel

    def teams_failed() -> list[tuple[dict, float]]:
        data = otel.reader.get_metrics_data()
        return [
            (dict(p.attributes), p.value)
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == "alerts.deliveries"
            for p in m.data.data_points
            if p.attributes.get("alert.outcome") == "failed" and p.attributes.get("alert.channel") == "teams"
        ]

    before = sum(v for _, v in teams_failed())
    telemetry.delivery(Channel.TEAMS, "failed")
    telemetry.delivery("teams", "failed")
    series = teams_failed()
    assert len(series) == 1 and sum(v for _, v in series) - before == 2
    assert all(type(a["alert.channel"]) is str for a, _ in series)


def _finding(kind: FindingKind, severity: Severity) -> Finding:
    return finding(kind=kind.value, severity=severity, message="m", user_name="Alice Smith")


def _sku(part: str, enabled: int, consumed: int, waiting: int) -> SkuSummary:
    return sku_summary(
        sku_id=str(uuid.uuid4()), sku_part_number=part, enabled=enabled, consumed=consumed,
        available=enabled - consumed, group_assigned_users=consumed, waiting_users=waiting, assigned_by_groups=(GUID,),
    )  # fmt: skip


def test_run_finished_gauges_per_sku_findings_per_kind_and_run_counts(otel) -> None:
    part_a, part_b = unique("SKUA_"), unique("SKUB_")
    trigger_key = frozenset({"run.trigger": "demo", "run.scope": "tenant", "run.status": "succeeded"}.items())
    runs_before = otel.points("licensing.runs").get(trigger_key, 0)
    first = AuditReport(
        run=_run(trigger=Trigger.DEMO, scope=Scope.TENANT, status=RunStatus.SUCCEEDED),
        skus=(_sku(part_a, 100, 98, 0), _sku(part_b, 10, 12, 4)),
        findings=(
            _finding(FindingKind.B2B_MEMBER, Severity.WARNING),
            _finding(FindingKind.B2B_MEMBER, Severity.WARNING),
            _finding(FindingKind.SEAT_SHORTAGE, Severity.CRITICAL),
        ),
    )
    telemetry.run_finished(first, 12.5)
    free = otel.points("licensing.sku.free_seats")
    waiting = otel.points("licensing.sku.waiting_users")
    assert free[frozenset({"licensing.sku": part_a}.items())] == 2
    assert free[frozenset({"licensing.sku": part_b}.items())] == -2
    assert waiting[frozenset({"licensing.sku": part_b}.items())] == 4
    findings = otel.points("licensing.findings")
    b2b = frozenset({"finding.kind": "b2b_member", "finding.severity": "warning"}.items())
    shortage = frozenset({"finding.kind": "seat_shortage", "finding.severity": "critical"}.items())
    assert findings[b2b] == 2 and findings[shortage] == 1
    assert otel.points("licensing.runs")[trigger_key] == runs_before + 1
    assert otel.points("licensing.run.duration")[trigger_key] >= 1

    # The next tenant run has no B2B finding any more: the gauge must drop to 0, not keep saying 2.
    second = AuditReport(
        run=_run(trigger=Trigger.DEMO, scope=Scope.TENANT, status=RunStatus.SUCCEEDED),
        skus=(_sku(part_a, 100, 90, 0),),
        findings=(_finding(FindingKind.SEAT_SHORTAGE, Severity.CRITICAL),),
    )
    telemetry.run_finished(second, 3.0)
    findings = otel.points("licensing.findings")
    assert findings[b2b] == 0 and findings[shortage] == 1
    assert otel.points("licensing.sku.free_seats")[frozenset({"licensing.sku": part_a}.items())] == 10

    # A scoped run sees part of the tenant: it does not touch the findings gauges.
    scoped = AuditReport(run=_run(scope=Scope.GROUP, status=RunStatus.SUCCEEDED), findings=())
    telemetry.run_finished(scoped, 1.0)
    assert otel.points("licensing.findings")[shortage] == 1


# ---------------------------------------------------------------- logs


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lines: list[str] = []
        self.setFormatter(telemetry.CorrelatingFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.lines.append(self.format(record))


@pytest.fixture
def captured() -> object:
    handler = _Capture()
    telemetry.install_log_filters(handler)
    telemetry.install_log_filters(handler)  # twice is harmless
    logger = logging.getLogger("licensing.test_telemetry")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)


def test_log_records_carry_trace_and_span_ids(otel, captured: _Capture) -> None:
    logger = logging.getLogger("licensing.test_telemetry")
    assert len(captured.filters) == 2
    logger.info("outside any span")
    with telemetry.span("audit.read") as current:
        logger.info("inside %s", "the read")
        ctx = current.get_span_context()
    outside, inside = captured.records
    assert outside.trace_id == "" and outside.span_id == ""  # type: ignore[attr-defined]
    assert inside.trace_id == trace.format_trace_id(ctx.trace_id)  # type: ignore[attr-defined]
    assert inside.span_id == trace.format_span_id(ctx.span_id)  # type: ignore[attr-defined]
    assert f"[trace={inside.trace_id} span={inside.span_id}] inside the read" in captured.lines[1]  # type: ignore[attr-defined]


def test_formatter_alone_fills_ids_when_no_filter_ran() -> None:
    record = logging.LogRecord("licensing.x", logging.INFO, __file__, 1, "plain", None, None)
    assert "[trace= span=] plain" in telemetry.CorrelatingFormatter().format(record)


def test_secret_redacting_filter_scrubs_message_args_and_traceback(captured: _Capture) -> None:
    logger = logging.getLogger("licensing.test_telemetry")
    logger.warning("posting to %s failed", WEBHOOK)
    logger.error("storage %s", CONN)
    logger.info("token Bearer eyJhbGciOiJSUzI1NiJ9.payload.sig for %s", UPN)
    logger.info("%d groups, %d users", 3, 7)
    try:
        raise RuntimeError(f"upstream said {WEBHOOK}")
    except RuntimeError:
        logger.exception("delivery failed")
    text = "\n".join(captured.lines)
    for secret in ("SIGSECRET123", "KEYSECRET456", "eyJhbGciOiJSUzI1NiJ9", UPN):
        assert secret not in text
    assert (
        "posting to https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?… failed"
        in text
    )
    assert "AccountKey=***" in text
    assert "<address>" in text
    assert "3 groups, 7 users" in text
    assert "Traceback" in text and "RuntimeError: upstream said" in text


def test_secret_redacting_filter_survives_a_broken_format_string(captured: _Capture) -> None:
    logging.getLogger("licensing.test_telemetry").info("%s and %s", "only one")  # noqa: PLE1206 - on purpose
    assert captured.records[-1].getMessage() == "%s and %s"


def test_scrub_bounds_length_and_keeps_plain_text() -> None:
    assert telemetry.scrub("nothing secret here") == "nothing secret here"
    assert len(telemetry.scrub("x" * 5000)) == 1000
    assert telemetry.scrub(UPN, mask_addresses=False) == UPN


def test_quiet_library_spans_swaps_the_graph_sdks_tracers_for_no_op_ones(otel) -> None:
    import importlib

    from kiota_http import httpx_request_adapter
    from kiota_http.middleware import middleware

    importlib.import_module("kiota_abstractions.request_information")
    importlib.import_module("kiota_authentication_azure.azure_identity_access_token_provider")
    assert telemetry.quiet_library_spans() == 4
    assert isinstance(httpx_request_adapter.tracer, trace.NoOpTracer)
    assert isinstance(middleware.tracer, trace.NoOpTracer)
    with middleware.tracer.start_as_current_span("RedirectHandler_send"):
        pass
    assert otel.spans() == []
