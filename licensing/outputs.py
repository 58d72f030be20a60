"""The files a CLI audit writes: output paths checked before the run (so a bad one fails before any alert goes
out), then the JSON report, the CSVs and the HTML report (with ``--candidates`` its Candidates section)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from licensing.errors import AuditError, ConfigurationError

if TYPE_CHECKING:
    from licensing.pipeline.conclusion import AuditOutcome
    from licensing.settings import Settings

__all__ = ["check_outputs", "closing_lines", "write_outputs"]


def check_outputs(json_file: Path | None, csv_dir: Path | None, html_file: Path | None) -> None:
    """Refuse unusable output paths before the audit runs (and before any alert goes out), in one line."""
    for option, path, is_dir in (("--json", json_file, False), ("--csv", csv_dir, True), ("--html", html_file, False)):
        if path is None:
            continue
        if is_dir and path.exists() and not path.is_dir():
            raise ConfigurationError(f"{option} {path} is a file; it needs a directory for skus/groups/findings CSV")
        if not is_dir and path.is_dir():
            raise ConfigurationError(f"{option} {path} is a directory; it needs a file name")
        if path.exists() and not os.access(path, os.W_OK):
            raise ConfigurationError(f"{option} {path}: not writable")
        ancestor = path if is_dir else path.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise ConfigurationError(f"{option} {path}: {ancestor} is not a directory")
        if not path.exists() and not os.access(ancestor, os.W_OK | os.X_OK):
            raise ConfigurationError(f"{option} {path}: cannot create files in {ancestor}")


def write_outputs(
    outcome: AuditOutcome,
    settings: Settings,
    json_file: Path | None,
    csv_dir: Path | None,
    html_file: Path | None,
    candidates: dict[str, Any] | None = None,
) -> list[Path]:
    try:
        return _write_files(outcome, settings, json_file, csv_dir, html_file, candidates)
    except OSError as exc:  # the disk filled up or the path changed during the audit
        where = f" {exc.filename}" if exc.filename else ""
        raise AuditError(f"could not write the report{where}: {exc.strerror or type(exc).__name__}") from None


def _write_files(
    outcome: AuditOutcome,
    settings: Settings,
    json_file: Path | None,
    csv_dir: Path | None,
    html_file: Path | None,
    candidates: dict[str, Any] | None,
) -> list[Path]:
    written: list[Path] = []
    report = outcome.report
    if json_file is not None:
        from licensing.report.json_report import to_json_bytes

        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_bytes(to_json_bytes(report))
        written.append(json_file)
    if csv_dir is not None:
        from licensing.report.csv_report import write_csv

        written.extend(write_csv(report, csv_dir))
    if html_file is not None:
        from licensing.report.html import write_html

        written.append(
            write_html(
                report,
                html_file,
                history=outcome.history or None,
                cloud=settings.graph_cloud,
                candidates=candidates,
                prices=settings.sku_prices,
                currency=settings.sku_price_currency,
            )
        )
    return written


def _channel_line(name: str, channel: str, delivery: Any) -> str:
    sent = sum(1 for c, _ in delivery.sent if c == channel)
    failed = sum(1 for c, _, _ in delivery.failed if c == channel) + sum(1 for c, _, _ in delivery.dead if c == channel)
    text = f"{name} {sent} sent"
    return f"{text}, {failed} failed (kept in the outbox for the next run)" if failed else text


def closing_lines(outcome: AuditOutcome, settings: Settings, *, alerts: bool) -> list[str]:
    """The last lines of every ``run`` (issue 30, item 4): where alerts went (or that none are configured), what
    was stored, and where the published report is. A misspelled webhook setting shows here as "none configured"."""
    channels = [
        (n, c)
        for n, c, on in (("Teams", "teams", settings.teams_enabled), ("mail", "mail", settings.mail_enabled))
        if on
    ]
    if not alerts:
        alert_line = "alerts: not sent (--no-alerts)"
    elif not channels:
        alert_line = "alerts: none configured (set ALERT_TEAMS_WEBHOOK_URL, or ALERT_MAIL_FROM with ALERT_MAIL_TO)"
    elif outcome.delivery is None:
        alert_line = "alerts: " + ", ".join(n for n, _ in channels) + ": nothing to send"
    else:
        alert_line = "alerts: " + "; ".join(_channel_line(n, c, outcome.delivery) for n, c in channels)
    run = outcome.report.run
    if settings.storage is None:
        store_line = "stored: nothing (--store none, or no LICENSING_STORAGE)"
    else:
        where = settings.storage.source or "storage"
        store_line = f"stored: run {run.id} with {len(outcome.report.findings)} findings ({where})"
    lines = [alert_line, store_line]
    if outcome.report_url:
        lines.append(f"report: {outcome.report_url}")
    return lines
