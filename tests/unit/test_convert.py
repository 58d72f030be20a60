"""licensing/convert.py: one converter between records and plain data, and its messages in words.

The round trips below iterate the records' own fields, so a field added to licensing.model is
covered here, in the JSON report and in the table entities without touching this file."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import pytest

from licensing.convert import ConversionError, field_kinds, from_plain, to_plain
from licensing.model import (
    AlertState,
    AlertStatus,
    AuditReport,
    Channel,
    Finding,
    OutboxItem,
    Severity,
    SkuDay,
    Suppressed,
)
from licensing.report.json_report import report_from_json, to_json_dict
from licensing.store import records
from tests.factories import T0, finding, run_info, sku_summary


def _every_field_set() -> Finding:
    values = {f.name: f"{f.name}-value" for f in dataclasses.fields(Finding)}
    values["severity"] = Severity.CRITICAL
    values["since"] = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)  # the fields that are not text
    values["suppressed"] = Suppressed("s0123456789ab", "accepted risk", "cli:ana", datetime(2027, 1, 1, tzinfo=UTC))
    return Finding(**values)


def test_datetimes_keep_the_isoformat_of_the_stored_rows_and_the_report() -> None:
    plain = to_plain(run_info(finished_at=datetime(2026, 11, 24, 3, 0, 0, 123456, tzinfo=UTC)))
    assert plain["started_at"] == "2026-11-24T02:30:00+00:00"
    assert plain["finished_at"] == "2026-11-24T03:00:00.123456+00:00"
    assert to_plain(SkuDay(sku_id="s", day=date(2026, 11, 24), enabled=1, consumed=0))["day"] == "2026-11-24"


def test_every_finding_field_reaches_the_report_and_the_table_and_comes_back() -> None:
    full = _every_field_set()
    report = AuditReport(run=run_info(), findings=(full,))
    document = to_json_dict(report)
    assert set(document["findings"][0]) == {f.name for f in dataclasses.fields(Finding)}
    assert report_from_json(document).findings == (full,)
    entity = records.finding_to_entity(full, {"PartitionKey": "p", "RowKey": "r"}, 0)
    assert entity["finding_id"] == full.id and "id" not in entity
    assert records.finding_from_entity(entity) == full


def test_records_with_bytes_enums_and_etags_survive_a_table_round_trip() -> None:
    item = OutboxItem(channel=Channel.TEAMS, id="o1", run_id="r1", payload=b"\x00\xffcard", created_at=T0)
    entity = records.outbox_to_entity(item, {"PartitionKey": "p", "RowKey": "r"})
    assert entity["payload"] == b"\x00\xffcard" and entity["channel"] == "teams"
    assert records.outbox_from_entity(entity) == item
    state = AlertState(
        finding_id="f", kind="seat_low", severity=Severity.WARNING, first_seen=T0, last_seen=T0, etag="W/1"
    )
    entity = records.alert_to_entity(state, {"PartitionKey": "p", "RowKey": "r"})
    assert "etag" not in entity and entity["status"] == AlertStatus.OPEN.value
    assert records.alert_from_entity(entity, "W/1") == state
    summary = sku_summary()
    assert records.sku_from_entity(records.sku_to_entity(summary, {}, 0)) == summary


def test_large_integers_are_stored_as_int64() -> None:
    entity = records.run_to_entity(run_info(graph_requests=2**40), {})
    assert entity["graph_requests"].value == 2**40
    assert records.run_from_entity(entity).graph_requests == 2**40


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"id": 3}, "$.id must be a string"),
        (
            {"id": "a", "kind": "k", "severity": "fatal", "message": "m"},
            "$.severity must be one of info, warning, critical",
        ),
        ({"id": "a", "kind": "k", "severity": "info"}, "$.message must be present"),
        (
            {"id": "a", "kind": "k", "severity": "info", "message": "m", "sku_id": 5},
            "$.sku_id must be a string or null",
        ),
    ],
)
def test_a_value_that_does_not_fit_is_one_line_naming_its_path(data: dict[str, object], words: str) -> None:
    with pytest.raises(ConversionError) as info:
        from_plain(Finding, data)
    assert str(info.value) == words


def test_nested_paths_and_datetimes_are_named() -> None:
    document = to_json_dict(AuditReport(run=run_info(), findings=(finding(),)))
    document["run"]["started_at"] = "yesterday"
    with pytest.raises(ConversionError, match=r"^\$\.run\.started_at must be an ISO-8601 date and time$"):
        from_plain(AuditReport, document)


def test_a_stored_row_another_version_wrote_is_one_storage_error() -> None:
    from licensing.errors import StorageError

    entity = records.finding_to_entity(finding(), {}, 0)
    entity["severity"] = "fatal"
    with pytest.raises(StorageError, match=r"^stored Finding\.severity must be one of info, warning, critical"):
        records.finding_from_entity(entity)


def test_field_kinds_say_how_a_flat_store_keeps_each_field() -> None:
    kinds = field_kinds(OutboxItem)
    assert kinds["payload"] == "bytes" and kinds["attempts"] == "scalar" and kinds["created_at"] == "text"
    assert field_kinds(AuditReport)["findings"] == "json" and field_kinds(AlertState)["severity"] == "text"
