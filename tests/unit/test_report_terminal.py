"""Terminal output: plain text off a terminal, NO_COLOR, quiet/verbose, hostile names, progress, history."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from rich.console import Console

from licensing.model import (
    AuditReport,
    Finding,
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
from licensing.report.terminal import _sparkline, progress_reporter, render_history, render_summary

SKU_ID = "6fd2c87f-b296-42f0-b197-1e91e994b900"
ANSI = re.compile(r"\x1b\[")
COLOUR = re.compile(r"\x1b\[[0-9;]*(?:3[0-9]|9[0-7]|38;)")


def _plain_console(width: int = 120) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=width, highlight=False), buf


def _report(n_users: int = 3, user_names: tuple[str, ...] = ()) -> AuditReport:
    started = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    run = RunInfo(
        id="run-1",
        tenant_id="t",
        tenant_name="Contoso",
        trigger=Trigger.CLI,
        scope=Scope.TENANT,
        started_at=started,
        finished_at=started + timedelta(seconds=12.5),
        status=RunStatus.SUCCEEDED,
        graph_requests=42,
    )
    sku = SkuSummary(SKU_ID, "ENTERPRISEPACK", "Office 365 E3", 100, 101, -1, 0, 0, 0, 95, 4, ("g1",))
    names = user_names or tuple(f"User {i:03d}" for i in range(n_users))
    findings = [
        Finding(
            id=finding_id("seat_shortage", SKU_ID),
            kind="seat_shortage",
            severity=Severity.CRITICAL,
            message="Office 365 E3: 4 users wait for a seat",
            sku_id=SKU_ID,
            sku_part_number="ENTERPRISEPACK",
        )
    ]
    for i, name in enumerate(names):
        findings.append(
            Finding(
                id=finding_id("b2b_member", "g1", str(i)),
                kind="b2b_member",
                severity=Severity.WARNING,
                message=f"B2B account {name} is in Sales",
                group_id="g1",
                user_id=f"u{i}",
                group_name="Sales",
                user_name=name,
            )
        )
    findings.append(
        Finding(
            id=finding_id("empty_licensed_group", "g2"),
            kind="empty_licensed_group",
            severity=Severity.INFO,
            message="Empty group has no members",
            group_id="g2",
            group_name="Empty group",
        )
    )
    return AuditReport(
        run=run,
        skus=(sku,),
        findings=tuple(findings),
        outcomes=(RuleOutcome("seat_forecast", "not_evaluated", reason="no SKU history"),),
    )


def test_summary_without_terminal_has_no_ansi_codes() -> None:
    console, buf = _plain_console()
    render_summary(_report(), console=console)
    out = buf.getvalue()
    assert not ANSI.search(out)
    assert "Contoso" in out
    assert "1 critical" in out and "3 warning" in out and "1 info" in out
    assert "Office 365 E3" in out and "101" in out and "short" in out
    assert "CRITICAL" in out  # severity spelled out, not only coloured
    assert "Sales (3 users): User 000, User 001, User 002" in out
    assert "Empty group" in out
    assert "not evaluated: seat_forecast: no SKU history" in out


def test_no_color_on_a_terminal_has_no_colour_codes() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=120, force_terminal=True, no_color=True)
    render_summary(_report(), console=console)
    assert not COLOUR.search(buf.getvalue())
    coloured = io.StringIO()
    render_summary(_report(), console=Console(file=coloured, width=120, force_terminal=True, color_system="standard"))
    assert COLOUR.search(coloured.getvalue())


def test_quiet_prints_one_line() -> None:
    console, buf = _plain_console()
    render_summary(_report(), console=console, quiet=True)
    lines = buf.getvalue().splitlines()
    assert lines == ["succeeded: 5 findings (1 critical, 3 warning, 1 info) · Contoso · run run-1"]


def test_default_trims_and_verbose_lists_everything() -> None:
    report = _report(n_users=40)
    console, buf = _plain_console()
    render_summary(report, console=console)
    out = buf.getvalue()
    assert "Sales (40 users)" in out
    assert "… and 34 more" in out
    assert "User 039" not in out
    assert "--verbose" in out
    console, buf = _plain_console()
    render_summary(report, console=console, verbose=True)
    out = buf.getvalue()
    for i in range(40):
        assert f"B2B account User {i:03d} is in Sales" in out


def test_namesakes_on_one_line_are_told_apart_by_sign_in_name_or_id() -> None:
    # Two different people called Amara Li read "Amara Li, Amara Li" (issue 30, item 6, for every kind of list).
    report = _report(user_names=("Amara Li", "Amara Li", "Bo Chen"))
    findings = list(report.findings)
    findings[1] = replace(findings[1], message="Amara Li (amara.li@contoso.com) is a B2B account in Sales")
    console, buf = _plain_console(width=200)
    render_summary(replace(report, findings=tuple(findings)), console=console)
    out = buf.getvalue()
    assert "Sales (3 users): Amara Li (amara.li@contoso.com), Amara Li (id u1), Bo Chen" in out


def test_hostile_names_cannot_restyle_or_inject() -> None:
    names = ("[bold red]boom[/]", "\x1b[31mred\x1b[0m", "\u202eevil", "[link=https://evil.example]x[/link]")
    buf = io.StringIO()
    console = Console(file=buf, width=200, force_terminal=True, color_system="truecolor")
    render_summary(_report(user_names=names), console=console, verbose=False)
    out = buf.getvalue()
    assert "[bold red]boom[/]" in out
    assert "[link=https://evil.example]x[/link]" in out
    assert "\x1b]8;" not in out  # no hyperlink escape
    assert "\x1b[31mred" not in out
    assert "\u202e" not in out


def test_an_unread_users_scan_shows_waiting_not_read_and_no_short_label() -> None:
    # Reviewer of issue 30: a partial run whose users scan was not trusted printed "Waiting 0" (or a count from a
    # scan that was not the scan) and called the product short from it.
    started = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    run = RunInfo(
        id="run-2",
        tenant_id="t",
        trigger=Trigger.CLI,
        scope=Scope.TENANT,
        started_at=started,
        finished_at=started,
        status=RunStatus.PARTIAL,
        errors=("users: the users scan is not trusted: 3 users hold licences while the SKUs show 95 units consumed",),
    )
    sku = SkuSummary(SKU_ID, "ENTERPRISEPACK", "Office 365 E3", 100, 95, 5, 0, 0, 0, 3, 9, ("g1",))
    console, buf = _plain_console()
    render_summary(AuditReport(run=run, skus=(sku,)), console=console)
    [row] = [line for line in buf.getvalue().splitlines() if line.startswith("Office 365 E3")]
    assert "not read" in row and "short" not in row and " 9 " not in row
    # Read, the same counts are a shortage: 9 wait, 5 free.
    console, buf = _plain_console()
    render_summary(AuditReport(run=replace(run, errors=()), skus=(sku,)), console=console)
    [row] = [line for line in buf.getvalue().splitlines() if line.startswith("Office 365 E3")]
    assert "short" in row and "not read" not in row
    # One user that could not be read is not the scan.
    console, buf = _plain_console()
    render_summary(AuditReport(run=replace(run, errors=("user u1: 404",)), skus=(sku,)), console=console)
    assert "not read" not in buf.getvalue()


def test_zero_findings() -> None:
    report = _report()
    empty = AuditReport(run=report.run, skus=report.skus)
    console, buf = _plain_console()
    render_summary(empty, console=console)
    assert "No findings" in buf.getvalue()


def test_progress_off_a_terminal_is_a_plain_line_every_few_seconds() -> None:
    """Issue 30, item 7: piped or logged, a long run prints a line every interval (nothing for a short one)."""
    console, buf = _plain_console()
    now = [100.0]
    with progress_reporter(console, clock=lambda: now[0], interval=10) as progress:
        progress("groups", 3, 10)
        now[0] = 105.0
        progress("users", 2_000, 0)
        assert buf.getvalue() == ""  # 5 s: too soon
        now[0] = 111.0
        progress("users", 12_000, 0)
        now[0] = 112.0
        progress("members", 10, 10)  # 1 s after the last line: nothing
    lines = buf.getvalue().splitlines()
    assert lines == ["licensing-audit: 11 s: groups 3/10, users 12,000 read (2,000/s)"]
    assert "\x1b[" not in buf.getvalue()


def test_progress_on_a_terminal_shows_the_phase() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, force_terminal=True)
    with progress_reporter(console) as progress:
        progress("reading groups", 3, 10)
        progress("reading groups", 10, 10)
        progress("reading users", 5, 0)  # total unknown
        progress("reading users", 45_000, 0)
    out = buf.getvalue()
    assert "reading groups" in out
    assert "10/10" in out
    assert "reading users 45,000 read (" in out  # the count and the rate where the total is unknown


def _series(days: int, start: int, step: int, enabled: int) -> list[SkuDay]:
    first = date(2026, 10, 26)
    return [SkuDay(SKU_ID, first + timedelta(days=d), enabled, start + step * d) for d in range(days)]


def test_history_table() -> None:
    console, buf = _plain_console(width=120)
    other = "aaaaaaaa-0000-4000-8000-000000000000"
    history = {
        SKU_ID: _series(30, 50, 1, 100),
        other: [SkuDay(other, d.day, 10, 10) for d in _series(30, 0, 0, 10)],
    }
    render_history(history, {SKU_ID: "Office 365 E3", other: "Power BI Pro"}, console)
    out = buf.getvalue()
    assert not ANSI.search(out)
    assert "Office 365 E3" in out and "Power BI Pro" in out
    assert "full 2026-12-15" in out  # 79 consumed on 24 Nov, +1/day, 100 enabled: 21 days
    assert "+29" in out
    assert "█" * 8 in out  # Power BI Pro: every day full
    console, buf = _plain_console()
    render_history({}, {}, console)
    assert "No SKU history" in buf.getvalue()


def test_sparkline() -> None:
    series = [SkuDay(SKU_ID, date(2026, 1, 1) + timedelta(days=d), 100, v) for d, v in enumerate((0, 50, 99, 100, 120))]
    assert _sparkline(series, 30, unicode=True) == "▁▄▇██"
    assert _sparkline(series, 30, unicode=False) == "_=#@@"
    long = _series(365, 0, 0, 10)
    assert len(_sparkline(long, 20, unicode=True)) == 20
