"""Putting requests on the queue: plain JSON, and a sender-only role (no right to create the queue) still works."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError

from licensing.errors import StorageUnavailableError
from licensing.model import AuditRequest, Scope
from licensing.pipeline import queues
from licensing.settings import Secret, StorageConnection

CONNECTION = StorageConnection(connection_string=Secret("UseDevelopmentStorage=true"), source="LICENSING_STORAGE")


class FakeQueue:
    """The QueueClient surface put_message uses; create_queue answers as the service would for a role."""

    def __init__(self, create_error: Exception | None) -> None:
        self.create_error = create_error
        self.sent: list[Any] = []

    def create_queue(self) -> None:
        if self.create_error is not None:
            raise self.create_error

    def send_message(self, text: str, visibility_timeout: int | None = None) -> Any:
        self.sent.append((text, visibility_timeout))
        return SimpleNamespace(id="msg-1")

    def close(self) -> None:
        return None


def refused(status: int) -> HttpResponseError:
    error = HttpResponseError(message="This request is not authorized to perform this operation.")
    error.status_code = status
    return error


@pytest.mark.parametrize("create_error", [None, ResourceExistsError("exists"), refused(403)])
def test_the_message_is_sent_whatever_create_says(monkeypatch: pytest.MonkeyPatch, create_error: Exception) -> None:
    fake = FakeQueue(create_error)
    monkeypatch.setattr(queues, "queue_client", lambda _conn, _name: fake)
    request = AuditRequest(scope=Scope.SKU, sku="SPE_E5", request_id="r-1")
    assert queues.enqueue_request(CONNECTION, "license-audit-requests", request) == "msg-1"
    assert fake.sent == [('{"scope":"sku","sku":"SPE_E5","request_id":"r-1"}', None)]


def test_other_create_failures_are_reported_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues, "queue_client", lambda _conn, _name: FakeQueue(refused(500)))
    with pytest.raises(StorageUnavailableError, match="could not put a message on queue license-audit-requests"):
        queues.put_message(CONNECTION, "license-audit-requests", "{}")
