"""The one queue writer: audit requests (timer, CLI, deferrals) and chunk messages, in the encoding the host reads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from licensing.errors import ConfigurationError, StorageError, StorageUnavailableError, redact_text
from licensing.model import AuditRequest
from licensing.pipeline.requests import encode_request
from licensing.settings import StorageConnection

if TYPE_CHECKING:
    from azure.storage.queue import QueueClient

__all__ = ["enqueue_request", "put_message", "put_messages", "queue_client"]


def _bounded() -> dict[str, Any]:
    """Every wait on the queue service bounded (issue 30, item 5): the SDK's default, 10 retries with backoff up to
    2 minutes, made an unreachable account a 85 s hang; this fails within a few seconds, like the tables do."""
    from azure.storage.queue import LinearRetry

    retry = LinearRetry(backoff=1, random_jitter_range=1, retry_total=2)  # 3 attempts, about 1 s apart
    return {"retry_policy": retry, "connection_timeout": 10, "read_timeout": 30}


def queue_client(connection: StorageConnection | None, queue_name: str) -> QueueClient:
    """A QueueClient without message encoding policy: host.json reads messages with encoding ``none``."""
    from azure.storage.queue import QueueClient

    if connection is None:
        raise ConfigurationError("no storage configured: set LICENSING_STORAGE or AzureWebJobsStorage")
    if connection.connection_string is not None:
        return QueueClient.from_connection_string(connection.connection_string.reveal(), queue_name, **_bounded())
    if not connection.queue_uri:
        raise ConfigurationError(f"{connection.source}__queueServiceUri (or __accountName) is missing")
    from licensing.credentials import storage_credential

    return QueueClient(connection.queue_uri, queue_name, credential=storage_credential(connection), **_bounded())


def put_messages(
    connection: StorageConnection | None, queue_name: str, texts: Sequence[str], *, delay_s: int = 0
) -> list[str]:
    """Put messages on one queue (creating it if needed, with one client); returns their message ids."""
    from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError

    client = queue_client(connection, queue_name)
    ids: list[str] = []
    try:
        try:
            client.create_queue()
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            # Storage Queue Data Message Sender may send but not create: the queue exists (infra creates it).
            if exc.status_code != 403:
                raise
        for text in texts:
            sent = client.send_message(text, visibility_timeout=delay_s or None)
            if not sent or not sent.id:
                raise StorageError(f"queue {queue_name} did not return a message id")
            ids.append(str(sent.id))
    except AzureError as exc:
        reason = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise StorageUnavailableError(f"could not put a message on queue {queue_name}: {reason}") from None
    finally:
        client.close()
    return ids


def put_message(connection: StorageConnection | None, queue_name: str, text: str, *, delay_s: int = 0) -> str:
    """Put one message (creating the queue if needed); returns the message id."""
    return put_messages(connection, queue_name, [text], delay_s=delay_s)[0]


def enqueue_request(connection: StorageConnection | None, queue_name: str, request: AuditRequest) -> str:
    return put_message(connection, queue_name, encode_request(request))
