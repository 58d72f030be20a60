"""Unit tests of the store's connection handling: client choice, error mapping, retry budget."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ServiceRequestError,
)

from licensing.errors import ConfigurationError, StorageConflictError, StorageError, StorageUnavailableError
from licensing.settings import Secret, StorageConnection
from licensing.store import AuditStore, RetryPolicy, TableNames, open_store
from licensing.store.connection import map_error, service_client


class _Response:
    def __init__(self, status: int, code: str = "") -> None:
        self.status_code = status
        self.headers = {"x-ms-error-code": code} if code else {}
        self.reason = "reason"

    def text(self) -> str:
        return ""


def _http(status: int, code: str = "", cls: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    exc = cls(message="AccountKey=c2VjcmV0 failed\nsecond line", response=_Response(status, code))  # type: ignore[arg-type]
    return exc


def test_identity_connection_builds_a_client_without_a_secret() -> None:
    conn = StorageConnection(
        table_uri="https://acct.table.core.windows.net",
        credential="managedidentity",
        client_id="6fd2c87f-b296-42f0-b197-1e91e994b900",
        source="AzureWebJobsStorage",
    )
    client, host = service_client(conn)
    assert host == "acct.table.core.windows.net"
    assert client.url.startswith("https://acct.table.core.windows.net")
    store = open_store(StorageConnection(table_uri="https://acct.table.core.windows.net"), prefix="p1")
    assert isinstance(store, AuditStore) and store.tables.runs == "p1AuditRuns"


def test_development_storage_shortcut_is_accepted() -> None:
    _client, host = service_client(StorageConnection(connection_string=Secret("UseDevelopmentStorage=true")))
    assert host == "127.0.0.1:10002"


def test_bad_connection_string_names_the_setting_not_the_value() -> None:
    with pytest.raises(ConfigurationError) as info:
        service_client(
            StorageConnection(connection_string=Secret("AccountName=a;Foo=topsecret"), source="LICENSING_STORAGE")
        )
    assert "LICENSING_STORAGE" in str(info.value) and "topsecret" not in str(info.value)
    with pytest.raises(ConfigurationError):
        service_client(None)


def test_prefix_must_make_valid_table_names() -> None:
    assert TableNames.with_prefix("").runs == "AuditRuns"
    for bad in ("1abc", "a-b", "a_b", "x" * 50):
        with pytest.raises(ConfigurationError):
            TableNames.with_prefix(bad)


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (_http(412, "UpdateConditionNotSatisfied", ResourceModifiedError), StorageConflictError, "HTTP 412"),
        (_http(409, "EntityAlreadyExists"), StorageConflictError, "HTTP 409"),
        (_http(403, "AuthorizationFailure", ClientAuthenticationError), StorageUnavailableError, "refused"),
        (_http(503, "ServerBusy"), StorageUnavailableError, "kept failing"),
        (_http(400, "InvalidInput"), StorageError, "HTTP 400 InvalidInput"),
        (ServiceRequestError("boom AccountKey=c2VjcmV0"), StorageUnavailableError, "cannot reach"),
    ],
)
def test_errors_map_to_one_safe_line(exc: BaseException, kind: type[StorageError], text: str) -> None:
    mapped = map_error(exc, "write AuditRuns", "acct.table.core.windows.net")
    assert type(mapped) is kind
    assert text in str(mapped) and "\n" not in str(mapped) and "c2VjcmV0" not in str(mapped)


def test_transient_failures_are_retried_then_given_up() -> None:
    sleeps: list[float] = []
    policy = RetryPolicy(attempts=4, base_delay=1.0, max_delay=2.0, sleep=sleeps.append)
    calls = {"n": 0}

    def flaky() -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise _http(503, "ServerBusy")
        return "ok"

    assert policy.run("read", "h", flaky) == "ok"
    assert len(sleeps) == 2 and all(0.5 <= s <= 2.0 for s in sleeps)

    def down() -> str:
        raise ServiceRequestError("refused")

    with pytest.raises(StorageUnavailableError):
        policy.run("read", "h", down)
    assert len(sleeps) == 2 + 3  # four attempts, three waits

    def bad() -> str:
        raise _http(400, "InvalidInput")

    with pytest.raises(StorageError):
        policy.run("read", "h", bad)
    assert len(sleeps) == 5  # not transient: no retry
