"""The Notifier with the real Table Storage store (Azurite): outbox and alert state across nights."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from licensing.alerts import AlertStore, Notifier, RetryPolicy
from licensing.model import AuditReport
from licensing.settings import Secret, StorageConnection
from licensing.store import AuditStore, open_store
from licensing.store import RetryPolicy as StoreRetry
from tests.unit.alerts_support import (
    EVIL,
    TENANT,
    Receiver,
    Reply,
    b2b,
    license_error,
    report,
    seat_shortage,
    settings,
)

pytestmark = pytest.mark.azurite

NIGHT1 = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)


@pytest.fixture
def store(storage_connection: str, unique_name: str) -> Iterator[AuditStore]:
    conn = StorageConnection(connection_string=Secret(storage_connection), source="LICENSING_STORAGE")
    s = open_store(conn, prefix=unique_name, retry=StoreRetry(attempts=3, base_delay=0.005, max_delay=0.02))
    s.ensure_tables()
    yield s
    s.drop_tables()


async def _no_sleep(_: float) -> None:
    return None


def nightly(n: int, findings: list[Any]) -> AuditReport:
    return report(findings, run_id=f"20260101T0230Z-night{n}", when=NIGHT1 + timedelta(days=n - 1))


def test_outbox_and_alert_state_survive_between_runs(store: AuditStore) -> None:
    typed: AlertStore = store  # the real store satisfies the protocol the notifier declares
    findings = [seat_shortage(), b2b(1, 1, name=EVIL), license_error(2, 5)]
    with Receiver([Reply(503)] * 4) as rx:
        s = settings(ALERT_TEAMS_WEBHOOK_URL=rx.url)

        def notifier(when: datetime) -> Notifier:
            return Notifier(s, store=typed, sleep=_no_sleep, now=when, retry=RetryPolicy(jitter=0))

        # Night 1: Teams is down. The digest waits in AlertOutbox; the state says it was notified.
        first = asyncio.run(notifier(NIGHT1).run(nightly(1, findings)))
        assert first.failed and len(rx.requests) == 4
        (item,) = store.outbox_list("teams")
        assert item.id == "20260101T0230Z-night1.teams.digest" and item.attempts == 1
        assert "HTTP 503" in (item.last_error or "") and "sig=" not in (item.last_error or "")
        states = store.alert_states(TENANT)
        assert set(states) == {f.id for f in findings}
        assert all(st.last_notified is not None and st.status == "open" for st in states.values())

        # The same run again (queue redelivery): the item is delivered once; nothing new is queued.
        again = asyncio.run(notifier(NIGHT1 + timedelta(minutes=5)).run(nightly(1, findings)))
        assert again.sent == [("teams", item.id)] and not again.queued
        assert not store.outbox_list()
        assert json.loads(rx.bodies[-1]) == json.loads(item.payload)

        # Night 2: the guest is gone. Re-notification of what is open, and the B2B finding resolved.
        second = asyncio.run(notifier(NIGHT1 + timedelta(days=1)).run(nightly(2, [findings[0], findings[2]])))
        assert second.sent == [("teams", "20260101T0230Z-night2.teams.digest")]
        card = json.loads(rx.bodies[-1])["attachments"][0]["content"]
        assert any("Resolved since the last alert" in b.get("text", "") for b in card["body"])
        states = store.alert_states(TENANT)
        assert states[findings[1].id].status == "resolved"
        assert not store.outbox_list()
        assert len(rx.requests) == 6
