"""telemetry.configure(): idempotence, respect for installed providers, lazy exporters, real OTLP export.

OpenTelemetry's global providers can be set once per process, and this test session already set
in-memory ones (conftest): every case that needs a fresh process runs in a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from opentelemetry import metrics, trace

from licensing import telemetry
from licensing.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "APPLICATIONINSIGHTS_", "PYTHON_"))}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_configure_respects_the_installed_provider_and_is_idempotent(otel, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(telemetry.setup, "_configured", False)
    root = logging.getLogger()
    package = logging.getLogger("licensing")
    handlers, level = list(root.handlers), package.level
    try:
        telemetry.configure(Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:9"), verbose=True)
        assert trace.get_tracer_provider() is otel.tracer_provider
        assert metrics.get_meter_provider() is otel.meter_provider
        # Neither an OTLP pipeline nor a console handler next to the installed providers.
        assert [h for h in root.handlers if h not in handlers] == []
        assert all(any(isinstance(f, telemetry.SecretRedactingFilter) for f in h.filters) for h in root.handlers)
        telemetry.configure(Settings(), verbose=True)  # a second call changes nothing
        assert [h for h in root.handlers if h not in handlers] == []
        with telemetry.span("audit.run"):
            pass
        assert [s.name for s in otel.spans()] == ["audit.run"]  # still the test's exporter
    finally:
        for h in root.handlers[:]:
            if h not in handlers:
                root.removeHandler(h)
            for f in h.filters[:]:
                if isinstance(f, telemetry.SecretRedactingFilter | telemetry.TraceContextFilter):
                    h.removeFilter(f)  # pytest's own handlers must not keep rewriting records of later tests
        package.setLevel(level)


def test_importing_telemetry_loads_no_sdk_and_no_exporter() -> None:
    result = run_python(
        """
        import sys
        import licensing.telemetry
        heavy = sorted(m for m in sys.modules if m.startswith("opentelemetry.sdk") or "exporter" in m
                       or m.startswith(("google.protobuf", "requests", "azure.monitor")))
        print(heavy)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_configure_without_endpoint_or_verbose_installs_nothing() -> None:
    result = run_python(
        """
        import logging, sys
        from opentelemetry import metrics, trace
        from licensing import telemetry
        from licensing.settings import Settings
        logging.basicConfig()
        telemetry.configure(Settings())
        telemetry.configure(Settings(), verbose=True)  # idempotent: the first call decided
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        assert type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider"
        assert not any(m.startswith("opentelemetry.sdk") for m in sys.modules)
        (handler,) = logging.getLogger().handlers
        print(sorted(type(f).__name__ for f in handler.filters))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['SecretRedactingFilter', 'TraceContextFilter']"


def test_missing_otlp_exporter_is_one_actionable_line_and_changes_nothing() -> None:
    result = run_python(
        """
        import sys
        for name in ("opentelemetry.exporter.otlp.proto.http.trace_exporter",
                     "opentelemetry.exporter.otlp.proto.http.metric_exporter",
                     "opentelemetry.exporter.otlp.proto.http._log_exporter"):
            sys.modules[name] = None  # what an environment without the package looks like to import
        from opentelemetry import trace
        from licensing import telemetry
        from licensing.errors import ConfigurationError
        from licensing.settings import Settings
        settings = Settings(otel_exporter_otlp_endpoint="http://127.0.0.1:4318")
        for _ in range(2):  # a failed configure() is not remembered as done
            try:
                telemetry.configure(settings)
            except ConfigurationError as exc:
                print(exc)
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0] == (
        "OTEL_EXPORTER_OTLP_ENDPOINT is set but opentelemetry-exporter-otlp-proto-http is not installed: "
        "pip install 'opentelemetry-exporter-otlp-proto-http>=1.30,<2' (or unset OTEL_EXPORTER_OTLP_ENDPOINT)"
    )


def test_in_azure_the_workers_provider_is_kept_and_a_missing_distro_only_warns() -> None:
    result = run_python(
        """
        import logging, sys
        sys.modules["azure.monitor.opentelemetry"] = None
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from licensing import telemetry
        from licensing.settings import Secret, Settings
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(self.format(record))
        logging.getLogger().addHandler(Keep())
        conn = Secret("InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x.invalid/")
        telemetry.configure(Settings(in_azure=True, applicationinsights_connection_string=conn))
        assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
        first = records[0]
        print(len(records), "azure-monitor-opentelemetry is not installed" in first, "InstrumentationKey" in first)

        # Same process, as the worker would have done it first: a provider is there and stays.
        telemetry.setup._configured = False
        worker = TracerProvider()
        trace.set_tracer_provider(worker)
        telemetry.configure(Settings(in_azure=True, applicationinsights_connection_string=conn))
        print(trace.get_tracer_provider() is worker)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "True", "False", "True"]


def test_verbose_alone_prints_correlated_logs_but_no_span() -> None:
    """Issue 30, item 8: -v printed one raw span per Graph request (196 KB on 100k users); spans only when asked."""
    result = run_python(
        """
        import logging
        from licensing import telemetry
        from licensing.settings import Settings
        telemetry.configure(Settings(), verbose=True)
        with telemetry.span("audit.run", {"run.id": "r-1"}):
            logging.getLogger("licensing.pipeline.run").info("reading as %s", "someone")
        """
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "audit.run"' not in result.stderr
    (log_line,) = [line for line in result.stderr.splitlines() if "reading as" in line]
    assert "[trace=" in log_line


def test_traces_print_one_line_spans_and_correlated_logs_on_stderr() -> None:
    result = run_python(
        """
        import logging
        from licensing import telemetry
        from licensing.settings import Settings
        telemetry.configure(Settings(), verbose=True, traces=True)
        with telemetry.span("audit.run", {"run.id": "r-1"}):
            logging.getLogger("licensing.pipeline.run").info("reading as %s", "alice@contoso.com")
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    span_lines = [json.loads(line) for line in lines if line.startswith("{") and '"name": "audit.run"' in line]
    assert len(span_lines) == 1
    trace_id = span_lines[0]["context"]["trace_id"].removeprefix("0x")
    (log_line,) = [line for line in lines if "reading as" in line]
    assert f"[trace={trace_id} span=" in log_line
    assert log_line.endswith("reading as <address>")
    assert "alice@contoso.com" not in result.stderr


def test_otlp_exports_traces_metrics_and_logs_to_the_endpoint() -> None:
    result = run_python(
        """
        import json, logging, threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        received = []

        class Collector(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.path, self.headers["Content-Type"], body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
        threading.Thread(target=server.serve_forever, daemon=True).start()

        from opentelemetry import _logs, metrics, trace
        from licensing import telemetry
        from licensing.settings import Settings
        settings = Settings(otel_exporter_otlp_endpoint=f"http://127.0.0.1:{server.server_port}/")
        telemetry.configure(settings)
        telemetry.configure(settings)
        with telemetry.span("audit.run", {"run.id": "r-otlp"}):
            logger = logging.getLogger("licensing.pipeline.run")
            logger.warning("webhook https://h.invalid/p?sig=SIGSECRET for bob@contoso.com")
            telemetry.delivery("teams", "failed")
        for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(), _logs.get_logger_provider()):
            provider.force_flush()
        blob = b"".join(body for _, _, body in received)
        print(json.dumps({
            "paths": sorted({path for path, _, _ in received}),
            "types": sorted({ctype for _, ctype, _ in received}),
            "span": b"r-otlp" in blob,
            "metric": b"alerts.deliveries" in blob,
            "log": b"<address>" in blob,
            "leak": b"SIGSECRET" in blob or b"bob@contoso.com" in blob,
        }))
        """
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen == {
        "paths": ["/v1/logs", "/v1/metrics", "/v1/traces"],
        "types": ["application/x-protobuf"],
        "span": True,
        "metric": True,
        "log": True,
        "leak": False,
    }
