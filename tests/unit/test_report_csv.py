"""The CSV report: three files, UTF-8 with BOM, a header row, and no formula injection."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest

from licensing.model import AuditReport, Finding, GroupSummary, RunInfo, Scope, Severity, SkuSummary, Trigger
from licensing.report.csv_report import FINDING_COLUMNS, GROUP_COLUMNS, SKU_COLUMNS, safe_cell, write_csv

INJECTIONS = [
    '=HYPERLINK("https://evil.example","click")',
    "+1+1",
    "-2+3",
    "@SUM(A1:A2)",
    "\tTabbed",
    "\rCarriage",
]


def report() -> AuditReport:
    run = RunInfo(
        id="r1", tenant_id="t1", trigger=Trigger.CLI, scope=Scope.TENANT, started_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    skus = (
        SkuSummary("s1", "SPE_E5", "Microsoft 365 E5", 10, 12, -2, 0, 1, 0, 9, 3, ("g1", "g2")),
        SkuSummary("s2", "=CMD|'/c calc'!A0", "=CMD|'/c calc'!A0", 0, 0, 0, 0, 0, 0, 0, 0, ()),
    )
    groups = tuple(
        GroupSummary(f"g{i}", name, ("s1",), "ProcessingComplete", 3, 2, 1, 1, 0)
        for i, name in enumerate(["Zoë's Ünïcode 组", *INJECTIONS])
    )
    findings = tuple(
        Finding(
            id=f"{i:032x}",
            kind="b2b_member",
            severity=Severity.WARNING,
            message=f"Group '{name}' licenses the B2B account x, with a comma and \"quotes\"\nand a newline",
            group_id=f"g{i}",
            user_id="u1",
            group_name=name,
            user_name="-Mallory",
        )
        for i, name in enumerate(["Zoë's Ünïcode 组", *INJECTIONS])
    )
    return AuditReport(run=run, skus=skus, groups=groups, findings=findings)


def read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def test_writes_three_files_with_bom_and_header(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "dir"
    paths = write_csv(report(), out)
    assert [p.name for p in paths] == ["skus.csv", "groups.csv", "findings.csv"]
    for path, columns in zip(paths, (SKU_COLUMNS, GROUP_COLUMNS, FINDING_COLUMNS), strict=True):
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
        assert raw[3:].split(b"\r\n", 1)[0].decode() == ",".join(columns)


def test_round_trip_with_unicode_and_injection_cases(tmp_path: Path) -> None:
    skus_path, groups_path, findings_path = write_csv(report(), tmp_path)
    skus = read(skus_path)
    assert skus[0]["product_name"] == "Microsoft 365 E5"
    assert skus[0]["available"] == "-2", "negative numbers stay numbers"
    assert skus[0]["assigned_by_groups"] == "g1;g2"
    assert skus[1]["sku_part_number"] == "'=CMD|'/c calc'!A0"
    groups = read(groups_path)
    assert groups[0]["display_name"] == "Zoë's Ünïcode 组"
    for row, name in zip(groups[1:], INJECTIONS, strict=True):
        assert row["display_name"] == "'" + name
    findings = read(findings_path)
    assert len(findings) == 1 + len(INJECTIONS)
    for row, name in zip(findings[1:], INJECTIONS, strict=True):
        assert row["group_name"] == "'" + name
        assert row["user_name"] == "'-Mallory"
        assert row["message"].startswith("Group '")  # starts with a letter: untouched
        assert "\nand a newline" in row["message"]
    assert findings[0]["severity"] == "warning" and findings[0]["sku_id"] == ""


def test_no_cell_starts_a_formula(tmp_path: Path) -> None:
    for path in write_csv(report(), tmp_path):
        with path.open(encoding="utf-8-sig", newline="") as handle:
            for row in list(csv.reader(handle))[1:]:
                for cell in row:
                    assert not (
                        cell[:1] in ("=", "+", "@", "\t", "\r")
                        or (cell.startswith("-") and not cell.lstrip("-").isdigit())
                    ), cell


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+x", "'+x"),
        ("-x", "'-x"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
        (-5, -5),
        (2.5, 2.5),
    ],
)
def test_safe_cell(value: object, expected: object) -> None:
    assert safe_cell(value) == expected  # type: ignore[arg-type]


def test_empty_report_still_has_headers(tmp_path: Path) -> None:
    empty = AuditReport(run=report().run)
    for path in write_csv(empty, tmp_path):
        assert len(path.read_text(encoding="utf-8-sig").splitlines()) == 1


def test_waiting_time_and_suppression_have_columns_at_the_end(tmp_path: Path) -> None:
    from licensing.model import Suppressed
    from tests.factories import finding, run_info

    since = datetime(2026, 11, 28, 7, 0, tzinfo=UTC)
    mark = Suppressed("s0123456789ab", "accepted", "cli:ana", datetime(2027, 1, 1, tzinfo=UTC))
    rows = [finding(kind="license_error", since=since, suppressed=mark), finding()]
    paths = write_csv(AuditReport(run=run_info(), findings=tuple(rows)), tmp_path)
    with paths[2].open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0])[-4:] == ["since", "suppressed_by", "suppressed_reason", "suppressed_until"]
    assert list(table[0])[: len(FINDING_COLUMNS) - 4] == list(FINDING_COLUMNS[:-4]), "earlier columns keep their place"
    assert (table[0]["since"], table[0]["suppressed_by"], table[0]["suppressed_reason"]) == (
        since.isoformat(),
        "cli:ana",
        "accepted",
    )
    assert table[0]["suppressed_until"] == "2027-01-01T00:00:00+00:00" and table[1]["suppressed_by"] == ""
