"""Reaching Table Storage: client from settings, bounded retries of transient failures, error mapping.

The SDK's own retry policy is switched off (``retry_total=0``) so that there is one retry budget,
with an injectable sleep, and so that every failure surfaces as a one-line ``licensing.errors``
exception that names the account host but never a key or a connection string.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableServiceClient

from licensing.errors import (
    ConfigurationError,
    LicensingError,
    StorageConflictError,
    StorageError,
    StorageTableMissingError,
    StorageUnavailableError,
    redact_text,
)
from licensing.settings import StorageConnection
from licensing.transient import RETRYABLE_STATUSES, Backoff

__all__ = ["RetryPolicy", "map_error", "service_client", "table_host"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter; ``sleep`` is injectable so tests never wait."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): at least half the ceiling."""
        return Backoff(self.base_delay, self.max_delay, jitter=0.5).delay(attempt)

    def run(
        self,
        what: str,
        host: str,
        fn: Callable[[], T],
        *,
        passthrough: tuple[type[BaseException], ...] = (),
    ) -> T:
        """Call ``fn``; retry transient failures; re-raise ``passthrough`` types as they are; map the rest."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except passthrough:
                raise
            except (ServiceRequestError, ServiceResponseError) as exc:
                if attempt >= self.attempts:
                    raise map_error(exc, what, host) from None
            except HttpResponseError as exc:
                if exc.status_code not in RETRYABLE_STATUSES or attempt >= self.attempts:
                    raise map_error(exc, what, host) from None
            self.sleep(self.delay(attempt))


def table_host(url: str | None) -> str:
    """The host (and port) of a service URL: what error messages may name."""
    if not url:
        return "table storage"
    parts = urlsplit(url)
    return parts.netloc.rpartition("@")[2] or "table storage"


def error_code(exc: HttpResponseError) -> str | None:
    """The service's error code (``x-ms-error-code``), e.g. ``TableNotFound``: what decisions are made on."""
    code = getattr(exc, "error_code", None)
    if code is None and exc.response is not None:
        code = getattr(exc.response, "headers", {}).get("x-ms-error-code")
    return str(getattr(code, "value", code)) if code else None


def _error_code(exc: HttpResponseError) -> str:
    code = error_code(exc)
    return f" {code}" if code else ""


def map_error(exc: BaseException, what: str, host: str) -> LicensingError:
    """One safe line for an azure.core failure; the original stays as ``__cause__`` for debugging only."""
    if isinstance(exc, LicensingError):
        return exc
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return StorageUnavailableError(f"cannot reach table storage at {host} ({what}): {type(exc).__name__}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        code = _error_code(exc)
        if status is None:
            # Credential failures (azure-identity) have no HTTP status; their text can be long: keep one line.
            reason = redact_text(" ".join(str(exc.message or type(exc).__name__).split()))[:200]
            return StorageUnavailableError(f"no credential for table storage at {host} ({what}): {reason}")
        if status in (401, 403) or isinstance(exc, ClientAuthenticationError):
            return StorageUnavailableError(
                f"table storage at {host} refused our credentials ({what}): HTTP {status}{code}"
            )
        if isinstance(exc, ResourceModifiedError) or status in (409, 412):
            return StorageConflictError(f"table storage conflict ({what}): HTTP {status}{code}")
        if isinstance(exc, ResourceExistsError):
            return StorageConflictError(f"table storage conflict ({what}): HTTP {status}{code}")
        if isinstance(exc, ResourceNotFoundError) and error_code(exc) == "TableNotFound":
            return StorageTableMissingError(
                f"table storage at {host} has no such table ({what}): call ensure_tables() first"
            )
        if status in RETRYABLE_STATUSES:
            return StorageUnavailableError(f"table storage at {host} kept failing ({what}): HTTP {status}{code}")
        return StorageError(f"table storage request failed ({what}): HTTP {status}{code}")
    return StorageError(f"table storage request failed ({what}): {type(exc).__name__}")


def service_client(conn: StorageConnection | None, **client_kwargs: Any) -> tuple[TableServiceClient, str]:
    """A TableServiceClient from a connection string or from a service URI plus a token credential."""
    if conn is None:
        raise ConfigurationError("no storage configured: set LICENSING_STORAGE or AzureWebJobsStorage")
    kwargs: dict[str, Any] = {"retry_total": 0, "connection_timeout": 10, "read_timeout": 60, **client_kwargs}
    if conn.connection_string:
        try:
            client = TableServiceClient.from_connection_string(conn.connection_string.reveal(), **kwargs)
        except (ValueError, KeyError) as exc:
            # The SDK's message may quote the string; ours names only the setting.
            name = conn.source or "the storage connection string"
            raise ConfigurationError(f"{name} is not a usable storage connection string") from exc
        return client, table_host(client.url)
    if not conn.table_uri:
        raise ConfigurationError(f"{conn.source or 'storage'}: no table service URI and no connection string")
    from licensing.credentials import storage_credential  # the one factory (queues use it too)

    credential = storage_credential(conn)
    client = TableServiceClient(endpoint=conn.table_uri, credential=credential, **kwargs)
    return client, table_host(conn.table_uri)
