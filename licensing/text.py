"""Text hygiene for tenant-controlled strings, one set of rules: which characters are invisible or reorder text.

Display names and UPNs come from the tenant. Control characters break rendering; bidirectional controls
(U+202A-U+202E, U+2066-U+2069, U+200E/U+200F, U+061C) can reorder what a name shows ("Trojan Source",
CVE-2021-42574); zero-width characters (U+200B-U+200D, U+2060-U+2064, U+FEFF) hide inside one. Every output
(card, mail, HTML and terminal report, CSV) takes its character sets and cleaners from here; the escaping
for each target (markdown, HTML) stays with that target.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["BIDI_CONTROLS", "INVISIBLE", "clean_text", "mark_bidi", "one_line"]

_BIDI: Final = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
_ZERO_WIDTH: Final = "\u200b-\u200d\u2060-\u2064\ufeff"
# Bidirectional controls alone (the CSV writes them as visible text).
BIDI_CONTROLS: Final = re.compile(f"[{_BIDI}]")
# Everything that does not show or reorders what does: C0 (but tab and newline) and C1 controls, bidi, zero width.
INVISIBLE: Final = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}{_ZERO_WIDTH}]")
_ALL_CONTROLS: Final = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}{_ZERO_WIDTH}]")
_WS: Final = re.compile(r"\s+")


def one_line(value: object, limit: int = 300) -> str:
    """A plain single line: every control and invisible character a space, whitespace collapsed, capped."""
    text = _ALL_CONTROLS.sub(" ", "" if value is None else str(value))
    text = _WS.sub(" ", text).strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def clean_text(value: object, limit: int | None = None) -> str:
    """A tenant string made displayable as it is (tabs and newlines kept): invisible characters become U+FFFD,
    so that a hidden one shows instead of disguising the name; optionally trimmed."""
    text = INVISIBLE.sub("\ufffd", "" if value is None else str(value))
    if limit is not None and len(text) > limit:
        return text[: max(1, limit - 1)] + "…"
    return text


def mark_bidi(text: str) -> str:
    """Bidirectional controls written as visible text (``<U+202E>``): nothing is lost, nothing is reordered."""
    return BIDI_CONTROLS.sub(lambda m: f"<U+{ord(m.group(0)):04X}>", text)
