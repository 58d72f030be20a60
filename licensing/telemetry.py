"""OpenTelemetry traces, metrics and logs of the audit, through the OTel API (exporters configured where no host does).

Everything here goes through the OpenTelemetry *API*: with no SDK provider installed every call
is a cheap no-op. Who installs the SDK providers:

* in Azure, the Functions Python worker (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``
  makes it call ``configure_azure_monitor()`` before the app is imported); :func:`configure`
  sees the installed provider and leaves it alone;
* the CLI and the demo, through :func:`configure`: OTLP (http/protobuf) when
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, console (stderr) with ``--verbose``, nothing otherwise;
* tests, which install in-memory providers first (``configure`` never overrides a provider).

Attributes, span events and log records never carry user names, UPNs, tokens, connection
strings or webhook URLs: routes are templated (:func:`route_template`), exception texts are
redacted, and :class:`SecretRedactingFilter` scrubs log records. See docs/observability.md.
"""

from __future__ import annotations

import importlib
import logging
import re
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from opentelemetry import metrics, trace

from licensing.errors import ConfigurationError, redact_text

if TYPE_CHECKING:
    from licensing.model import AuditReport, RunInfo
    from licensing.settings import Settings

__all__ = [
    "CorrelatingFormatter",
    "GraphCall",
    "SecretRedactingFilter",
    "TraceContextFilter",
    "configure",
    "delivery",
    "graph_request",
    "graph_span",
    "install_log_filters",
    "outbox_depth",
    "quiet_library_spans",
    "route_template",
    "run_finished",
    "run_span",
    "scrub",
    "set_run_outcome",
    "span",
    "tracer",
]

_SCOPE: Final = "licensing"
log = logging.getLogger(__name__)


def tracer() -> trace.Tracer:
    return trace.get_tracer(_SCOPE)


# ---------------------------------------------------------------- scrubbing


_ADDRESS = re.compile(r"[\w.%+'#!$&*=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MAX_TEXT: Final = 1000


def scrub(text: str, *, mask_addresses: bool = True) -> str:
    """Text safe for telemetry: credentials redacted, e-mail-like addresses (UPNs) masked, length bounded."""
    text = redact_text(text)
    if mask_addresses:
        text = _ADDRESS.sub("<address>", text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def _record_error(current: trace.Span, exc: BaseException) -> None:
    """Like ``Span.record_exception`` but with the message and stack trace scrubbed (library messages may hold URLs)."""
    message = scrub(str(exc))
    stack = scrub("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    current.add_event(
        "exception",
        {
            "exception.type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "exception.message": message,
            "exception.stacktrace": stack,
        },
    )
    current.set_status(trace.Status(trace.StatusCode.ERROR, f"{type(exc).__name__}: {message}"))


# Kiota (the msgraph-sdk's HTTP layer) traces every request with about nine spans whose attributes
# carry the full URL (group ids, $select, skip tokens, the mailbox of sendMail). Our graph.request
# span says what matters with a templated route, so their tracers are swapped for no-op ones.
_LIBRARY_TRACERS: Final = (
    "kiota_abstractions.request_information",
    "kiota_authentication_azure.azure_identity_access_token_provider",
    "kiota_http.httpx_request_adapter",
    "kiota_http.middleware.middleware",
)
_quieted = False


def quiet_library_spans() -> int:
    """Silence the Graph SDK's own spans (full URLs) in the modules already imported; returns how many."""
    global _quieted  # noqa: PLW0603 - once per process
    count = 0
    for name in _LIBRARY_TRACERS:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "tracer"):
            if not isinstance(getattr(module, "tracer", None), trace.NoOpTracer):
                setattr(module, "tracer", trace.NoOpTracer())  # noqa: B010 - a library's module global
            count += 1
    _quieted = count == len(_LIBRARY_TRACERS)
    return count


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
    """A span around a phase; attributes must never carry names, UPNs, tokens or URLs with secrets.

    An exception leaving the block is recorded (scrubbed) and marks the span as failed.
    """
    if not _quieted:  # the Graph SDK is imported lazily: catch it before its first request is traced
        quiet_library_spans()
    with tracer().start_as_current_span(
        name, attributes=dict(attributes or {}), record_exception=False, set_status_on_exception=False
    ) as current:
        try:
            yield current
        except BaseException as exc:
            _record_error(current, exc)
            raise


# ---------------------------------------------------------------- runs


def _run_attributes(run: RunInfo) -> dict[str, str]:
    attrs = {
        "run.id": run.id,
        "run.trigger": str(run.trigger),
        "run.scope": str(run.scope),
        "tenant.id": run.tenant_id,
    }
    # The scope id is a group GUID or a SKU id / part number: never a person. requested_by is
    # free text (often a UPN) and is deliberately left out.
    if run.scope_id:
        attrs["run.scope_id"] = run.scope_id
    if run.request_id:
        attrs["run.request_id"] = scrub(run.request_id)
    return attrs


@contextmanager
def run_span(run: RunInfo) -> Iterator[trace.Span]:
    """The ``audit.run`` span: run id, trigger, scope, tenant id; failed (with the scrubbed error) on exception.

    Call :func:`set_run_outcome` inside the block once the report is known, to add status and counts.
    """
    with span("audit.run", _run_attributes(run)) as current:
        yield current


def set_run_outcome(report: AuditReport, current: trace.Span | None = None) -> None:
    """Put the outcome of a run on its span (the current one by default): status, counts, Graph figures."""
    target = current or trace.get_current_span()
    run = report.run
    target.set_attributes(
        {
            "run.status": str(run.status),
            "run.findings": len(report.findings),
            "run.skus": len(report.skus),
            "run.groups": len(report.groups),
            "run.errors": len(run.errors),
            "graph.requests": run.graph_requests,
            "graph.throttled": run.graph_throttled,
            "graph.resource_units": float(run.resource_units),
        }
    )
    if str(run.status) == "failed":
        target.set_status(trace.Status(trace.StatusCode.ERROR, scrub(run.errors[0]) if run.errors else "failed"))


# ---------------------------------------------------------------- Graph routes


_GUID_IN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_VERSION = re.compile(r"^(v\d+(\.\d+)?|beta)$", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_QUALIFIED = re.compile(r"^microsoft\.graph\.[A-Za-z][A-Za-z0-9.]*$")
_CALL = re.compile(r"^([A-Za-z][A-Za-z0-9.]*)\((.*)\)$")
# Collections whose next segment is a key (an id, a UPN, a mail address) rather than a navigation.
_KEYED: Final = frozenset(
    {
        "administrativeunits",
        "applications",
        "contacts",
        "devices",
        "directoryobjects",
        "directoryroles",
        "groups",
        "licensedetails",
        "mailfolders",
        "memberof",
        "members",
        "messages",
        "organization",
        "owners",
        "serviceprincipals",
        "subscribedskus",
        "subscriptions",
        "transitivememberof",
        "transitivemembers",
        "users",
    }
)


def _template_segment(segment: str, previous: str | None) -> str:
    if not segment:
        return segment
    if segment.startswith("$") and _IDENTIFIER.match(segment[1:]):  # $batch, $count, $ref, $value
        return segment
    if _QUALIFIED.match(segment):  # casts and bound actions: microsoft.graph.user
        return segment
    call = _CALL.match(segment)
    if call:  # users(userPrincipalName='…') or delta(token='…'): keep the name, drop the arguments
        name, args = call.groups()
        return f"{name}({{key}})" if args else segment
    if _GUID_IN.search(segment) or "@" in segment or "%" in segment or "'" in segment:
        return "{id}"
    if previous is not None and previous.lower() in _KEYED:
        # After a keyed collection anything but a keyword is a key (an alternate id, a nickname).
        return "{id}"
    if not _IDENTIFIER.match(segment) or sum(c.isdigit() for c in segment) >= 4:
        return "{id}"
    return segment


@lru_cache(maxsize=1024)
def route_template(path: str) -> str:
    """``/v1.0/groups/0b5c…/members/microsoft.graph.user?$select=…`` -> ``/groups/{id}/members/microsoft.graph.user``.

    Accepts a path, a path with query, or an absolute URL (a nextLink). Version prefix, query and
    fragment are dropped; GUIDs, UPNs, mail addresses, key segments and function arguments are
    replaced, so the result can be an attribute of every Graph span and metric point.
    """
    try:
        parts = urlsplit(path.strip())
        raw = parts.path
    except ValueError:
        return "{invalid}"
    segments = [s for s in raw.split("/") if s]
    if segments and _VERSION.match(segments[0]):
        segments = segments[1:]
    out: list[str] = []
    previous: str | None = None
    for segment in segments:
        templated = _template_segment(segment, previous)
        out.append(templated)
        previous = segment if templated == segment else None
    return "/" + "/".join(out)


# ---------------------------------------------------------------- metrics


def _meter() -> metrics.Meter:
    return metrics.get_meter(_SCOPE)


class _Instruments:
    """Created lazily, and again if the meter provider changes (tests install their own)."""

    def __init__(self) -> None:
        meter = _meter()
        self.provider = metrics.get_meter_provider()
        self.graph_requests = meter.create_counter(
            "graph.requests", unit="{request}", description="HTTP exchanges with Microsoft Graph, retries included"
        )
        self.graph_throttled = meter.create_counter(
            "graph.throttled", unit="{request}", description="Graph answers 429 (throttled)"
        )
        self.graph_ru = meter.create_counter(
            "graph.resource_units", unit="{RU}", description="Graph resource units charged (x-ms-resource-unit)"
        )
        self.graph_duration = meter.create_histogram(
            "graph.request.duration", unit="s", description="Duration of one Graph exchange"
        )
        self.deliveries = meter.create_counter(
            "alerts.deliveries", unit="{delivery}", description="Alert delivery attempts by channel and outcome"
        )
        self.outbox = meter.create_gauge(
            "alerts.outbox.depth", unit="{item}", description="Notifications waiting in the outbox, by channel"
        )
        self.free_seats = meter.create_gauge(
            "licensing.sku.free_seats", unit="{seat}", description="Enabled minus consumed seats, by SKU"
        )
        self.waiting = meter.create_gauge(
            "licensing.sku.waiting_users", unit="{user}", description="Users waiting for a seat (CountViolation)"
        )
        self.findings = meter.create_gauge(
            "licensing.findings", unit="{finding}", description="Findings of the last tenant run by kind and severity"
        )
        self.run_duration = meter.create_histogram(
            "licensing.run.duration", unit="s", description="Duration of an audit run"
        )
        self.runs = meter.create_counter(
            "licensing.runs", unit="{run}", description="Audit runs by trigger, scope and status"
        )
        # (kind, severity) pairs reported before: a kind that disappears must go back to 0, not stay stale.
        self.finding_keys: set[tuple[str, str]] = set()


_instruments: _Instruments | None = None
_instruments_lock = threading.Lock()


def _get() -> _Instruments:
    global _instruments  # noqa: PLW0603 - one set of instruments per meter provider
    current = _instruments
    if current is None or current.provider is not metrics.get_meter_provider():
        with _instruments_lock:
            if _instruments is None or _instruments.provider is not metrics.get_meter_provider():
                _instruments = _Instruments()
            current = _instruments
    return current


# ---------------------------------------------------------------- Graph calls


@dataclass(slots=True)
class GraphCall:
    """One logical Graph request (with its retries) inside a ``graph.request`` span; see :func:`graph_span`."""

    span: trace.Span
    exchanges: int = 0
    throttled: int = 0
    resource_units: float = 0.0
    status: int | None = None
    retry_after_s: list[float] = field(default_factory=list)

    def record(self, status: int | None, *, throttled: bool, resource_units: float) -> None:
        self.exchanges += 1
        self.throttled += throttled
        self.resource_units += resource_units
        self.status = status

    def finish(self) -> None:
        attrs: dict[str, int | float] = {
            "graph.attempts": self.exchanges,
            "graph.retries": max(0, self.exchanges - 1),
            "graph.throttled": self.throttled,
            "graph.resource_units": self.resource_units,
        }
        if self.status is not None:
            attrs["http.response.status_code"] = self.status
        self.span.set_attributes(attrs)
        if self.status is not None and self.status >= 400:
            self.span.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {self.status}"))


_current_call: ContextVar[GraphCall | None] = ContextVar("licensing_graph_call", default=None)


@contextmanager
def graph_span(method: str, route: str) -> Iterator[GraphCall]:
    """A ``graph.request`` client span around one logical request; every :func:`graph_request` inside counts on it.

    ``route`` may be a template or a raw path: it is templated again (idempotent) so no id leaks.
    """
    template = route_template(route)
    if not _quieted:
        quiet_library_spans()
    with tracer().start_as_current_span(
        "graph.request",
        kind=trace.SpanKind.CLIENT,
        attributes={"http.request.method": method.upper(), "graph.route": template},
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        call = GraphCall(current)
        token = _current_call.set(call)
        try:
            yield call
        except BaseException as exc:
            call.finish()
            _record_error(current, exc)
            raise
        else:
            call.finish()
        finally:
            _current_call.reset(token)


def graph_request(
    method: str, route: str, status: int | None, *, throttled: bool, resource_units: float, duration_s: float
) -> None:
    """One HTTP exchange with Graph. ``route`` is a template without ids or query values."""
    template = route_template(route)  # idempotent on templates; a raw path must not leak its ids
    attrs: dict[str, str | int] = {
        "http.request.method": method.upper(),
        "graph.route": template,
        "http.response.status_code": status or 0,
    }
    i = _get()
    i.graph_requests.add(1, attrs)
    if throttled:
        i.graph_throttled.add(1, attrs)
    if resource_units:
        i.graph_ru.add(resource_units, {"graph.route": template})
    i.graph_duration.record(duration_s, attrs)
    call = _current_call.get()
    if call is not None:
        call.record(status, throttled=throttled, resource_units=resource_units)
        if status is None or status >= 300:  # what made the request retry, on its span's timeline
            call.span.add_event("graph.exchange", {"http.response.status_code": status or 0})
        return
    # No graph_span around this exchange: record it as a span of its own, after the fact.
    if not _quieted:
        quiet_library_spans()
    end = time.time_ns()
    exchange = tracer().start_span(
        "graph.request",
        kind=trace.SpanKind.CLIENT,
        start_time=end - int(max(duration_s, 0.0) * 1e9),
        attributes={
            **attrs,
            "graph.attempts": 1,
            "graph.throttled": int(throttled),
            "graph.resource_units": float(resource_units),
        },
    )
    if status is None or status >= 400:
        exchange.set_status(trace.Status(trace.StatusCode.ERROR, f"HTTP {status}" if status else "no response"))
    exchange.end(end_time=end)


# ---------------------------------------------------------------- alerts and runs


def delivery(channel: str, outcome: str) -> None:
    """An alert delivery attempt: outcome is ``delivered`` | ``failed`` | ``queued`` | ``replayed``."""
    attrs = {"alert.channel": channel, "alert.outcome": outcome}
    _get().deliveries.add(1, attrs)
    trace.get_current_span().add_event("alert.delivery", attrs)


def outbox_depth(channel: str, depth: int) -> None:
    _get().outbox.set(depth, {"alert.channel": channel})


def run_finished(report: AuditReport, duration_s: float) -> None:
    """Gauges per SKU and findings per kind/severity at the end of a run, its duration, and the run count."""
    i = _get()
    run = report.run
    for sku in report.skus:
        attrs = {"licensing.sku": sku.sku_part_number}
        i.free_seats.set(sku.available, attrs)
        i.waiting.set(sku.waiting_users, attrs)
    if str(run.scope) == "tenant":
        # A scoped run sees only part of the tenant: its counts would understate the open findings.
        counts: dict[tuple[str, str], int] = {}
        for finding in report.findings:
            key = (str(finding.kind), str(finding.severity))
            counts[key] = counts.get(key, 0) + 1
        for key in i.finding_keys - counts.keys():
            counts[key] = 0
        for (kind, severity), n in counts.items():
            i.findings.set(n, {"finding.kind": kind, "finding.severity": severity})
        i.finding_keys = {key for key, n in counts.items() if n} | i.finding_keys
    run_attrs = {"run.trigger": str(run.trigger), "run.scope": str(run.scope), "run.status": str(run.status)}
    i.run_duration.record(duration_s, run_attrs)
    i.runs.add(1, run_attrs)


# ---------------------------------------------------------------- logs


def _hex_ids() -> tuple[str, str]:
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return "", ""
    return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` / ``span_id`` (hex, empty outside a span) to every record; never drops one."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "trace_id", ""):
            record.trace_id, record.span_id = _hex_ids()
        return True


class SecretRedactingFilter(logging.Filter):
    """Belt and braces: :func:`licensing.errors.redact_text` (and address masking) over message, args, traceback."""

    def __init__(self, *, mask_addresses: bool = True) -> None:
        super().__init__()
        self.mask_addresses = mask_addresses

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            self._scrub(record)
        except Exception:  # a log filter must never raise: what could not be scrubbed is dropped
            record.msg, record.args = "<log record withheld: redaction failed>", None
            record.exc_info, record.exc_text = None, None
        return True

    def _scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the template, drop the arguments
            message = str(record.msg)
        clean = scrub(message, mask_addresses=self.mask_addresses) if message else message
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, mask_addresses=self.mask_addresses)


_DEFAULT_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s [trace=%(trace_id)s span=%(span_id)s] %(message)s"


class CorrelatingFormatter(logging.Formatter):
    """A formatter that shows the trace and span ids of the record (filled in when no filter did)."""

    def __init__(self, fmt: str = _DEFAULT_FORMAT, datefmt: str | None = None) -> None:
        super().__init__(fmt, datefmt)

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = _hex_ids()
        return super().format(record)


def install_log_filters(handler: logging.Handler | None = None, *, mask_addresses: bool = True) -> None:
    """Put the correlation and redaction filters on a handler, or on every handler of the root logger.

    Handler filters (not logger filters) see records propagated from every ``licensing.*`` logger.
    Installing twice is harmless.
    """
    handlers = [handler] if handler is not None else list(logging.getLogger().handlers)
    for h in handlers:
        if not any(isinstance(f, SecretRedactingFilter) for f in h.filters):
            h.addFilter(SecretRedactingFilter(mask_addresses=mask_addresses))
        if not any(isinstance(f, TraceContextFilter) for f in h.filters):
            h.addFilter(TraceContextFilter())


class _OTelLogHandler(logging.Handler):
    """Sends log records to the OpenTelemetry logs pipeline (the SDK's own handler is deprecated)."""

    def __init__(self, provider: Any, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self._logger = provider.get_logger(_SCOPE)

    def emit(self, record: logging.LogRecord) -> None:
        from opentelemetry._logs import SeverityNumber

        try:
            severity = SeverityNumber(_SEVERITIES.get(record.levelno, 0))
            attrs: dict[str, str | int] = {"code.function.name": record.funcName, "logger.name": record.name}
            if record.exc_text:
                attrs["exception.stacktrace"] = record.exc_text
            self._logger.emit(
                timestamp=int(record.created * 1e9),
                severity_number=severity,
                severity_text=record.levelname,
                body=record.getMessage(),
                attributes=attrs,
            )
        except Exception:
            self.handleError(record)


_SEVERITIES: Final = {
    logging.DEBUG: 5,  # SeverityNumber values of the OTel logs data model
    logging.INFO: 9,
    logging.WARNING: 13,
    logging.ERROR: 17,
    logging.CRITICAL: 21,
}


# ---------------------------------------------------------------- configuration


_configured = False
_configure_lock = threading.Lock()
_OTLP_PACKAGE: Final = "opentelemetry-exporter-otlp-proto-http"
_AZURE_PACKAGE: Final = "azure-monitor-opentelemetry"


def _tracer_provider_is_set() -> bool:
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def _meter_provider_is_set() -> bool:
    # The API hands out a private proxy until someone sets a provider; its class is the only way to tell.
    return type(metrics.get_meter_provider()).__name__ != "_ProxyMeterProvider"


def _logger_provider_is_set() -> bool:
    from opentelemetry import _logs

    return type(_logs.get_logger_provider()).__name__ != "ProxyLoggerProvider"


def _otlp_exporters(endpoint: str) -> tuple[Any, Any, Any]:
    """Imported only when asked for: the exporter pulls in protobuf and requests (slow, and optional)."""
    try:
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_ENDPOINT is set but {_OTLP_PACKAGE} is not installed: "
            f"pip install '{_OTLP_PACKAGE}>=1.30,<2' (or unset OTEL_EXPORTER_OTLP_ENDPOINT)"
        ) from exc
    base = endpoint.rstrip("/")
    # Explicit per-signal URLs, as the OTLP spec derives them from the base endpoint.
    return (
        OTLPSpanExporter(endpoint=f"{base}/v1/traces"),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics"),
        OTLPLogExporter(endpoint=f"{base}/v1/logs"),
    )


def _configure_azure_monitor(settings: Settings) -> None:
    """Inside Azure, when the worker did not set up the distro itself (see docs/observability.md)."""
    try:
        distro = importlib.import_module("azure.monitor.opentelemetry")
    except ImportError:
        log.warning(
            "APPLICATIONINSIGHTS_CONNECTION_STRING is set but %s is not installed: only the Functions host's "
            "own telemetry is exported; add %s to requirements.txt to export the audit's spans and metrics",
            _AZURE_PACKAGE,
            _AZURE_PACKAGE,
        )
        return
    secret = settings.applicationinsights_connection_string
    distro.configure_azure_monitor(connection_string=secret.reveal() if secret else None)


def configure(settings: Settings, *, verbose: bool = False, service_name: str = "licensing-audit") -> None:
    """Install SDK providers and exporters where no host did. Idempotent: a second call does nothing.

    * A provider already installed (by the Functions worker, the distro, a test) is never replaced.
    * In Azure without an OTLP endpoint: the worker exports (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``);
      if it did not, the Application Insights distro is configured when it is installed.
    * Elsewhere: OTLP/http when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set, console (stderr) when ``verbose``,
      nothing otherwise. The log filters (trace ids, redaction) go on the root handlers in every case.

    Raises ConfigurationError (one line) when an exporter that the settings ask for is not installed.
    """
    global _configured  # noqa: PLW0603 - process-wide, like the OTel providers themselves
    with _configure_lock:
        if _configured:
            return
        endpoint = settings.otel_exporter_otlp_endpoint
        if settings.in_azure and not endpoint:
            if not _tracer_provider_is_set() and settings.applicationinsights_connection_string:
                _configure_azure_monitor(settings)
            install_log_filters()
            _configured = True
            return
        # Whoever installed a provider (host, distro, test) owns telemetry: no second pipeline next to theirs.
        if (endpoint or verbose) and not (_tracer_provider_is_set() or _meter_provider_is_set()):
            _install_sdk(endpoint, verbose=verbose, service_name=service_name)
        install_log_filters()
        _configured = True


def _install_sdk(endpoint: str | None, *, verbose: bool, service_name: str) -> None:
    # Exporters first: a missing package must fail before any global state changes.
    otlp = _otlp_exporters(endpoint) if endpoint else None

    from opentelemetry.sdk.resources import Resource

    try:
        from importlib.metadata import version

        service_version = version("group-license-audit")
    except Exception:  # running from a source tree that is not installed
        service_version = "0"
    resource = Resource.create({"service.name": service_name, "service.version": service_version})

    if not _tracer_provider_is_set():
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

        tracer_provider = TracerProvider(resource=resource)
        if otlp:
            tracer_provider.add_span_processor(BatchSpanProcessor(otlp[0]))
        if verbose:
            tracer_provider.add_span_processor(
                SimpleSpanProcessor(ConsoleSpanExporter(out=sys.stderr, formatter=_one_line_span))
            )
        trace.set_tracer_provider(tracer_provider)

    if not _meter_provider_is_set():
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, PeriodicExportingMetricReader

        readers = []
        if otlp:
            readers.append(PeriodicExportingMetricReader(otlp[1], export_interval_millis=60_000))
        if verbose:
            # Printed once at exit (shutdown collects): a CLI run is shorter than any sensible interval.
            readers.append(
                PeriodicExportingMetricReader(
                    ConsoleMetricExporter(out=sys.stderr, formatter=_one_line_metrics),
                    export_interval_millis=3_600_000,
                )
            )
        metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=readers))

    root = logging.getLogger()
    logging.getLogger(_SCOPE).setLevel(logging.DEBUG if verbose else logging.INFO)
    if otlp and not _logger_provider_is_set():
        from opentelemetry import _logs
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(BatchLogRecordProcessor(otlp[2]))
        _logs.set_logger_provider(logger_provider)
        otel_handler = _OTelLogHandler(logger_provider, level=logging.INFO)
        install_log_filters(otel_handler)
        root.addHandler(otel_handler)
    if verbose:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(CorrelatingFormatter())
        install_log_filters(console)
        root.addHandler(console)


def _one_line_span(item: Any) -> str:
    return str(item.to_json(indent=None)) + "\n"


def _one_line_metrics(item: Any) -> str:
    return str(item.to_json(indent=None)) + "\n"
