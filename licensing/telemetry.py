"""OpenTelemetry traces and metrics of the audit, through the OTel API (exporters configured where no host does)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    from licensing.model import AuditReport

__all__ = ["delivery", "graph_request", "outbox_depth", "run_finished", "span", "tracer"]

_SCOPE = "licensing"


def tracer() -> trace.Tracer:
    return trace.get_tracer(_SCOPE)


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[trace.Span]:
    """A span around a phase; attributes must never carry names, UPNs, tokens or URLs with secrets."""
    with tracer().start_as_current_span(name, attributes=dict(attributes or {})) as current:
        yield current


def _meter() -> metrics.Meter:
    return metrics.get_meter(_SCOPE)


class _Instruments:
    """Created lazily, and again if the meter provider changes (tests install their own)."""

    def __init__(self) -> None:
        meter = _meter()
        self.provider = metrics.get_meter_provider()
        self.graph_requests = meter.create_counter("graph.requests", unit="{request}")
        self.graph_throttled = meter.create_counter("graph.throttled", unit="{request}")
        self.graph_ru = meter.create_counter("graph.resource_units", unit="{RU}")
        self.graph_duration = meter.create_histogram("graph.request.duration", unit="s")
        self.deliveries = meter.create_counter("alerts.deliveries", unit="{delivery}")
        self.outbox = meter.create_gauge("alerts.outbox.depth", unit="{item}")
        self.free_seats = meter.create_gauge("licensing.sku.free_seats", unit="{seat}")
        self.waiting = meter.create_gauge("licensing.sku.waiting_users", unit="{user}")
        self.findings = meter.create_gauge("licensing.findings", unit="{finding}")
        self.run_duration = meter.create_histogram("licensing.run.duration", unit="s")


_instruments: _Instruments | None = None


def _get() -> _Instruments:
    global _instruments  # noqa: PLW0603 - one set of instruments per meter provider
    if _instruments is None or _instruments.provider is not metrics.get_meter_provider():
        _instruments = _Instruments()
    return _instruments


def graph_request(
    method: str, route: str, status: int | None, *, throttled: bool, resource_units: float, duration_s: float
) -> None:
    """One HTTP exchange with Graph. ``route`` is a template without ids or query values."""
    attrs: dict[str, str | int] = {
        "http.request.method": method,
        "graph.route": route,
        "http.response.status_code": status or 0,
    }
    i = _get()
    i.graph_requests.add(1, attrs)
    if throttled:
        i.graph_throttled.add(1, attrs)
    if resource_units:
        i.graph_ru.add(resource_units, {"graph.route": route})
    i.graph_duration.record(duration_s, attrs)


def delivery(channel: str, outcome: str) -> None:
    """An alert delivery attempt: outcome is ``delivered`` | ``failed`` | ``queued`` | ``replayed``."""
    _get().deliveries.add(1, {"alert.channel": channel, "alert.outcome": outcome})


def outbox_depth(channel: str, depth: int) -> None:
    _get().outbox.set(depth, {"alert.channel": channel})


def run_finished(report: AuditReport, duration_s: float) -> None:
    """Gauges per SKU and findings per kind/severity at the end of a run."""
    i = _get()
    for sku in report.skus:
        attrs = {"licensing.sku": sku.sku_part_number}
        i.free_seats.set(sku.available, attrs)
        i.waiting.set(sku.waiting_users, attrs)
    counts: dict[tuple[str, str], int] = {}
    for finding in report.findings:
        key = (finding.kind, str(finding.severity))
        counts[key] = counts.get(key, 0) + 1
    for (kind, severity), n in counts.items():
        i.findings.set(n, {"finding.kind": kind, "finding.severity": severity})
    i.run_duration.record(
        duration_s,
        {
            "run.trigger": str(report.run.trigger),
            "run.scope": str(report.run.scope),
            "run.status": str(report.run.status),
        },
    )
