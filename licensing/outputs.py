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

__all__ = ["check_outputs", "write_outputs"]


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
