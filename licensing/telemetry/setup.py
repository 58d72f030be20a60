"""Installing the OpenTelemetry SDK where no host does (CLI, demo): OTLP, console, or Azure Monitor; once."""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import metrics, trace

from licensing.errors import ConfigurationError
from licensing.telemetry.logs import CorrelatingFormatter, _OTelLogHandler, install_log_filters
from licensing.telemetry.spans import SCOPE

if TYPE_CHECKING:
    from licensing.settings import Settings

__all__ = ["configure"]

log = logging.getLogger("licensing.telemetry")


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


def configure(
    settings: Settings, *, verbose: bool = False, traces: bool = False, service_name: str = "licensing-audit"
) -> None:
    """Install SDK providers and exporters where no host did. Idempotent: a second call does nothing.

    * A provider already installed (by the Functions worker, the distro, a test) is never replaced.
    * In Azure without an OTLP endpoint: the worker exports (``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY``);
      if it did not, the Application Insights distro is configured when it is installed.
    * Elsewhere: OTLP/http when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; with ``verbose`` correlated logs and the
      metrics at exit on stderr, and one line per span only when ``traces`` asks (a span per Graph request is
      hundreds of KB on a large tenant: traces go to the exporter, not the console, unless asked); nothing otherwise.
      The log filters (trace ids, redaction) go on the root handlers in every case.

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
            _install_sdk(endpoint, verbose=verbose, traces=traces, service_name=service_name)
        install_log_filters()
        _configured = True


def _install_sdk(endpoint: str | None, *, verbose: bool, traces: bool, service_name: str) -> None:
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
        if traces:
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
    logging.getLogger(SCOPE).setLevel(logging.DEBUG if verbose else logging.INFO)
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
