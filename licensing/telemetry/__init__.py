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

from licensing.telemetry.logs import (
    CorrelatingFormatter,
    SecretRedactingFilter,
    TraceContextFilter,
    install_log_filters,
)
from licensing.telemetry.metrics import delivery, graph_request, outbox_depth, run_finished
from licensing.telemetry.redaction import route_template, scrub
from licensing.telemetry.setup import configure
from licensing.telemetry.spans import quiet_library_spans, run_span, set_run_outcome, span, tracer

__all__ = [
    "CorrelatingFormatter",
    "SecretRedactingFilter",
    "TraceContextFilter",
    "configure",
    "delivery",
    "graph_request",
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
