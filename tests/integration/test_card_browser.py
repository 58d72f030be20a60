"""The Teams card rendered by Microsoft's Adaptive Cards library (node_modules/adaptivecards) in headless Chromium,
in a chat-column width: nothing is clipped at the right edge, and night 1's busy digest stays a short card
(issue 30, item 2)."""

from __future__ import annotations

import html
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from licensing.alerts.teams import teams_payload
from scripts.screenshot_report import HEADLESS_FLAGS, chromium_binary
from tests.unit.alerts_support import b2b, license_error, seat_low, seat_shortage
from tests.unit.test_alerts_render import digest_for, typical

pytestmark = [pytest.mark.chromium, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.min.js"
CHROMIUM = chromium_binary()
CHAT_WIDTH = 420  # px: a Teams chat column on a laptop, roughly the narrowest a card is read in


def night_one() -> list[Any]:
    """Night 1 of the issue: 15 groups with B2B members, 17 license errors, a short and a low product."""
    findings = [seat_shortage(), seat_low()]
    findings += [b2b(g, 100 + g, name=f"Guest with a fairly long display name {g} (Fabrikam)") for g in range(15)]
    findings += [license_error(g % 4, 500 + g) for g in range(17)]
    return findings


def render(cards: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    if CHROMIUM is None:
        pytest.skip("no Chromium installed (apt-get install chromium)")
    assert LIBRARY.exists(), "node_modules/adaptivecards is missing: run npm ci"
    data = json.dumps(cards).replace("</", "<\\/")
    page = tmp_path / "cards.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<script src='{LIBRARY.as_uri()}'></script></head><body style='margin:0'>"
        f"<div id='host' style='width:{CHAT_WIDTH}px'></div>"
        f"<script type='application/json' id='cards'>{data}</script>"
        f"<script src='{(ROOT / 'tests' / 'js' / 'render_cards.js').as_uri()}'></script></body></html>",
        encoding="utf-8",
    )
    result = subprocess.run(
        [CHROMIUM, *HEADLESS_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    found = {}
    for name in ("rendered", "clipped", "heights"):
        match = re.search(rf'data-{name}="([^"]*)"', result.stdout)
        assert match, f"data-{name} missing: the renderer did not run"
        found[name] = json.loads(html.unescape(match.group(1)))
    return found


def test_cards_render_without_clipping_and_night_one_is_short(tmp_path: Path) -> None:
    shapes = {
        "night one": digest_for(night_one())[0],
        "typical": digest_for(typical())[0],
        "critical": digest_for(typical(), critical_only=True)[0],
    }
    cards = [json.loads(teams_payload(d))["attachments"][0]["content"] for d in shapes.values()]
    result = render(cards, tmp_path)
    assert result["rendered"] == len(cards)
    assert result["clipped"] == [], result["clipped"]  # e.g. two long button titles cut at the right edge
    night_one_height = result["heights"][0]
    # A chat message, not a page: about two screens at most (the full list is one click away).
    assert night_one_height < 1500, f"night 1's card is {night_one_height}px tall"
