"""The function app through its real decorators and azure.functions objects, against Azurite and the sandbox."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions.queue as fq
import azure.functions.timer as ft
import pytest
from azure.storage.queue import QueueClient

from licensing.settings import get_settings


def load_app(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ModuleType:
    for key in list(env):
        monkeypatch.setenv(key, env[key])
    get_settings.cache_clear()
    sys.modules.pop("function_app", None)
    module = importlib.import_module("function_app")
    get_settings.cache_clear()
    return module


def functions(module: ModuleType) -> dict[str, Any]:
    return {f.get_function_name(): f for f in module.app.get_functions()}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for key in (
        "LICENSING_STORAGE",
        "AzureWebJobsStorage",
        "AUDIT_SCHEDULE",
        "AUDIT_QUEUE",
        "AUDIT_CHUNK_QUEUE",
        "GRAPH_BASE_URL",
        "FANOUT_GROUPS",
        "AZURE_TENANT_ID",
        "ALERT_TEAMS_WEBHOOK_URL",
    ):
        monkeypatch.delenv(key, raising=False)
    yield monkeypatch
    get_settings.cache_clear()
    sys.modules.pop("function_app", None)


def test_bindings_are_indexed_as_designed(clean_env: pytest.MonkeyPatch) -> None:
    module = load_app(clean_env, {"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    found = functions(module)
    assert set(found) == {"audit_schedule", "audit_request", "audit_chunk", "report"}
    timer = json.loads(found["audit_schedule"].get_function_json())["bindings"]
    assert timer == [
        {
            "direction": "IN",
            "type": "timerTrigger",
            "name": "timer",
            "schedule": "0 30 2 * * *",
            "runOnStartup": False,
            "useMonitor": True,
        }
    ]
    queue = json.loads(found["audit_request"].get_function_json())["bindings"]
    assert queue == [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "message",
            "queueName": "license-audit-requests",
            "connection": "AzureWebJobsStorage",
        }
    ]
    chunks = json.loads(found["audit_chunk"].get_function_json())["bindings"]
    assert chunks == [
        {
            "direction": "IN",
            "type": "queueTrigger",
            "name": "message",
            "queueName": "license-audit-chunks",
            "connection": "AzureWebJobsStorage",
        }
    ]
    # The alerts' Full report link: anonymous at the function level (App Service authentication signs the reader
    # in; a function key in a Teams card would be a secret in a message), GET only.
    http = json.loads(found["report"].get_function_json())["bindings"]
    trigger = next(b for b in http if b["type"] == "httpTrigger")
    assert trigger["route"] == "reports/{tenant}/{run}/{name}"
    assert trigger["methods"] == ["GET"]
    assert trigger["authLevel"] == "ANONYMOUS"


def test_settings_choose_schedule_queue_and_connection(clean_env: pytest.MonkeyPatch) -> None:
    module = load_app(
        clean_env,
        {
            "LICENSING_STORAGE": "UseDevelopmentStorage=true",
            "AUDIT_SCHEDULE": "0 0 5 * * 1-5",
            "AUDIT_QUEUE": "audits",
            "AUDIT_CHUNK_QUEUE": "audit-parts",
        },
    )
    found = functions(module)
    assert json.loads(found["audit_schedule"].get_function_json())["bindings"][0]["schedule"] == "0 0 5 * * 1-5"
    binding = json.loads(found["audit_request"].get_function_json())["bindings"][0]
    assert (binding["queueName"], binding["connection"]) == ("audits", "LICENSING_STORAGE")
    chunk = json.loads(found["audit_chunk"].get_function_json())["bindings"][0]
    assert (chunk["queueName"], chunk["connection"]) == ("audit-parts", "LICENSING_STORAGE")


def test_bad_settings_stop_start_up_with_one_line(clean_env: pytest.MonkeyPatch) -> None:
    from licensing.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as caught:
        load_app(clean_env, {"SEAT_MIN_FREE": "lots", "AUDIT_SCHEDULE": "nightly"})
    assert "SEAT_MIN_FREE" in str(caught.value) and "AUDIT_SCHEDULE" in str(caught.value)


def test_importing_the_app_does_not_import_heavy_code() -> None:
    # A fresh interpreter, as at a cold start: what the test session imported elsewhere must not count.
    probe = (
        "import sys, function_app; "
        "print(','.join(sorted({m.split('.')[0] for m in sys.modules "
        "if m.startswith(('msgraph', 'kiota', 'jinja2', 'rich', 'licensing.report', 'azure.monitor'))})))"
    )
    env = {**os.environ, "AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


@pytest.mark.azurite
def test_timer_enqueues_one_request_per_occurrence(
    clean_env: pytest.MonkeyPatch, storage_connection: str, unique_name: str
) -> None:
    module = load_app(clean_env, {"AzureWebJobsStorage": storage_connection, "AUDIT_QUEUE": unique_name})
    timer_fn = functions(module)["audit_schedule"].get_user_function()
    timer_fn(ft.TimerRequest(past_due=False))
    timer_fn(ft.TimerRequest(past_due=True))  # the host fired twice for the same night
    client = QueueClient.from_connection_string(storage_connection, unique_name)
    bodies = [json.loads(m.content) for m in client.receive_messages(max_messages=10)]
    assert len(bodies) == 2
    assert bodies[0] == bodies[1]
    assert bodies[0]["scope"] == "tenant" and bodies[0]["reason"] == "schedule"
    assert bodies[0]["request_id"].startswith("schedule-")


@pytest.mark.azurite
def test_queue_handler_rejects_a_malformed_message_without_retry(
    clean_env: pytest.MonkeyPatch, storage_connection: str, unique_name: str
) -> None:
    module = load_app(clean_env, {"AzureWebJobsStorage": storage_connection, "AUDIT_QUEUE": unique_name})
    queue_fn = functions(module)["audit_request"].get_user_function()
    message = fq.QueueMessage(id="bad-1", body=b'{"scope": "galaxy"}', dequeue_count=1)
    asyncio.run(queue_fn(message))  # returns normally: the host completes it, no retry
    from licensing.store import open_store

    store = open_store(get_settings().storage)
    run = store.run_for_request("unknown-tenant", "bad-1")
    assert run is not None and run.status.value == "rejected"
    assert "scope 'galaxy' is not one of" in run.errors[0]


def test_a_misspelled_setting_is_logged_at_start_up(
    clean_env: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 30, item 4: the function names a setting typo (with the real name) when it starts, and still starts."""
    clean_env.delenv("ALERT_TEAMS_WEBHOOK_URL", raising=False)
    with caplog.at_level("WARNING", logger="function_app"):
        load_app(clean_env, {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "ALERT_TEAMS_WEBHOK_URL": "x"})
    assert "ALERT_TEAMS_WEBHOK_URL is not a setting (ignored): did you mean ALERT_TEAMS_WEBHOOK_URL?" in caplog.text
