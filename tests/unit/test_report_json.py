"""The JSON report licensing-audit/1: docs/design.md key order, the JSON Schema, and reading reports back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jsonschema
import orjson
import pytest

from licensing.errors import BadRequestError
from licensing.model import (
    AuditReport,
    GroupRef,
    LicenseAssignment,
    LicensedGroup,
    RunInfo,
    RunStatus,
    Scope,
    Sku,
    TenantSnapshot,
    Trigger,
    Unreadable,
    User,
)
from licensing.report.json_report import SCHEMA, report_from_json, to_json_bytes, to_json_dict
from licensing.rules import RuleContext, evaluate

ROOT = Path(__file__).resolve().parents[2]
STARTED = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"


def sample_report(*, status: RunStatus = RunStatus.PARTIAL) -> AuditReport:
    users = {
        "u1": User(
            id="u1",
            display_name="Zoë Ångström",
            user_principal_name="zoe_fabrikam.com#EXT#@contoso.onmicrosoft.com",
            account_enabled=False,
            assignments=(LicenseAssignment(E3, "g1", "Error", "CountViolation"),),
        ),
        "u2": User(
            id="u2",
            display_name='=HYPERLINK("x")',
            assignments=(LicenseAssignment(E3, None, "Active"), LicenseAssignment(E3, "g1", "Active")),
        ),
    }
    snap = TenantSnapshot(
        tenant_id="tenant-1",
        skus=(
            Sku(sku_id=E3, sku_part_number="ENTERPRISEPACK", enabled=10, consumed=12, warning=2),
            Sku(sku_id="c1", sku_part_number="COMPANY_ADDON", applies_to="Company", enabled=1, consumed=0),
        ),
        groups=(
            LicensedGroup(
                id="g1",
                display_name="Ventes — Île-de-France",
                sku_ids=(E3,),
                processing_state="ProcessingInProgress",
                user_ids=("u1", "u2"),
                member_groups=(GroupRef("n1", "Équipe"),),
            ),
            LicensedGroup(id="g2", display_name="Gone", sku_ids=(E3,), members_read=False),
        ),
        users=users,
        unreadable=(Unreadable("members", "g2", "404 deleted mid-run"),),
    )
    ev = evaluate(snap, RuleContext(now=STARTED, history={}))
    run = RunInfo(
        id="20261124T023000Z-abcd1234",
        tenant_id="tenant-1",
        trigger=Trigger.SCHEDULE,
        scope=Scope.TENANT,
        started_at=STARTED,
        finished_at=STARTED + timedelta(seconds=42),
        status=status,
        graph_requests=17,
        graph_throttled=1,
        errors=("members g2: 404 deleted mid-run", *ev.errors),
        request_id="req-1",
        requested_by="runbook",
        resource_units=33.5,
        tenant_name="Contoso",
    )
    return AuditReport(run=run, skus=ev.skus, groups=ev.groups, findings=ev.findings, outcomes=ev.outcomes)


def schema() -> dict:
    return json.loads((ROOT / "licensing" / "data" / "report.schema.json").read_text(encoding="utf-8"))


def validate(doc: object) -> None:
    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(doc)


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_keys_follow_design_order() -> None:
    doc = orjson.loads(to_json_bytes(sample_report()))
    assert list(doc) == ["schema", "run", "skus", "groups", "findings", "outcomes"]
    assert doc["schema"] == SCHEMA == "licensing-audit/1"
    assert list(doc["run"])[:10] == [
        "id", "tenant_id", "trigger", "scope", "started_at", "finished_at", "status",
        "graph_requests", "graph_throttled", "errors",
    ]  # fmt: skip
    assert list(doc["skus"][0])[:11] == [
        "sku_id", "sku_part_number", "enabled", "consumed", "available", "warning", "suspended", "locked_out",
        "group_assigned_users", "waiting_users", "assigned_by_groups",
    ]  # fmt: skip
    assert list(doc["groups"][0]) == [
        "id", "display_name", "sku_ids", "processing_state", "members", "users", "b2b_users", "nested_groups",
        "license_errors",
    ]  # fmt: skip
    assert list(doc["findings"][0])[:10] == [
        "id", "kind", "severity", "message", "sku_id", "sku_part_number", "group_id", "user_id", "member_group_id",
        "error",
    ]  # fmt: skip


def test_generated_reports_validate_against_the_schema() -> None:
    for status in RunStatus:
        doc = orjson.loads(to_json_bytes(sample_report(status=status)))
        validate(doc)
    doc = to_json_dict(sample_report())
    assert {f["kind"] for f in doc["findings"]} >= {"seat_shortage", "b2b_member", "nested_group", "license_error"}
    assert doc["run"]["started_at"] == "2026-11-24T02:30:00+00:00"
    assert doc["skus"][0]["available"] < 0 or doc["skus"][1]["available"] < 0


def test_schema_rejects_what_design_forbids() -> None:
    doc = to_json_dict(sample_report())
    for path, value in [
        (("findings", 0, "severity"), "fatal"),
        (("findings", 0, "kind"), "made_up"),
        (("run", "trigger"), "cron"),
        (("run", "scope"), "world"),
        (("run", "status"), "ok"),
        (("schema",), "licensing-audit/2"),
    ]:
        broken = json.loads(json.dumps(doc))
        target = broken
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            validate(broken)
    missing = json.loads(json.dumps(doc))
    del missing["findings"][0]["member_group_id"]
    with pytest.raises(jsonschema.ValidationError):
        validate(missing)


def test_unicode_is_written_as_utf8() -> None:
    raw = to_json_bytes(sample_report())
    assert "Zoë Ångström".encode() in raw and "Île-de-France".encode() in raw
    assert raw.endswith(b"\n")


def test_round_trip() -> None:
    report = sample_report()
    assert report_from_json(to_json_bytes(report)) == report
    assert report_from_json(to_json_bytes(report).decode()) == report
    assert report_from_json(to_json_dict(report)) == report


def test_reading_ignores_unknown_keys_and_defaults_missing_extras() -> None:
    doc = to_json_dict(sample_report())
    doc["future"] = {"anything": 1}
    doc["findings"][0]["new_field"] = True
    for key in ("request_id", "requested_by", "scope_id", "resource_units", "tenant_name"):
        del doc["run"][key]
    del doc["outcomes"]
    report = report_from_json(doc)
    assert report.outcomes == () and report.run.tenant_name == "" and report.run.resource_units == 0.0
    assert len(report.findings) == len(doc["findings"])


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"{not json", "invalid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"schema": "other/1"}', "schema is 'other/1'"),
        (b'{"schema": "licensing-audit/1", "run": 3}', "$.run must be an object"),
    ],
)
def test_bad_documents_give_one_clear_line(data: bytes, words: str) -> None:
    with pytest.raises(BadRequestError, match="not a licensing-audit/1 report") as info:
        report_from_json(data)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_bad_field_names_its_path() -> None:
    doc = to_json_dict(sample_report())
    doc["findings"][1]["severity"] = "fatal"
    with pytest.raises(BadRequestError, match=r"\$\.findings\[1\]\.severity must be one of info, warning, critical"):
        report_from_json(doc)
    doc = to_json_dict(sample_report())
    doc["run"]["started_at"] = "yesterday"
    with pytest.raises(BadRequestError, match=r"\$\.run\.started_at must be an ISO-8601"):
        report_from_json(doc)
    doc = to_json_dict(sample_report())
    doc["skus"][0]["enabled"] = "ten"
    with pytest.raises(BadRequestError, match=r"\$\.skus\[0\]\.enabled must be an integer"):
        report_from_json(doc)
