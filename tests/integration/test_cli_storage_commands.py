"""`licensing-audit history` and `enqueue` against Azurite: the trend per SKU, and requests the host can read."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from azure.storage.queue import QueueClient

from licensing.cli import EXIT_OK, EXIT_USAGE, main
from licensing.model import AuditReport, RunInfo, RunStatus, Scope, SkuDay, SkuSummary, Trigger
from licensing.pipeline.requests import parse_request
from licensing.settings import load_settings
from licensing.store import open_store

pytestmark = pytest.mark.azurite

TENANT = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
E5 = "06ebc4ee-1bb5-47dd-8120-11324bc54e06"


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "AZURE_TENANT_ID", "AUDIT_QUEUE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def seed_history(connection: str) -> None:
    store = open_store(load_settings({"LICENSING_STORAGE": connection}).storage)
    store.ensure_tables()
    today = datetime.now(UTC).date()
    store.write_sku_history(
        TENANT,
        [SkuDay(sku_id=E5, day=today - timedelta(days=d), enabled=100, consumed=80 - d) for d in range(10)],
    )
    started = datetime.now(UTC)
    sku = SkuSummary(E5, "SPE_E5", "Microsoft 365 E5", 100, 80, 20, 0, 0, 0, 75, 0, ())
    run = RunInfo(
        id="20261124T023000Z-abcdef01",
        tenant_id=TENANT,
        trigger=Trigger.SCHEDULE,
        scope=Scope.TENANT,
        started_at=started,
        finished_at=started,
        status=RunStatus.SUCCEEDED,
    )
    store.finish_run(AuditReport(run=run, skus=(sku,)), history_day=None)


def test_history_prints_the_trend_by_product_name(storage_connection: str, capsys: pytest.CaptureFixture[str]) -> None:
    seed_history(storage_connection)
    assert main(["history", "--store", storage_connection, "--tenant-id", TENANT, "--days", "30"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "Microsoft 365 E5" in out and "80" in out


def test_history_of_an_unknown_sku_is_a_usage_error(
    storage_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_history(storage_connection)
    code = main(["history", "--store", storage_connection, "--tenant-id", TENANT, "--sku", "NOPE"])
    assert code == EXIT_USAGE and "no history for SKU 'NOPE'" in capsys.readouterr().err


def test_history_without_storage_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history"]) == EXIT_USAGE
    assert "history needs storage" in capsys.readouterr().err


def test_enqueue_writes_plain_json_the_host_reads(
    storage_connection: str, unique_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_QUEUE", unique_name)
    group = "0b5c8f6e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"
    args = ["enqueue", "--store", storage_connection, "--scope", "group", "--group", group]
    assert main([*args, "--requested-by", "joiner flow", "--request-id", "req-42"]) == EXIT_OK
    messages = list(QueueClient.from_connection_string(storage_connection, unique_name).receive_messages())
    assert len(messages) == 1
    body = messages[0].content
    assert json.loads(body) == {
        "scope": "group",
        "group_id": group,
        "request_id": "req-42",
        "requested_by": "joiner flow",
    }
    request = parse_request(body)
    assert request.group_id == group and request.request_id == "req-42"


def test_enqueue_rejects_a_bad_request_before_sending(
    storage_connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enqueue", "--store", storage_connection, "--scope", "sku"]) == EXIT_USAGE
    assert "sku is required" in capsys.readouterr().err
