"""Spans: the tracer, phase and run spans (errors recorded scrubbed), and the Graph SDK's own spans silenced."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import trace

from licensing.telemetry.redaction import scrub

if TYPE_CHECKING:
    from licensing.model import AuditReport, RunInfo

__all__ = ["SCOPE", "quiet_library_spans", "quieted", "run_span", "set_run_outcome", "span", "tracer"]

SCOPE: Final = "licensing"


def tracer() -> trace.Tracer:
    return trace.get_tracer(SCOPE)


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


def quieted() -> bool:
    """Whether every Graph SDK tracer is already silenced (after its modules were imported)."""
    return _quieted


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
