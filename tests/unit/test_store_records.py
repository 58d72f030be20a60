"""licensing/store/records.py and codec.py: records survive the trip to table entities and back, whatever they hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from licensing.model import (
    AlertState,
    AlertStatus,
    Channel,
    Finding,
    OutboxItem,
    RunInfo,
    RunStatus,
    Scope,
    Severity,
    Trigger,
)
from licensing.store import records
from licensing.store.codec import get_bytes, get_json, get_text, put_bytes, put_json, put_text

KEYS = {"PartitionKey": "p", "RowKey": "r"}
_TEXT = st.text(max_size=80)
_OPT = st.none() | _TEXT
_WHEN = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200_000))
def test_text_of_any_size_round_trips(value: str) -> None:
    entity: dict[str, object] = {}
    put_text(entity, "v", value)
    assert get_text(entity, "v") == value


@settings(max_examples=50, deadline=None)
@given(
    st.binary(max_size=300_000),
    st.dictionaries(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1) | _TEXT, max_size=5),
)
def test_bytes_and_json_round_trip(blob: bytes, doc: dict[str, object]) -> None:
    entity: dict[str, object] = {}
    put_bytes(entity, "b", blob)
    put_json(entity, "j", doc)
    assert get_bytes(entity, "b") == blob and get_json(entity, "j") == doc


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        RunInfo,
        id=_TEXT.filter(bool), tenant_id=_TEXT.filter(bool), trigger=st.sampled_from(Trigger),
        scope=st.sampled_from(Scope), started_at=_WHEN, finished_at=st.none() | _WHEN,
        status=st.sampled_from(RunStatus), graph_requests=st.integers(0, 2**40), graph_throttled=st.integers(0, 99),
        errors=st.lists(_TEXT, max_size=3).map(tuple), request_id=_OPT, requested_by=_OPT, scope_id=_OPT,
        resource_units=st.floats(0, 1e9), tenant_name=_TEXT,
    )
)  # fmt: skip
def test_runs_round_trip(run: RunInfo) -> None:
    assert records.run_from_entity(records.run_to_entity(run, KEYS)) == run


@settings(max_examples=100, deadline=None)
@given(
    st.builds(
        Finding,
        id=_TEXT.filter(bool), kind=_TEXT.filter(bool), severity=st.sampled_from(Severity), message=_TEXT,
        sku_id=_OPT, sku_part_number=_OPT, group_id=_OPT, user_id=_OPT, member_group_id=_OPT, error=_OPT,
        group_name=_OPT, user_name=_OPT, member_group_name=_OPT, product_name=_OPT,
    )
)  # fmt: skip
def test_findings_round_trip(finding: Finding) -> None:
    assert records.finding_from_entity(records.finding_to_entity(finding, KEYS, 0)) == finding


def test_alert_state_and_outbox_items_keep_their_enums() -> None:
    now = datetime(2026, 12, 2, 5, 0, tzinfo=UTC)
    state = AlertState("f1", "seat_low", Severity.WARNING, now, now, now, Severity.WARNING, AlertStatus.RESOLVED, now)
    back = records.alert_from_entity(records.alert_to_entity(state, KEYS), etag="e")
    assert (
        back == state.__class__(**{**state.__dict__, "etag": "e"}) if hasattr(state, "__dict__") else back.etag == "e"
    )
    assert back.status is AlertStatus.RESOLVED and back.severity is Severity.WARNING
    item = OutboxItem(Channel.MAIL, "run.mail.all", "run", b"{}", now - timedelta(hours=1), 2, "[dead] x", True)
    assert records.outbox_from_entity(records.outbox_to_entity(item, KEYS)) == item
