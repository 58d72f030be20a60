"""The CSV report: skus.csv, groups.csv and findings.csv, safe to open in Excel.

UTF-8 with a BOM (``utf-8-sig``) so Excel shows Unicode names; every string cell that a
spreadsheet would read as a formula (starting with ``=``, ``+``, ``-``, ``@``, tab or CR) is
prefixed with ``'``: display names and UPNs come from the tenant and must not run as formulas.
OWASP "CSV Injection": https://owasp.org/www-community/attacks/CSV_Injection

Bidirectional controls (U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C) are written as the
visible text ``<U+202E>``: raw, a tenant name could reorder what a cell shows ("Trojan Source",
CVE-2021-42574); as text nothing is lost.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

from licensing.model import AuditReport, Finding, GroupSummary, SkuSummary
from licensing.text import mark_bidi

__all__ = [
    "FINDING_COLUMNS",
    "GROUP_COLUMNS",
    "SKU_COLUMNS",
    "findings_csv",
    "groups_csv",
    "safe_cell",
    "skus_csv",
    "write_csv",
]

_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


SKU_COLUMNS: Final = (
    "sku_id",
    "sku_part_number",
    "product_name",
    "enabled",
    "consumed",
    "available",
    "warning",
    "suspended",
    "locked_out",
    "group_assigned_users",
    "waiting_users",
    "assigned_by_groups",
)
GROUP_COLUMNS: Final = (
    "id",
    "display_name",
    "sku_ids",
    "processing_state",
    "members",
    "users",
    "b2b_users",
    "nested_groups",
    "license_errors",
)
FINDING_COLUMNS: Final = (
    "id",
    "kind",
    "severity",
    "message",
    "sku_id",
    "sku_part_number",
    "product_name",
    "group_id",
    "group_name",
    "user_id",
    "user_name",
    "member_group_id",
    "member_group_name",
    "error",
    # Round two, appended so that existing column positions hold: when the user waits since (license_error), and
    # the suppression that covers the finding (empty when none).
    "since",
    "suppressed_by",
    "suppressed_reason",
    "suppressed_until",
)


def _finding_cell(f: Finding, column: str) -> Cell:
    if column == "since":
        return f.since.isoformat() if f.since else None
    if column.startswith("suppressed_"):
        mark = f.suppressed
        if mark is None:
            return None
        value = getattr(mark, column.removeprefix("suppressed_"))
        return value.isoformat() if hasattr(value, "isoformat") else value
    value = getattr(f, column)
    return value if isinstance(value, str | int | float) or value is None else str(value)


Cell = str | int | float | None


def safe_cell(value: Cell) -> str | int | float:
    """A cell value a spreadsheet will not evaluate: strings that look like formulas get a leading '."""
    if value is None:
        return ""
    if isinstance(value, str):
        value = mark_bidi(value)
        if value.startswith(_FORMULA_START):
            return "'" + value
    return value


def _text(rows: Iterable[Sequence[Cell]], header: Sequence[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180 line ends, what Excel writes too
    writer.writerow(header)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def _join(values: Iterable[str]) -> str:
    return ";".join(values)


def skus_csv(skus: Iterable[SkuSummary]) -> str:
    return _text(
        (
            (
                s.sku_id,
                s.sku_part_number,
                s.product_name,
                s.enabled,
                s.consumed,
                s.available,
                s.warning,
                s.suspended,
                s.locked_out,
                s.group_assigned_users,
                s.waiting_users,
                _join(s.assigned_by_groups),
            )
            for s in skus
        ),
        SKU_COLUMNS,
    )


def groups_csv(groups: Iterable[GroupSummary]) -> str:
    return _text(
        (
            (
                g.id,
                g.display_name,
                _join(g.sku_ids),
                g.processing_state,
                g.members,
                g.users,
                g.b2b_users,
                g.nested_groups,
                g.license_errors,
            )
            for g in groups
        ),
        GROUP_COLUMNS,
    )


def findings_csv(findings: Iterable[Finding]) -> str:
    """findings.csv: the one definition, used by the CSV report and the mail attachment (FINDING_COLUMNS order)."""
    return _text(([_finding_cell(f, column) for column in FINDING_COLUMNS] for f in findings), FINDING_COLUMNS)


def write_csv(report: AuditReport, directory: Path) -> list[Path]:
    """Write skus.csv, groups.csv and findings.csv into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("skus.csv", skus_csv(report.skus)),
        ("groups.csv", groups_csv(report.groups)),
        ("findings.csv", findings_csv(report.findings)),
    ):
        path = directory / name
        # newline="" keeps the csv module's \r\n as written (no translation on Windows).
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            handle.write(text)
        written.append(path)
    return written
