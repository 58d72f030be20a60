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
import html
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, Final

import orjson

from licensing import links
from licensing.alerts.digest import Block, Digest, Entry, Limits, SeatRow, Section, plural
from licensing.alerts.escape import html_text
from licensing.model import Finding, Severity
from licensing.report.csv_report import findings_csv as report_findings_csv
from licensing.text import one_line

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


def _a(text: str, url: str | None, limit: int = 120) -> str:
    if not url:
        return html_text(text, limit)
    # Only URLs built by licensing.links (ids percent-encoded) or the configured report URL get here.
    href = html.escape(url, quote=True)
    return f'<a href="{href}" style="color:#0f6cbd;text-decoration:underline;">{html_text(text, limit)}</a>'


def _more(shown: int, total: int, noun: str = "") -> str:
    rest = total - shown
    return f" and {rest} more{(' ' + noun) if noun else ''}" if rest > 0 else ""


def _entry(e: Entry, labels: bool = True) -> str:
    out = _a(e.text, e.url)
    if e.detail:
        out += f" ({html_text(e.detail, 200)})"
    if labels and e.label != "open":
        out += f' <span style="color:{_COLOR[Severity.CRITICAL]};font-size:11px;">{e.label.upper()}</span>'
    return out


def _block(block: Block, section: Section, limits: Limits, labels: bool) -> str:
    head = f"<b>{_a(block.name, block.url)}</b>: {plural(len(block.entries), section.noun)}"
    shown = block.entries[: limits.entries]
    if not shown:
        return f'<p style="margin:6px 0;">{head}</p>'
    names = ", ".join(_entry(e, labels) for e in shown) + html_text(_more(len(shown), len(block.entries)))
    return f'<p style="margin:6px 0;">{head} — {names}</p>'


def _section(section: Section, limits: Limits, labels: bool) -> str:
    color = _COLOR[section.severity]
    parts = [
        f'<tr><td style="padding:14px 20px 4px 20px;border-top:1px solid #e0e0e0;">'
        f'<h2 style="margin:0 0 4px 0;font-size:16px;color:{color};">{html_text(section.title)} ({section.count})</h2>'
    ]
    if section.remediation:
        parts.append(
            f'<p style="margin:0 0 8px 0;font-size:12px;color:#616161;">{html_text(section.remediation, 600)}</p>'
        )
    blocks = section.blocks[: limits.blocks]
    parts.extend(_block(b, section, limits, labels) for b in blocks)
    if len(section.blocks) > len(blocks):
        parts.append(f'<p style="margin:6px 0;color:#616161;">…{_more(len(blocks), len(section.blocks), "groups")}</p>')
    lines = section.lines[: limits.lines]
    if lines:
        parts.append('<ul style="margin:4px 0;padding-left:20px;">')
        parts.extend(f'<li style="margin:2px 0;">{_entry(e, labels)}</li>' for e in lines)
        parts.append("</ul>")
    if len(section.lines) > len(lines):
        parts.append(f'<p style="margin:6px 0;color:#616161;">…{_more(len(lines), len(section.lines))}</p>')
    parts.append("</td></tr>")
    return "".join(parts)


def _bar(row: SeatRow) -> str:
    if row.enabled > 0:
        pct = max(0, min(100, round(100 * row.consumed / row.enabled)))
    else:
        pct = 100 if row.consumed > 0 else 0
    color = _COLOR[row.severity] if row.severity is not Severity.INFO else "#0f6cbd"
    cells = []
    if pct > 0:
        cells.append(
            f'<td width="{pct}%" style="background:{color};height:10px;font-size:0;line-height:0;">&#160;</td>'
        )
    if pct < 100:
        cells.append(
            f'<td width="{100 - pct}%" style="background:#e0e0e0;height:10px;font-size:0;line-height:0;">&#160;</td>'
        )
    return (
        '<table role="presentation" width="120" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:120px;border-collapse:collapse;"><tr>{"".join(cells)}</tr></table>'
        f'<span style="font-size:11px;color:#616161;">{pct}%</span>'
    )


def _seats(digest: Digest, limits: Limits) -> str:
    rows = digest.seats[: limits.seat_rows]
    if not rows:
        return ""
    th = 'style="text-align:{};padding:6px 8px;border-bottom:2px solid #c8c8c8;font-size:12px;"'
    td = 'style="text-align:{};padding:6px 8px;border-bottom:1px solid #e0e0e0;"'
    head = "".join(
        f"<th {th.format('left' if i in (0, 5) else 'right')}>{h}</th>"
        for i, h in enumerate(("Product", "Enabled", "Consumed", "Free", "Waiting", "Usage"))
    )
    body = []
    for r in rows:
        free_color = _COLOR[Severity.CRITICAL] if r.available < 0 else "#242424"
        wait_color = _COLOR[Severity.CRITICAL] if r.waiting else "#242424"
        body.append(
            "<tr>"
            f'<td {td.format("left")}><span style="color:{_COLOR[r.severity]};">&#9632;</span> '
            f'{html_text(r.product, 100)}<br /><span style="font-size:11px;color:#616161;">'
            f"{html_text(r.part_number, 64)}</span></td>"
            f"<td {td.format('right')}>{r.enabled}</td>"
            f"<td {td.format('right')}>{r.consumed}</td>"
            f'<td {td.format("right")}><span style="color:{free_color};">{r.available}</span></td>'
            f'<td {td.format("right")}><span style="color:{wait_color};">{r.waiting}</span></td>'
            f"<td {td.format('left')}>{_bar(r)}</td>"
            "</tr>"
        )
    more = ""
    if len(digest.seats) > len(rows):
        more = f'<p style="margin:6px 0;color:#616161;">…{_more(len(rows), len(digest.seats), "products")}</p>'
    return (
        '<tr><td style="padding:14px 20px 4px 20px;border-top:1px solid #e0e0e0;">'
        '<h2 style="margin:0 0 8px 0;font-size:16px;">Products short of seats</h2>'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="border-collapse:collapse;font-size:13px;"><tr>{head}</tr>{"".join(body)}</table>{more}</td></tr>'
    )


def _counts(digest: Digest) -> str:
    cells = []
    for label, value, color in (
        ("Critical", digest.counts.get(Severity.CRITICAL, 0), _COLOR[Severity.CRITICAL]),
        ("Warning", digest.counts.get(Severity.WARNING, 0), _COLOR[Severity.WARNING]),
        ("Info", digest.counts.get(Severity.INFO, 0), _COLOR[Severity.INFO]),
        ("New", digest.new, "#242424"),
        ("Escalated", digest.escalated, "#242424"),
        ("Still open", digest.reminders, "#242424"),
        ("Resolved", digest.resolved_total, "#107c10"),
    ):
        cells.append(
            f'<td align="center" style="padding:8px 4px;border:1px solid #e0e0e0;">'
            f'<div style="font-size:20px;font-weight:bold;color:{color};">{value}</div>'
            f'<div style="font-size:11px;color:#616161;">{label}</div></td>'
        )
    return (
        '<tr><td style="padding:0 20px 12px 20px;">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="border-collapse:collapse;"><tr>{"".join(cells)}</tr></table></td></tr>'
    )


def build_html(digest: Digest, limits: Limits | None = None, *, notes: Sequence[str] = ()) -> str:
    """The HTML body (well-formed, XHTML-compatible) for ``digest`` with lists trimmed to ``limits``."""
    limits = limits or _LADDER[0]
    top = _COLOR[Severity.CRITICAL] if digest.counts.get(Severity.CRITICAL) else _COLOR[Severity.WARNING]
    rows = [
        f'<tr><td style="padding:16px 20px 8px 20px;border-top:4px solid {top};">'
        f'<h1 style="margin:0 0 4px 0;font-size:20px;">{html_text(digest.headline(), 400)}</h1>'
        f'<p style="margin:0;font-size:12px;color:#616161;">'
        f"{html_text(digest.run_line(), 300)}"
        "</p></td></tr>",
        _counts(digest),
    ]
    if digest.partial:
        rows.append(
            f'<tr><td style="padding:0 20px 8px 20px;color:{_COLOR[Severity.WARNING]};">This run was partial: some '
            "parts of the tenant could not be read, so some findings may be missing (the report lists what).</td></tr>"
        )
    rows.append(_seats(digest, limits))
    sections = digest.sections[: limits.sections]
    # Mark what is new or worse only when the message also carries reminders: otherwise everything is new.
    labels = digest.reminders > 0 or digest.escalated > 0
    rows.extend(_section(s, limits, labels) for s in sections)
    all_notes = list(notes)
    if len(digest.sections) > len(sections):
        left = digest.sections[len(sections) :]
        all_notes.append(
            f"Not shown to keep this message small: {plural(len(left), 'more section')} "
            f"({', '.join(s.title for s in left)})."
        )
    if digest.resolved:
        text = ", ".join(plural(r.count, r.noun) for r in digest.resolved)
        rows.append(
            '<tr><td style="padding:14px 20px;border-top:1px solid #e0e0e0;">'
            f'<b style="color:#107c10;">Resolved since the last alert:</b> {html_text(text, 800)}</td></tr>'
        )
    if digest.excluded:
        all_notes.append(f"{plural(digest.excluded, 'finding')} on SKUs in ALERT_EXCLUDE_SKUS were not alerted.")
    footer = [_a("Licenses in the Microsoft 365 admin center", links.licenses_url(digest.cloud))]
    if digest.report_url:
        footer.insert(0, _a("Open the full report", digest.report_url))
    rows.append(
        '<tr><td style="padding:12px 20px 16px 20px;border-top:1px solid #e0e0e0;font-size:12px;color:#616161;">'
        + "".join(f'<p style="margin:0 0 6px 0;">{html_text(n, 800)}</p>' for n in all_notes)
        + f'<p style="margin:0;">{" · ".join(footer)}</p></td></tr>'
    )
    title = html_text(digest.headline(), 200)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8" />'
        '<meta name="viewport" content="width=device-width, initial-scale=1" />'
        f"<title>{title}</title></head>"
        f'<body style="margin:0;padding:0;background:#f3f2f1;{_FONT}">'
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        'style="background:#f3f2f1;"><tr><td align="center" style="padding:16px 8px;">'
        '<table role="presentation" width="720" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:720px;max-width:100%;background:#ffffff;{_FONT}font-size:14px;color:#242424;'
        'text-align:left;border-collapse:collapse;">' + "".join(rows) + "</table></td></tr></table></body></html>"
    )


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
