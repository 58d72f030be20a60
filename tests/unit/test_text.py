"""One text-hygiene module (issue 17, item 4): every output agrees on which characters are invisible or reorder
text (the HTML report's set used to miss U+200B-U+200F, the cards' and mails' did not)."""

from __future__ import annotations

import pytest

from licensing.alerts.escape import html_text, md_text
from licensing.report.csv_report import safe_cell
from licensing.text import clean_text, mark_bidi, one_line

HIDDEN = ["\u200b", "\u200c", "\u200d", "\u200e", "\u200f", "\u202a", "\u202e", "\u2066", "\u2069", "\u2060", "\ufeff"]


@pytest.mark.parametrize("char", HIDDEN, ids=[f"U+{ord(c):04X}" for c in HIDDEN])
def test_every_output_shows_or_removes_the_same_invisible_characters(char: str) -> None:
    name = f"Ad{char}min"
    assert char not in one_line(name) and char not in md_text(name) and char not in html_text(name)
    assert clean_text(name) == "Ad\ufffdmin", "the HTML and terminal reports show that something is hidden"


def test_tabs_and_newlines_survive_clean_text_but_not_one_line() -> None:
    assert clean_text("a\tb\nc") == "a\tb\nc"
    assert one_line("a\tb\nc\x00d") == "a b c d"


def test_the_csv_writes_bidi_controls_as_text() -> None:
    assert mark_bidi("abc\u202eexe.txt") == "abc<U+202E>exe.txt"
    assert safe_cell("\u202e=1+1") == "<U+202E>=1+1"
