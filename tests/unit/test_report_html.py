"""The HTML report: escaping of hostile tenant strings, links, filters, no external resources, size caps."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from licensing.errors import LicensingError
from licensing.links import group_url, user_url
from licensing.model import (
    AuditReport,
    Finding,
    GroupSummary,
    RuleOutcome,
    RunInfo,
    RunStatus,
    Scope,
    Severity,
    SkuDay,
    SkuSummary,
    Trigger,
    finding_id,
)
from licensing.report.html import (
    MAX_ROWS_PER_KIND,
    clean_text,
    kind_info,
    project_seats,
    render_html,
    script_json,
    write_html,
)
from licensing.settings import CLOUDS
from tests.factories import sku_summary

HOSTILE = (
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    "[click me](https://evil.example/phish) **bold** _it_",
    '=HYPERLINK("https://evil.example","x")',
    "ctl\x00\x07\x1b[31mred\x1b[0m\x7f",
    "\u202eevil\u202c שלום עולם",
    "L" * 5000,
    "{{ 7*7 }} {% raw %}",
)
SKU_ID = "6fd2c87f-b296-42f0-b197-1e91e994b900"
GROUP_ID = "0a1b2c3d-0000-4000-8000-000000000001"
USER_ID = "0a1b2c3d-0000-4000-8000-0000000000aa"


def _sku(**kw: object) -> SkuSummary:
    return sku_summary(**{"sku_id": SKU_ID, "assigned_by_groups": (GROUP_ID,), **kw})


def _run(**kw: object) -> RunInfo:
    started = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    base: dict[str, object] = {
        "id": "20261124T023000Z-abcdef12",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "tenant_name": "Contoso",
        "trigger": Trigger.SCHEDULE,
        "scope": Scope.TENANT,
        "started_at": started,
        "finished_at": started + timedelta(seconds=75),
        "status": RunStatus.SUCCEEDED,
        "graph_requests": 321,
        "graph_throttled": 4,
        "resource_units": 987.0,
    }
    base.update(kw)
    return RunInfo(**base)  # type: ignore[arg-type]


def _finding(kind: str, severity: Severity, i: int, name: str = "Alice", group: str = "Sales") -> Finding:
    uid, gid = f"{USER_ID[:-4]}{i:04x}", GROUP_ID
    return Finding(
        id=finding_id(kind, gid, uid, str(i)),
        kind=kind,
        severity=severity,
        message=f"{name} in {group}: problem {i}",
        group_id=gid,
        user_id=uid,
        group_name=group,
        user_name=name,
        sku_id=SKU_ID if kind == "license_error" else None,
        sku_part_number="ENTERPRISEPACK" if kind == "license_error" else None,
        error="CountViolation" if kind == "license_error" else None,
    )


def _report(findings: tuple[Finding, ...] = (), **run_kw: object) -> AuditReport:
    group = GroupSummary(GROUP_ID, "Sales", (SKU_ID,), "ProcessingComplete", 10, 9, 1, 0, 3)
    return AuditReport(run=_run(**run_kw), skus=(_sku(),), groups=(group,), findings=findings)


def _hostile_report() -> AuditReport:
    findings = []
    for i, text in enumerate(HOSTILE):
        findings.append(_finding("b2b_member", Severity.WARNING, i, name=text, group=text))
        findings.append(
            Finding(
                id=finding_id("nested_group", GROUP_ID, str(i)),
                kind="nested_group",
                severity=Severity.WARNING,
                message=text,
                group_id=GROUP_ID,
                member_group_id=f"{GROUP_ID[:-4]}{i:04x}",
                group_name=text,
                member_group_name=text,
            )
        )
    group = GroupSummary(GROUP_ID, HOSTILE[0], (SKU_ID,), HOSTILE[1], 10, 9, 1, 0, 3)
    return AuditReport(
        run=_run(tenant_name=HOSTILE[1], errors=(HOSTILE[0],), requested_by=HOSTILE[2]),
        skus=(_sku(product_name=HOSTILE[0], sku_part_number=HOSTILE[1]),),
        groups=(group,),
        findings=tuple(findings),
        outcomes=(RuleOutcome("seat_forecast", "not_evaluated", reason=HOSTILE[1]),),
    )


def _history(days: int = 30, start: int = 50, step: int = 1, enabled: int = 100) -> dict[str, list[SkuDay]]:
    first = date(2026, 10, 26)
    return {
        SKU_ID: [SkuDay(SKU_ID, first + timedelta(days=d), enabled, start + step * d) for d in range(days)],
    }


def test_hostile_strings_render_literally() -> None:
    html = render_html(_hostile_report())
    assert "<img" not in html
    assert "onerror=alert(1)>" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # The only script elements are ours: the data block and the inline script.
    assert html.count("<script") == 2
    assert html.count("</script>") == 2
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Markdown and CSV formulas stay text: no link to the attacker's host.
    assert 'href="https://evil.example' not in html
    assert "[click me](https://evil.example/phish)" in html
    assert "=HYPERLINK(&#34;https://evil.example&#34;,&#34;x&#34;)" in html
    # Jinja syntax in data is data.
    assert "{{ 7*7 }}" in html


def test_control_and_bidi_characters_are_replaced() -> None:
    html = render_html(_hostile_report())
    for ch in ("\x00", "\x07", "\x1b", "\x7f", "\u202e", "\u202c"):
        assert ch not in html
    assert "שלום עולם" in html
    assert "<bdi>" in html  # names sit in their own bidi box
    assert clean_text("a\x1bb\u2066c") == "a\ufffdb\ufffdc"
    assert clean_text("abcdef", 4) == "abc…"


def test_very_long_names_are_trimmed() -> None:
    html = render_html(_hostile_report())
    assert "L" * 5000 not in html
    assert "L" * 79 + "…" in html
    assert max(len(line) for line in html.splitlines()) < 40_000


def test_links_point_at_the_admin_center_of_the_cloud() -> None:
    findings = (_finding("b2b_member", Severity.WARNING, 1),)
    html = render_html(_report(findings), cloud="usgov")
    assert f'href="{group_url(GROUP_ID, "usgov")}"' in html
    assert f'href="{user_url(findings[0].user_id or "", "usgov")}"' in html
    assert "entra.microsoft.us" in html
    assert "entra.microsoft.com" not in html
    assert 'rel="noopener noreferrer"' in html


def test_no_reference_to_external_hosts_except_admin_center_links() -> None:
    for report in (_hostile_report(), _report((_finding("b2b_member", Severity.WARNING, 1),))):
        html = render_html(report, history=_history())
        portal = CLOUDS["global"].portal
        licenses = CLOUDS["global"].m365_admin + "/Adminportal/Home#/licenses"
        attributes = re.findall(r'\b(?:href|src|action|xlink:href|srcset|poster|data)\s*=\s*"([^"]*)"', html)
        assert attributes
        for value in attributes:
            assert value == licenses or value.startswith((portal + "/", "#", "url(#")), value
        assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html)
        assert "@import" not in html
        # Outside the tenant's own text, no http(s) reference at all but the portal's.
        static = render_html(_report(), history=_history())
        hosts = {m.group(1) for m in re.finditer(r"https?://([^/\"'\s<>]+)", static)}
        assert hosts <= {portal.removeprefix("https://"), "admin.microsoft.com"}, hosts


def test_filter_controls_present_and_every_row_tagged() -> None:
    findings = (
        _finding("license_error", Severity.CRITICAL, 1),
        _finding("b2b_member", Severity.WARNING, 2),
        _finding("disabled_user_licensed", Severity.INFO, 3),
    )
    html = render_html(_report(findings))
    for sev in ("critical", "warning", "info"):
        assert f'data-filter-sev="{sev}"' in html
    assert 'id="kind-filter"' in html
    assert 'id="text-filter"' in html
    assert '<html lang="en" class="no-js">' in html  # the filter bar is hidden until the script runs
    assert len(re.findall(r'<tr data-sev="(critical|warning|info)" data-kind="[a-z0-9_]+"', html)) == 3
    # Critical first.
    assert html.index('id="kind-license_error"') < html.index('id="kind-b2b_member"')
    assert html.index('id="kind-b2b_member"') < html.index('id="kind-disabled_user_licensed"')


def test_remediation_and_titles_come_from_the_rules() -> None:
    findings = (_finding("b2b_member", Severity.WARNING, 1),)
    html = render_html(_report(findings))
    info = kind_info("b2b_member")
    from markupsafe import escape

    assert str(escape(info.title)) in html
    if info.remediation:
        assert str(escape(info.remediation)) in html
    assert kind_info("not_a_kind").title == "Not a kind"


def test_run_metadata_shown() -> None:
    html = render_html(_report(errors=("group 123 could not be read",), status=RunStatus.PARTIAL))
    for text in (
        "20261124T023000Z-abcdef12",
        "schedule",
        "tenant",
        "partial",
        "2026-11-24 02:30:00 UTC",
        "2026-11-24 02:31:15 UTC",
        "1 min 15 s",
        ">321<",
        ">4<",
        ">987<",
        "group 123 could not be read",
    ):
        assert text in html, text


def test_zero_findings() -> None:
    html = render_html(_report())
    assert 'id="no-findings"' in html
    assert "<tr data-sev" not in html
    assert 'id="seat-chart"' in html


def test_many_findings_are_capped_per_kind() -> None:
    kinds = (("b2b_member", Severity.WARNING), ("license_error", Severity.CRITICAL))
    findings = tuple(_finding(kind, sev, i) for kind, sev in kinds for i in range(10_000))
    clock = time.perf_counter()
    html = render_html(_report(findings))
    elapsed = time.perf_counter() - clock
    assert html.count("<tr data-sev=") == 2 * MAX_ROWS_PER_KIND
    assert html.count('data-trimmed="8000"') == 2
    assert "Showing the first 2,000 of 10,000" in html
    assert len(html.encode()) < 6_000_000
    assert elapsed < 20
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html).group(1))  # type: ignore[union-attr]
    assert data["total"] == 20_000
    assert data["rendered"] == 2 * MAX_ROWS_PER_KIND


def test_script_json_cannot_close_the_script_element() -> None:
    value = {"name": "</script><script>alert(1)</script>", "x": "a&b>c\u2028\u2029<!--"}
    text = str(script_json(value))
    for bad in ("<", ">", "&", "\u2028", "\u2029"):
        assert bad not in text
    assert json.loads(text) == value


def test_seat_chart_marks_state_and_waiting() -> None:
    report = AuditReport(
        run=_run(),
        skus=(
            _sku(),
            _sku(
                sku_id="b",
                sku_part_number="SPE_E5",
                product_name="Microsoft 365 E5",
                enabled=10,
                consumed=12,
                available=-2,
                waiting_users=0,
            ),
            _sku(
                sku_id="c",
                sku_part_number="EMS",
                product_name="EMS E3",
                enabled=500,
                consumed=100,
                available=400,
                waiting_users=0,
            ),
        ),
        findings=(Finding(id="x", kind="seat_shortage", severity=Severity.CRITICAL, message="short", sku_id=SKU_ID),),
    )
    html = render_html(report)
    assert html.count('data-state="short"') == 2
    assert html.count('data-state="ok"') == 1
    assert html.count('class="waiting"') == 1
    assert "2 over" in html


def test_trend_chart_with_forecast_marker() -> None:
    html = render_html(_report(), history=_history())
    assert 'id="trends"' in html
    assert 'class="projection"' in html
    assert 'class="marker"' in html
    assert "full ~" in html
    assert 'id="trends"' not in render_html(_report())


def test_project_seats_least_squares() -> None:
    series = _history(days=30, start=50, step=1, enabled=100)[SKU_ID]
    projection = project_seats(series, 30)
    assert projection is not None
    assert projection.slope == pytest.approx(1.0)
    assert projection.intercept == pytest.approx(79.0)
    assert projection.days_left == pytest.approx(21.0)
    assert projection.reaches_on == series[-1].day + timedelta(days=21)
    assert project_seats(_history(step=-1)[SKU_ID], 30) is None
    assert project_seats(_history(days=6)[SKU_ID], 30) is None
    assert project_seats(_history(step=0)[SKU_ID], 30) is None
    # Only the window counts: an old decline does not hide a recent rise.
    old = [SkuDay(SKU_ID, date(2026, 1, 1) + timedelta(days=d), 100, 99 - d) for d in range(60)]
    recent = _history(days=10, start=60, step=2)[SKU_ID]
    assert project_seats(old + recent, 10) is not None


def test_write_html(tmp_path: Path) -> None:
    path = write_html(_report(), tmp_path / "out" / "report.html", history=_history())
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(LicensingError, match="cannot write the HTML report"):
        write_html(_report(), tmp_path / "out")  # a directory


def test_a_suppressed_finding_is_shown_with_who_why_and_until() -> None:
    from licensing.model import Suppressed
    from tests.factories import finding, run_info

    mark = Suppressed("s0123456789ab", "Partners <b>on purpose</b>", "cli:ana", datetime(2027, 1, 1, tzinfo=UTC))
    html = render_html(AuditReport(run=run_info(), findings=(finding(suppressed=mark),)))
    assert "Suppressed by cli:ana through 31 Dec 2026 (s0123456789ab): Partners &lt;b&gt;on purpose&lt;/b&gt;" in html
    timed = Suppressed("s0123456789ab", "r", "cli:ana", datetime(2027, 1, 1, 12, 0, tzinfo=UTC))
    html = render_html(AuditReport(run=run_info(), findings=(finding(suppressed=timed),)))
    assert "Suppressed by cli:ana until 2027-01-01 12:00 UTC (s0123456789ab)" in html


def test_an_unread_users_scan_shows_waiting_not_read_and_no_shortage_from_it() -> None:
    # Reviewer of issue 30 (the terminal's "Waiting 0"): the HTML seat chart said the same from a scan never read.
    from tests.factories import run_info

    sku = sku_summary(waiting_users=9, available=5, consumed=95)
    unread = run_info(status=RunStatus.PARTIAL, errors=("users: the users scan is not trusted: 3 users hold licences",))
    html = render_html(AuditReport(run=unread, skus=(sku,)))
    assert 'data-state="ok"' in html and 'data-state="short"' not in html
    assert '<td class="n">not read</td>' in html and "9 waiting" not in html
    read = render_html(AuditReport(run=replace(unread, errors=()), skus=(sku,)))
    assert 'data-state="short"' in read and "9 waiting" in read and "not read" not in read
