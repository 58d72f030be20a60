"""A short one-off message (the answer to a ``plan`` request): an Adaptive Card for Teams and a sendMail body.

Not a digest: no alert state, no re-notification. It goes through the same outbox and delivery as digests
(licensing.alerts.notifier), so an unknown outcome is never sent twice within a run. Every line is tenant text
escaped for its channel (md_text for the card, the autoescaping template for the mail).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from licensing.alerts.escape import md_text, plain_text
from licensing.links import group_url
from licensing.templating import environment
from licensing.text import one_line

if TYPE_CHECKING:
    import jinja2

__all__ = ["MAX_LINES", "Notice", "notice_card", "notice_mail"]

MAX_LINES: Final = 40  # a notice is short: the full answer is in the stored run and the CLI's --json
CARD_VERSION: Final = "1.5"  # what Teams renders (licensing.alerts.teams)
LINK_TITLE: Final = "Group (Entra admin)"


@dataclass(frozen=True, slots=True)
class Notice:
    title: str  # "Plan for SG-Sales: UNSUITABLE"
    lines: tuple[str, ...]
    good: bool  # the answer is a yes: shown as good news, else as attention
    reference: str  # the outbox id, shown so a replayed message is recognisable
    tenant_name: str = ""
    group_id: str | None = None  # the group asked about: the card and the mail link its Entra admin center page
    cloud: str = "global"

    @property
    def link(self) -> str | None:
        return group_url(self.group_id, self.cloud) if self.group_id else None


# A reason heading of the plan's summary, "  nested_group (1):", is a vocabulary value: a card says it in words.
_KIND_HEADING: Final = re.compile(r"^(\s*)([a-z][a-z0-9]*(?:_[a-z0-9]+)+|[a-z]+) \((\d+)\):$")


def _in_words(line: str) -> str:
    """``nested_group (1):`` -> ``Nested group (1):`` (issue 30: a card names kinds in words); the rest as is."""
    match = _KIND_HEADING.match(line)
    if match is None:
        return line
    indent, kind, count = match.groups()
    words = kind.replace("_", " ")
    return f"{indent}{words[:1].upper()}{words[1:]} ({count}):"


def _shown(notice: Notice) -> list[str]:
    lines = [_in_words(line) for line in notice.lines[:MAX_LINES]]
    if len(notice.lines) > MAX_LINES:
        lines.append(f"and {len(notice.lines) - MAX_LINES} more lines")
    return lines


def notice_card(notice: Notice) -> bytes:
    """The Workflows webhook body: one Adaptive Card 1.5 with the title and the lines."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": md_text(notice.title, 200),
            "wrap": True,
            "size": "Medium",
            "weight": "Bolder",
            "color": "Good" if notice.good else "Attention",
        }
    ]
    if notice.tenant_name:
        body.append({"type": "TextBlock", "text": md_text(notice.tenant_name, 120), "wrap": True, "isSubtle": True})
    body.extend(
        {"type": "TextBlock", "text": md_text(line, 400), "wrap": True, "spacing": "Small"} for line in _shown(notice)
    )
    body.append(
        {
            "type": "TextBlock",
            "text": md_text(f"Reference: {notice.reference}", 200),
            "isSubtle": True,
            "size": "Small",
            "wrap": True,
        }
    )
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": CARD_VERSION,
        "body": body,
        "msteams": {"width": "Full"},
    }
    if notice.link:
        # Issue 30, item 2: a plan card links the group. A short title, as on the digest's buttons.
        card["actions"] = [{"type": "Action.OpenUrl", "title": LINK_TITLE, "url": notice.link}]
    message = {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }
    return orjson.dumps(message)


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    return environment(Path(__file__).with_name("templates"), {"t": plain_text}).get_template("notice.html.j2")


def notice_mail(notice: Notice, recipients: Sequence[str]) -> dict[str, Any]:
    """The sendMail request body (https://learn.microsoft.com/graph/api/user-sendmail) for ``notice``."""
    if not recipients:
        raise ValueError("a notice e-mail needs at least one recipient")
    html = _template().render(notice=notice, lines=_shown(notice), link_title=LINK_TITLE).replace("\n", "")
    return {
        "message": {
            "subject": one_line(notice.title, 250),
            "importance": "normal",
            "body": {"contentType": "HTML", "content": html},
            "toRecipients": [{"emailAddress": {"address": a}} for a in dict.fromkeys(recipients)],
        },
        "saveToSentItems": False,
    }
