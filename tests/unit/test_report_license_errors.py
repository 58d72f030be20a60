"""Issue 30, item 6: the terminal's license error lines can be acted on: sign-in name and products, one line per
user, counts that match the JSON (two people with the same display name are two lines, not four copies)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from licensing.model import AuditReport, Finding, RunInfo, RunStatus, Scope, Severity, Trigger, finding_id
from licensing.report.terminal import render_summary

GROUP = "0a1b2c3d-0000-4000-8000-000000000001"
PRODUCTS = (
    ("6fd2c87f-b296-42f0-b197-1e91e994b900", "Office 365 E3"),
    ("efccb6f7-5641-4e0e-bd10-b4976e1bf68e", "EMS E3"),
)


def _error(user: int, upn: str, sku: tuple[str, str]) -> Finding:
    uid = f"0a1b2c3d-0000-4000-9000-{user:012x}"
    return Finding(
        id=finding_id("license_error", GROUP, uid, sku[0], "CountViolation"),
        kind="license_error",
        severity=Severity.CRITICAL,
        message=f"Amara Sherman ({upn}) did not get {sku[1]} from group 'SG-Lic-Office365-E3': no seat left",
        sku_id=sku[0],
        group_id=GROUP,
        user_id=uid,
        error="CountViolation",
        group_name="SG-Lic-Office365-E3",
        user_name="Amara Sherman",
        product_name=sku[1],
    )


def test_two_people_with_one_name_are_two_lines_with_sign_in_names_and_products() -> None:
    findings = tuple(
        _error(n, upn, sku)
        for n, upn in enumerate(("amara.sherman@contoso.com", "amara.sherman2@contoso.com"))
        for sku in PRODUCTS
    )
    started = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    run = RunInfo("run-1", "t", Trigger.CLI, Scope.TENANT, started, started + timedelta(seconds=3), RunStatus.SUCCEEDED)
    buf = io.StringIO()
    render_summary(AuditReport(run=run, findings=findings), console=Console(file=buf, width=200, highlight=False))
    out = buf.getvalue()
    assert "SG-Lic-Office365-E3 (4 errors of 2 users)" in out
    assert "amara.sherman@contoso.com (Amara Sherman): Office 365 E3, EMS E3 — CountViolation" in out
    assert "amara.sherman2@contoso.com (Amara Sherman): Office 365 E3, EMS E3 — CountViolation" in out
    assert out.count("Amara Sherman") == 2
