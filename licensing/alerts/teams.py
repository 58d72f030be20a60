"""The Teams alert: an Adaptive Card 1.5 for a digest, wrapped for a Workflows webhook, under 28 KB.

The webhook is a Power Automate / Teams Workflows flow "When a Teams webhook request is received"
(the Office 365 connector webhooks are retired). It takes a message with one Adaptive Card
attachment: https://learn.microsoft.com/microsoftteams/platform/webhooks-and-connectors/how-to/add-incoming-webhook
Teams renders card version 1.5 at most and refuses messages over about 28 KB, so lists are trimmed
(then whole sections dropped, with a note) until the serialized body fits; JSON is never cut.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Final

import orjson

from licensing import links
from licensing.alerts.digest import Block, Digest, Entry, Limits, Section, plural
from licensing.alerts.escape import md_text
from licensing.model import FindingKind, Severity

__all__ = ["CARD_VERSION", "TEAMS_MAX_BYTES", "build_card", "teams_payload"]

CARD_VERSION: Final = "1.5"
# Teams' limit is about 28 KB for the whole message; keep a margin for what the flow adds around it.
TEAMS_MAX_BYTES: Final = 26_000
# A card is read in a chat by a busy admin (issue 30, item 2): what changed and what to do first, the top few items
# of each section, the counts, and buttons to the full report and the admin center. The mail stays complete.
_LADDER: Final = (
    Limits(blocks=3, entries=3, lines=3, seat_rows=5, sections=6),
    Limits(blocks=2, entries=2, lines=2, seat_rows=5, sections=6),
    Limits(blocks=1, entries=1, lines=1, seat_rows=5, sections=6),
    Limits(blocks=1, entries=0, lines=1, seat_rows=3, sections=6),
)
_COLOR: Final = {Severity.CRITICAL: "Attention", Severity.WARNING: "Warning", Severity.INFO: "Default"}


def _text(text: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": text, "wrap": True, **props}


def _link(text: str, url: str | None) -> str:
    # Only URLs built by licensing.links (ids percent-encoded) are ever put into markdown.
    return f"[{md_text(text, 120)}]({url})" if url else md_text(text, 120)


def _more(shown: int, total: int, noun: str = "") -> str:
    rest = total - shown
    if rest <= 0:
        return ""
    return f" and {rest} more{(' ' + noun) if noun else ''}"


def _entry_md(e: Entry) -> str:
    text = _link(e.text, e.url)
    if e.detail:
        text += f" ({md_text(e.detail, 160)})"
    if e.label == "escalated":
        text += " ▲"
    return text


def _block_md(block: Block, section: Section, limits: Limits) -> str:
    head = f"**{_link(block.name, block.url)}**: {plural(len(block.entries), section.noun)}"
    if block.new and block.new != len(block.entries):
        head += f" ({block.new} new)"
    shown = block.entries[: limits.entries]
    if not shown:
        return head
    return head + " — " + ", ".join(_entry_md(e) for e in shown) + _more(len(shown), len(block.entries))


def _section(section: Section, limits: Limits, *, first: bool = False) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        _text(
            f"{md_text(section.title)} ({section.count})",
            weight="Bolder",
            color=_COLOR[section.severity],
        )
    ]
    if section.remediation and first:
        # What to do first: the remedy of the most severe section; the others are in the report and the mail.
        items.append(_text(md_text(section.remediation, 400), isSubtle=True, size="Small", spacing="None"))
    blocks = section.blocks[: limits.blocks]
    for block in blocks:
        items.append(_text(_block_md(block, section, limits), spacing="Small"))
    if len(section.blocks) > len(blocks):
        items.append(_text(f"…{_more(len(blocks), len(section.blocks), 'groups')}", isSubtle=True, spacing="Small"))
    lines = section.lines[: limits.lines]
    if lines:
        bullet = "\n".join(f"- {_entry_md(e)}" for e in lines)
        items.append(_text(bullet, spacing="Small"))
    if len(section.lines) > len(lines):
        items.append(_text(f"…{_more(len(lines), len(section.lines))}", isSubtle=True, spacing="Small"))
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def _short_rows(digest: Digest) -> list[Any]:
    """The products really short of seats: a seat_shortage among the findings sent (not merely low, not locked out)."""
    short = {f.sku_id for f in digest.findings if f.kind == FindingKind.SEAT_SHORTAGE and f.sku_id}
    return [r for r in digest.seats if r.sku_id in short]


def _seat_table(digest: Digest, limits: Limits) -> list[dict[str, Any]]:
    every = _short_rows(digest)
    rows = every[: limits.seat_rows]
    if not rows:
        return []
    lines = []
    for r in rows:
        line = f"- **{md_text(r.product, 80)}**: {r.consumed:,} of {r.enabled:,} used"
        if r.waiting:
            line += f", {plural(r.waiting, 'user')} waiting"
        lines.append(line)
    out: list[dict[str, Any]] = [
        _text("Products short of seats", weight="Bolder", color="Attention", separator=True, spacing="Medium"),
        _text("\n".join(lines), spacing="Small"),
    ]
    if len(every) > len(rows):
        out.append(_text(f"…{_more(len(rows), len(every), 'products')}", isSubtle=True))
    return out


def _title(digest: Digest) -> str:
    """What is new or escalated first, then what is open: "License audit — Contoso: 3 new, 1 escalated (2 critical)"."""
    what = "Critical license alerts" if digest.critical_only else "License audit"
    news = [f"{n} {word}" for n, word in ((digest.new, "new"), (digest.escalated, "escalated")) if n]
    if not news and digest.reminders:
        news.append(f"{digest.reminders} still open")
    if digest.resolved_total:
        news.append(f"{digest.resolved_total} resolved")
    opened = digest.count_text()
    head = ", ".join(news) if news else opened
    tail = f" ({opened})" if news and opened != "nothing open" else ""
    return f"{what} — {digest.tenant}: {head}{tail}"


def build_card(digest: Digest, limits: Limits | None = None) -> dict[str, Any]:
    """The Adaptive Card (1.5) for ``digest`` with lists trimmed to ``limits``."""
    limits = limits or _LADDER[0]
    subtitle = f"{digest.started_at:%d %b %Y %H:%M} UTC · scope {digest.scope}"
    body: list[dict[str, Any]] = [
        _text(md_text(_title(digest), 400), size="Large", weight="Bolder", style="heading"),
        _text(md_text(subtitle, 300), isSubtle=True, spacing="None"),
        {
            "type": "FactSet",
            "facts": [
                {"title": "Critical", "value": str(digest.counts.get(Severity.CRITICAL, 0))},
                {"title": "Warning", "value": str(digest.counts.get(Severity.WARNING, 0))},
                {"title": "Info", "value": str(digest.counts.get(Severity.INFO, 0))},
                {"title": "New", "value": str(digest.new)},
                {"title": "Escalated", "value": str(digest.escalated)},
                {"title": "Still open", "value": str(digest.reminders)},
                {"title": "Resolved", "value": str(digest.resolved_total)},
            ],
        },
    ]
    if digest.partial:
        body.append(
            _text(
                "This run was partial: some parts of the tenant could not be read, so some findings may be "
                "missing (the report lists what).",
                color="Warning",
                size="Small",
            )
        )
    # Suppressions and possibly lost alerts (issue 27): said before the findings, escaped like tenant text.
    body.extend(_text(md_text(note, 600), color="Warning", size="Small") for note in digest.notes[:12])
    body.extend(_seat_table(digest, limits))
    sections = digest.sections[: limits.sections]
    body.extend(_section(s, limits, first=i == 0) for i, s in enumerate(sections))
    if len(digest.sections) > len(sections):
        left = digest.sections[len(sections) :]
        body.append(
            _text(
                md_text(
                    f"Not shown to fit a Teams message: {plural(len(left), 'more section')} "
                    f"({', '.join(s.title for s in left)}). See the full report or the e-mail.",
                    600,
                ),
                color="Warning",
                separator=True,
            )
        )
    if digest.resolved:
        text = ", ".join(f"{plural(r.count, r.noun)}" for r in digest.resolved)
        body.append(_text(f"**Resolved since the last alert:** {md_text(text, 600)}", color="Good", separator=True))
    if digest.cost:
        body.append(_text(md_text(digest.cost, 400), separator=True))
    if digest.excluded:
        body.append(
            _text(
                f"{plural(digest.excluded, 'finding')} on SKUs in ALERT\\_EXCLUDE\\_SKUS not alerted.",
                isSubtle=True,
                size="Small",
            )
        )
    # Findable, out of the way: the run and the outbox item id ("alert …": a replayed message is recognisable).
    footer = f"Run {digest.run_id}" + (f" · alert {digest.reference}" if digest.reference else "")
    body.append(_text(md_text(footer, 300), isSubtle=True, size="Small", separator=True))
    # Short titles: two buttons side by side fit a chat column without being clipped.
    actions: list[dict[str, Any]] = []
    if digest.report_url:
        actions.append({"type": "Action.OpenUrl", "title": "Full report", "url": digest.report_url})
    actions.append(
        {"type": "Action.OpenUrl", "title": "Licenses (M365 admin)", "url": links.licenses_url(digest.cloud)}
    )
    return {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "actions": actions,
        "msteams": {"width": "Full"},
    }


def _wrap(card: dict[str, Any]) -> bytes:
    message = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
    return orjson.dumps(message)


def _ladder(digest: Digest) -> list[Limits]:
    steps = list(_LADDER)
    smallest = _LADDER[-1]
    steps.extend(replace(smallest, sections=n) for n in range(len(digest.sections) - 1, -1, -1))
    steps.append(replace(smallest, sections=0, seat_rows=0))
    return steps


def teams_payload(digest: Digest, max_bytes: int = TEAMS_MAX_BYTES) -> bytes:
    """The webhook body for ``digest``: the fullest card whose serialized message fits ``max_bytes``."""
    body = b""
    for limits in _ladder(digest):
        body = _wrap(build_card(digest, limits))
        if len(body) <= max_bytes:
            return body
    return body  # title, counts and notes only: a few KB, whatever the tenant
