"""The one exception hierarchy: every failure an admin may see, mapped to what they need to act.

    LicensingError                    base; ``str(err)`` is one line, safe to log (no secrets)
     ├── ConfigurationError           bad or missing settings / CLI usage          (CLI exit 2)
     ├── BadRequestError              a malformed audit request (queue message)    (rejected, never retried)
     ├── GraphError                   Microsoft Graph could not give us what we asked for
     │    ├── GraphAuthError          no token / token refused (401)
     │    ├── GraphPermissionError    403: names the missing application permission
     │    ├── GraphNotFoundError      404: the object is gone (a group deleted mid-run)
     │    ├── GraphThrottledError     429s outlasted the retry budget
     │    ├── GraphUnavailableError   5xx, timeouts, connection errors outlasted the retry budget
     │    │    └── GraphOutcomeUnknownError  a POST that broke after it was sent (it may have been done)
     │    └── GraphResponseError      a response we cannot use (bad JSON, odd page, 400)
     ├── StorageError                 Azure Table / Queue Storage
     │    ├── StorageConflictError    412/409 that retries could not resolve
     │    ├── StorageTableMissingError a table is gone (deleted, or the emulator restarted)
     │    └── StorageUnavailableError the account cannot be reached or refuses us
     ├── DeliveryError                an alert could not be delivered (it goes to the outbox)
     │    ├── RetryLaterError         (licensing.alerts.delivery) not delivered; said when to come back
     │    └── DeliveryOutcomeUnknownError  may have been delivered: never retried in the run
     ├── AuditError                   the audit itself failed (wraps the cause)
     └── SupersededError              a later delivery of the same message took the run over (not a failure)

Messages are built by the code that raises them and never contain secrets: callers pass
URLs through :func:`redact_url` and never put tokens, webhook URLs or connection strings in.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "AuditError",
    "BadRequestError",
    "ConfigurationError",
    "DeliveryError",
    "DeliveryOutcomeUnknownError",
    "GraphAuthError",
    "GraphError",
    "GraphNotFoundError",
    "GraphOutcomeUnknownError",
    "GraphPermissionError",
    "GraphResponseError",
    "GraphThrottledError",
    "GraphUnavailableError",
    "LicensingError",
    "StorageConflictError",
    "StorageError",
    "StorageTableMissingError",
    "StorageUnavailableError",
    "SupersededError",
    "redact_text",
    "redact_url",
]


class LicensingError(Exception):
    """Base of every error this package raises on purpose. ``str()`` is one safe line."""

    def __init__(self, message: str) -> None:
        # One line, always: multi-line messages break log parsing and CLI output.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigurationError(LicensingError):
    """Settings or command-line usage are wrong; ``problems`` lists every one of them."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class BadRequestError(LicensingError):
    """An audit request (queue message, CLI arguments) is malformed. Never retried."""


class GraphError(LicensingError):
    """Microsoft Graph failed us. ``status`` is the HTTP status when there was one; ``code`` Graph's error code
    (e.g. ``Request_UnsupportedQuery``: https://learn.microsoft.com/graph/errors)."""

    def __init__(
        self, message: str, *, status: int | None = None, request_id: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.request_id = request_id
        self.code = code


class GraphAuthError(GraphError):
    """No token could be obtained, or Graph refused it (401)."""


class GraphPermissionError(GraphError):
    """403: the app lacks a Graph application permission; ``permission`` names it."""

    def __init__(
        self, message: str, *, permission: str | None = None, status: int | None = 403, code: str | None = None
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.permission = permission


class GraphNotFoundError(GraphError):
    """404: the object does not exist (any more)."""


class GraphThrottledError(GraphError):
    """Graph kept answering 429 beyond the retry budget."""


class GraphUnavailableError(GraphError):
    """5xx answers, timeouts or connection errors outlasted the retry budget."""


class GraphOutcomeUnknownError(GraphUnavailableError):
    """A non-idempotent request (sendMail) timed out, broke or got a 5xx after it was sent: Graph may have done it."""


class GraphResponseError(GraphError):
    """A response we cannot use: malformed JSON, an unexpected shape, or 400 for our query."""


class StorageError(LicensingError):
    """Azure Table or Queue Storage failed."""


class StorageConflictError(StorageError):
    """Optimistic concurrency (ETag) kept failing."""


class StorageTableMissingError(StorageError):
    """The service answered TableNotFound: the table was deleted, or the emulator restarted without it."""


class StorageUnavailableError(StorageError):
    """The storage account could not be reached, or refused our credentials."""


class DeliveryError(LicensingError):
    """An alert could not be delivered on a channel; ``retryable`` says whether trying later may help."""

    def __init__(self, message: str, *, channel: str, retryable: bool = True, status: int | None = None) -> None:
        super().__init__(message)
        self.channel = channel
        self.retryable = retryable
        self.status = status


class DeliveryOutcomeUnknownError(DeliveryError):
    """A send that may have been delivered: timed out or broke after it was sent, or a 5xx to a POST.

    Never retried within the run (that produced five identical cards); the outbox keeps it marked
    "may have been delivered" and replays it at most once, later.
    """

    def __init__(self, message: str, *, channel: str, status: int | None = None) -> None:
        super().__init__(message, channel=channel, retryable=True, status=status)


class AuditError(LicensingError):
    """The audit could not complete."""


class SupersededError(LicensingError):
    """This invocation lost its lease to a later delivery of the same message: it stops before alerting or
    writing the run's final record, and the message is completed (the later delivery does the work)."""


_CONNECTION_SECRET = re.compile(r"(?i)(AccountKey|SharedAccessSignature|SharedAccessKey|InstrumentationKey)=[^;\s]*")
_BEARER = re.compile(r"(?i)bearer\s+[A-Za-z0-9\-._~+/]+=*")
_URL_WITH_QUERY = re.compile(r"https?://[^\s\"'<>]+")


def redact_url(url: str) -> str:
    """A URL safe to show: scheme, host and path kept; query values and user info dropped.

    A total function: it runs inside log filters, span recording and error mapping, so a hostile
    value (``https://a:b/?q``, an unclosed IPv6 bracket) must give a safe string, never raise.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:  # an IPv6 literal keeps its brackets, or the output is ambiguous
            host = f"[{host}]"
        try:
            port = parts.port
        except ValueError:  # a port that is not a number: drop it, keep the rest
            port = None
        if port is not None:
            host = f"{host}:{port}"
        query = "…" if parts.query else ""
        return urlunsplit((parts.scheme, host, parts.path, query, ""))
    except Exception:  # a redactor must not raise: the URL is hidden instead
        return "<url>"


def redact_text(text: str) -> str:
    """Remove anything that looks like a credential from free text (exception messages from libraries)."""
    if not isinstance(text, str):  # a total function: log filters hand it whatever they got
        text = str(text)
    text = _CONNECTION_SECRET.sub(lambda m: m.group(1) + "=***", text)
    text = _BEARER.sub("Bearer ***", text)
    return _URL_WITH_QUERY.sub(lambda m: redact_url(m.group(0)) if "?" in m.group(0) else m.group(0), text)
