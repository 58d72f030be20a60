"""Log records: trace ids on every record, secrets and addresses scrubbed, and the bridge to the OTel logs pipeline."""

from __future__ import annotations

import logging
import traceback
from typing import Any, Final

from opentelemetry import trace

from licensing.telemetry.redaction import scrub
from licensing.telemetry.spans import SCOPE

__all__ = ["CorrelatingFormatter", "SecretRedactingFilter", "TraceContextFilter", "install_log_filters"]


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
        self._logger = provider.get_logger(SCOPE)

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
