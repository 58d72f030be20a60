"""The e-mail alert: a Graph sendMail body with an Outlook-safe HTML digest and the findings as CSV.

Graph: ``POST /users/{ALERT_MAIL_FROM}/sendMail`` with ``{"message": {...}, "saveToSentItems": false}``
answers 202 Accepted (https://learn.microsoft.com/graph/api/user-sendmail); attachments are
``#microsoft.graph.fileAttachment`` with base64 ``contentBytes``
(https://learn.microsoft.com/graph/api/resources/fileattachment), and a request must stay under
4 MB. The HTML uses tables and inline styles only (no SVG, scripts, external images or CSS
classes) so that Outlook's Word engine and web mail render it alike; usage bars are table cells.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from licensing import links
from licensing.alerts.digest import Block, Digest, Limits, SeatRow, Section, plural
from licensing.alerts.escape import plain_text
from licensing.model import Finding, FindingKind, Severity
from licensing.report.csv_report import findings_csv as report_findings_csv
from licensing.templating import environment
from licensing.text import one_line

if TYPE_CHECKING:
    import jinja2

__all__ = ["MAIL_MAX_BYTES", "build_html", "build_message", "findings_csv"]

# Graph accepts 4 MB, but an undelivered message waits in the AlertOutbox table, whose entities hold
# at most 1 MiB: stay well below both.
MAIL_MAX_BYTES: Final = 600_000
CSV_MAX_BYTES: Final = 256_000  # raw CSV size up to which it is attached (base64 adds a third)
_LADDER: Final = (
    Limits(blocks=100, entries=50, lines=200, seat_rows=200, sections=50),
    Limits(blocks=40, entries=20, lines=60, seat_rows=100, sections=50),
    Limits(blocks=15, entries=10, lines=20, seat_rows=50, sections=50),
    Limits(blocks=5, entries=5, lines=5, seat_rows=30, sections=50),
    Limits(blocks=2, entries=0, lines=2, seat_rows=20, sections=50),
)
_COLOR: Final = {Severity.CRITICAL: "#c4314b", Severity.WARNING: "#b7791f", Severity.INFO: "#616161"}
_FONT: Final = "font-family:'Segoe UI',Helvetica,Arial,sans-serif;"


def findings_csv(findings: Iterable[Finding]) -> bytes:
    """The attachment: the report's findings.csv (one definition, licensing.report.csv_report), UTF-8 with a BOM
    so that Excel reads the names right."""
    return ("\ufeff" + report_findings_csv(findings)).encode("utf-8")


def _more(shown: int, total: int, noun: str = "") -> str:
    rest = total - shown
    return f" and {rest} more{(' ' + noun) if noun else ''}" if rest > 0 else ""


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    return environment(Path(__file__).with_name("templates"), {"t": plain_text}).get_template("mail.html.j2")


def _seat_row(row: SeatRow) -> dict[str, Any]:
    if row.enabled > 0:
        pct = max(0, min(100, round(100 * row.consumed / row.enabled)))
    else:
        pct = 100 if row.consumed > 0 else 0
    return {
        "product": row.product,
        "part_number": row.part_number,
        "enabled": row.enabled,
        "consumed": row.consumed,
        "available": row.available,
        "waiting": row.waiting,
        "pct": pct,
        "color": _COLOR[row.severity],
        "bar": _COLOR[row.severity] if row.severity is not Severity.INFO else "#0f6cbd",
        "free_color": _COLOR[Severity.CRITICAL] if row.available < 0 else "#242424",
        "wait_color": _COLOR[Severity.CRITICAL] if row.waiting else "#242424",
    }


def _block(block: Block, section: Section, limits: Limits) -> dict[str, Any]:
    shown = block.entries[: limits.entries]
    return {
        "name": block.name,
        "url": block.url,
        "count_text": plural(len(block.entries), section.noun),
        "entries": shown,
        "more": _more(len(shown), len(block.entries)),
    }


def _error_rows(digest: Digest, limits: Limits) -> tuple[list[dict[str, Any]], str]:
    """The license errors as table rows (group, user, product, error, since), longest waiting first (issue 30:
    a table an admin can work down, not one paragraph per group); and the "and N more" of the rows left out."""
    errors = [f for f in digest.findings if f.kind == FindingKind.LICENSE_ERROR]
    errors.sort(key=lambda f: (f.since is None, f.since.isoformat() if f.since else "", f.group_name or "", f.id))
    cap = max(1, limits.blocks * max(1, limits.entries))
    rows = [
        {
            "group": f.group_name or f.group_id or "",
            "group_url": links.group_url(f.group_id, digest.cloud) if f.group_id else None,
            "user": f.user_name or f.user_id or "",
            "user_url": links.user_url(f.user_id, digest.cloud) if f.user_id else None,
            "product": f.product_name or f.sku_part_number or f.sku_id or "",
            "error": f.error or "",
            "since": f"{f.since:%Y-%m-%d}" if f.since else "",
        }
        for f in errors[:cap]
    ]
    return rows, _more(len(rows), len(errors))


def _section(section: Section, limits: Limits, digest: Digest | None = None) -> dict[str, Any]:
    blocks = section.blocks[: limits.blocks]
    lines = section.lines[: limits.lines]
    table, table_more = (
        _error_rows(digest, limits) if digest is not None and section.kind == FindingKind.LICENSE_ERROR else ([], "")
    )
    return {
        "table": table,
        "table_more": table_more,
        "title": section.title,
        "count": section.count,
        "color": _COLOR[section.severity],
        "remediation": section.remediation,
        "blocks": [_block(b, section, limits) for b in blocks],
        "blocks_more": _more(len(blocks), len(section.blocks), "groups"),
        "lines": lines,
        "lines_more": _more(len(lines), len(section.lines)),
    }


def build_html(digest: Digest, limits: Limits | None = None, *, notes: Sequence[str] = ()) -> str:
    """The HTML body (well-formed, XHTML-compatible) for ``digest`` with lists trimmed to ``limits``, rendered
    from ``templates/mail.html.j2`` with autoescaping (as the HTML report is)."""
    limits = limits or _LADDER[0]
    seats = digest.seats[: limits.seat_rows]
    sections = digest.sections[: limits.sections]
    all_notes = [*digest.notes, *notes]
    if len(digest.sections) > len(sections):
        left = digest.sections[len(sections) :]
        all_notes.append(
            f"Not shown to keep this message small: {plural(len(left), 'more section')} "
            f"({', '.join(s.title for s in left)})."
        )
    if digest.cost:
        all_notes.append(digest.cost)
    if digest.excluded:
        all_notes.append(f"{plural(digest.excluded, 'finding')} on SKUs in ALERT_EXCLUDE_SKUS were not alerted.")
    footer = [("Licenses in the Microsoft 365 admin center", links.licenses_url(digest.cloud))]
    if digest.report_url:
        footer.insert(0, ("Open the full report", digest.report_url))
    counts = (
        ("Critical", digest.counts.get(Severity.CRITICAL, 0), _COLOR[Severity.CRITICAL]),
        ("Warning", digest.counts.get(Severity.WARNING, 0), _COLOR[Severity.WARNING]),
        ("Info", digest.counts.get(Severity.INFO, 0), _COLOR[Severity.INFO]),
        ("New", digest.new, "#242424"),
        ("Escalated", digest.escalated, "#242424"),
        ("Still open", digest.reminders, "#242424"),
        ("Resolved", digest.resolved_total, "#107c10"),
    )
    page = _template().render(
        headline=digest.headline(),
        run_line=digest.run_line(),
        top=_COLOR[Severity.CRITICAL] if digest.counts.get(Severity.CRITICAL) else _COLOR[Severity.WARNING],
        font=_FONT,
        colors={"critical": _COLOR[Severity.CRITICAL], "warning": _COLOR[Severity.WARNING]},
        counts=counts,
        partial=digest.partial,
        seats=[_seat_row(r) for r in seats],
        seats_more=_more(len(seats), len(digest.seats), "products"),
        sections=[_section(s, limits, digest) for s in sections],
        # Mark what is new or worse only when the message also carries reminders: otherwise everything is new.
        labels=digest.reminders > 0 or digest.escalated > 0,
        resolved=", ".join(plural(r.count, r.noun) for r in digest.resolved),
        notes=all_notes,
        footer=footer,
    )
    return page.replace("\n", "")


def _recipients(addresses: Iterable[str]) -> list[dict[str, Any]]:
    return [{"emailAddress": {"address": a}} for a in dict.fromkeys(addresses)]


def _request(digest: Digest, recipients: Sequence[str], html: str, attachment: bytes | None) -> dict[str, Any]:
    message: dict[str, Any] = {
        "subject": one_line(digest.headline(), 250),
        "importance": "high" if digest.counts.get(Severity.CRITICAL) else "normal",
        "body": {"contentType": "HTML", "content": html},
        "toRecipients": _recipients(recipients),
    }
    if attachment is not None:
        message["attachments"] = [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": f"license-findings-{digest.run_id}.csv",
                "contentType": "text/csv",
                "contentBytes": base64.b64encode(attachment).decode("ascii"),
            }
        ]
    return {"message": message, "saveToSentItems": False}


def build_message(
    digest: Digest, recipients: Sequence[str], *, max_bytes: int = MAIL_MAX_BYTES, attach_csv: bool = True
) -> dict[str, Any]:
    """The sendMail request body for ``digest``: the fullest version that serializes within ``max_bytes``."""
    if not recipients:
        raise ValueError("an alert e-mail needs at least one recipient")
    csv_bytes = findings_csv(digest.findings) if attach_csv else None
    attachment = csv_bytes if csv_bytes is not None and len(csv_bytes) <= CSV_MAX_BYTES else None
    notes: list[str] = []
    if attachment is not None:
        notes.append(f"The {plural(len(digest.findings), 'finding')} of this message are attached as CSV.")
    elif csv_bytes is not None:
        notes.append("The findings CSV is not attached: it is too large for an e-mail. The full report has it.")
    request: dict[str, Any] = {}
    for limits in (*_LADDER, *(replace(_LADDER[-1], sections=n) for n in range(len(digest.sections) - 1, -1, -1))):
        for attach in (attachment, None) if attachment is not None else (None,):
            extra = notes
            if attachment is not None and attach is None:
                extra = ["The findings CSV is not attached: the message would be too large. The full report has it."]
            request = _request(digest, recipients, build_html(digest, limits, notes=extra), attach)
            if len(orjson.dumps(request)) <= max_bytes:
                return request
    return request
