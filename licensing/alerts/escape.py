"""Escaping of tenant-controlled strings for their targets: Adaptive Card markdown text and HTML."""

from __future__ import annotations

import html
import re
from typing import Final

from licensing.text import one_line

__all__ = ["html_text", "md_text", "plain_text"]

# Characters that Adaptive Card markdown (a CommonMark subset: emphasis, links, lists, tables in some
# hosts) gives meaning to, plus the braces of the card's {{DATE()}}/{{TIME()}} functions, which the card
# expands *before* markdown (text-formatters.ts in the adaptivecards package): "\{\{" never matches them.
# CommonMark renders a backslash-escaped ASCII punctuation character literally.
_MD_SPECIAL: Final = re.compile(r"([\\`*_\[\](){}#>+\-!|~<&])")
# "1. item" would start an ordered list ("1) item" is covered by the ")" above).
_ORDERED_MARKER: Final = re.compile(r"^(\d+)\.")
# Renderers (markdown-it's linkify, Outlook) turn bare URLs into links: a word joiner defeats that and
# does not show.
_AUTOLINK: Final = re.compile(r"(?i)(://|www\.)")
_JOINER: Final = "\u2060"


def _defang(text: str) -> str:
    return _AUTOLINK.sub(lambda m: m.group(1)[:1] + _JOINER + m.group(1)[1:], text)


def md_text(value: object, limit: int = 300) -> str:
    """Text for an Adaptive Card TextBlock, fact or cell that renders literally: no emphasis, links, lists,
    HTML or ``{{DATE()}}``/``{{TIME()}}`` functions."""
    text = _MD_SPECIAL.sub(r"\\\1", one_line(value, limit))
    return _defang(_ORDERED_MARKER.sub(r"\1\\.", text))


def plain_text(value: object, limit: int = 300) -> str:
    """One line of tenant text for an autoescaping template: controls removed, trimmed, bare URLs defanged
    (the template escapes it)."""
    return _defang(one_line(value, limit))


def html_text(value: object, limit: int = 300) -> str:
    """Text for an HTML element or attribute value (quotes escaped too), with bare URLs defanged."""
    return html.escape(plain_text(value, limit), quote=True)
