"""Metrics: Graph exchanges (and a span per exchange), alert deliveries, outbox depth, and the figures of a run."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from opentelemetry import metrics, trace

from licensing.telemetry import spans
from licensing.telemetry.redaction import route_template
from licensing.telemetry.spans import SCOPE, quiet_library_spans, tracer

if TYPE_CHECKING:
    from licensing.model import AuditReport

__all__ = ["delivery", "graph_request", "outbox_depth", "run_finished"]


def _meter() -> metrics.Meter:
    return metrics.get_meter(SCOPE)


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
    # One span per exchange, recorded after the fact (the retries of a request are exchanges of their own).
    if not spans.quieted():
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


def delivery(channel: str, outcome: str) -> None:
    """An alert delivery attempt: outcome is ``delivered`` | ``failed`` | ``queued`` | ``replayed``.

    Attribute values are plain strings: the SDK keys a series by its attribute values, so ``Channel.TEAMS`` and
    ``"teams"`` would be two series of one channel (one of them hidden behind the other in every exporter)."""
    attrs = {"alert.channel": str(channel), "alert.outcome": str(outcome)}
    _get().deliveries.add(1, attrs)
    trace.get_current_span().add_event("alert.delivery", attrs)


def outbox_depth(channel: str, depth: int) -> None:
    _get().outbox.set(depth, {"alert.channel": str(channel)})


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
