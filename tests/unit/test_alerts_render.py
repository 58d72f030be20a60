"""The Teams card and the e-mail: valid (Microsoft's Adaptive Cards library, well-formed HTML), escaped, small."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from licensing.alerts import AlertPlan, build_digest, plan_alerts
from licensing.alerts.digest import Digest
from licensing.alerts.escape import html_text, md_text
from licensing.alerts.mail import MAIL_MAX_BYTES, build_message, findings_csv
from licensing.alerts.teams import TEAMS_MAX_BYTES, build_card, teams_payload
from licensing.model import AlertState, AuditReport, Finding, RunStatus, Severity
from tests.unit.alerts_support import (
    EVIL,
    b2b,
    license_error,
    nested,
    parse_html,
    processing,
    report,
    seat_low,
    seat_shortage,
    settings,
    validate_cards,
)

NOW = datetime(2026, 1, 1, 2, 30, tzinfo=UTC)
REPORT_URL = "https://reports.contoso.example/license-audit/latest.html"
ENTRA = "https://entra.microsoft.com/#view/"
# Licenses live in the Microsoft 365 admin center since September 2024 (licensing-admin-center).
M365_LICENSES = "https://admin.microsoft.com/Adminportal/Home#/licenses"


def digest_for(findings: list[Finding], *, critical_only: bool = False, **kw: Any) -> tuple[Digest, AuditReport]:
    s = settings(ALERT_REPORT_URL=REPORT_URL, **kw.pop("env", {}))
    rep = report(findings, **kw)
    plan = plan_alerts(rep, {}, s, NOW)
    d = build_digest(rep, plan, s, critical_only=critical_only)
    assert d is not None
    return d, rep


def typical() -> list[Finding]:
    return [
        seat_shortage(),
        seat_low(),
        b2b(1, 1),
        b2b(1, 2),
        b2b(3, 9),
        nested(2, 3),
        license_error(1, 5),
        license_error(2, 6, "MutuallyExclusiveViolation"),
        processing(4, Severity.WARNING),
    ]


def big(n_groups: int = 50, per_group: int = 100) -> list[Finding]:
    findings: list[Finding] = [seat_shortage(), seat_low()]
    for g in range(n_groups):
        for u in range(per_group // 2):
            findings.append(b2b(g, g * 1000 + u, name=f"Guest user with a long display name {g}-{u} (Fabrikam)"))
            findings.append(license_error(g, g * 1000 + u))
    return findings


def card_texts(card: dict[str, Any]) -> list[str]:
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "title", "value") and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(card)
    return out


def urls_in_card(card: dict[str, Any]) -> list[str]:
    urls = [m for t in card_texts(card) for m in re.findall(r"\]\(([^)]*)\)", t)]
    urls.extend(a["url"] for a in card.get("actions", []))
    return urls


# ---------------------------------------------------------------- escaping


def test_markdown_escaping_shows_the_evil_name_literally() -> None:
    text = md_text(EVIL)
    # No markdown-special character is left unescaped, and the card's {{DATE()}} cannot match.
    assert not re.search(r"(?<!\\)[*_\[\]()<>|{}#&+~`-]", text), text
    assert "{{" not in text and "://" not in text
    # Every markdown-special character is backslash-escaped; unescaping gives back the name.
    assert re.sub(r"\\(.)", r"\1", text).replace("\u2060", "") == EVIL
    assert md_text("1. first") == "1\\. first"
    assert md_text("- item").startswith("\\-")
    assert md_text("# head").startswith("\\#")
    assert md_text("a\nb\r\n* c") == "a b \\* c"
    assert md_text("x\u202eevil\u200b") == "x evil"


def test_html_escaping() -> None:
    text = html_text(EVIL)
    assert "<" not in text and ">" not in text and '"' not in html_text('a"b') and "'" not in html_text("a'b")
    assert "https://evil" not in text  # defanged against auto-linking
    assert html_text("a & b") == "a &amp; b"


# ---------------------------------------------------------------- Teams


@pytest.fixture(scope="module")
def cards() -> dict[str, bytes]:
    """Every card shape the tests look at, validated together with Microsoft's library (one node process)."""
    evil = [b2b(1, 1, name=EVIL, group_name=EVIL), nested(2, 3), seat_shortage()]
    evil[1] = replace(evil[1], group_name=EVIL, member_group_name="1. [x](javascript:alert(1)) **b** _i_")
    resolved_state = AlertState("f" * 32, "nested_group", Severity.WARNING, NOW, NOW, last_notified=NOW)
    rep = report([], run_id="r-resolved")
    s = settings()
    only_resolved = build_digest(rep, AlertPlan(resolved=(resolved_state,)), s)
    assert only_resolved is not None
    shapes = {
        "typical": teams_payload(digest_for(typical())[0]),
        "evil": teams_payload(digest_for(evil, tenant_name=EVIL)[0]),
        "big": teams_payload(digest_for(big())[0]),
        "huge": teams_payload(digest_for(big(400, 50))[0]),
        "critical": teams_payload(digest_for(typical(), critical_only=True)[0]),
        "partial": teams_payload(digest_for(typical(), status=RunStatus.PARTIAL, errors=("members x: gone",))[0]),
        "resolved": teams_payload(only_resolved),
    }
    result = validate_cards(list(shapes.values()))
    assert result["cards"] == len(shapes)
    assert result["events"] == [], result["events"]
    return shapes


def test_every_card_parses_with_zero_validation_events(cards: dict[str, bytes]) -> None:
    for name, body in cards.items():
        message = json.loads(body)
        assert message["type"] == "message", name
        (attachment,) = message["attachments"]
        assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
        assert attachment["contentUrl"] is None
        assert attachment["content"]["version"] == "1.5"
        assert len(body) <= TEAMS_MAX_BYTES, (name, len(body))


def test_typical_card_content(cards: dict[str, bytes]) -> None:
    card = json.loads(cards["typical"])["attachments"][0]["content"]
    texts = "\n".join(card_texts(card))
    # Issue 30, item 2: the title says what is new first; no internal id in the subtitle (it is in the footer).
    assert card["body"][0]["text"] == r"License audit — Contoso: 9 new \(2 critical, 7 warning\)"  # markdown-escaped
    assert "alert" not in card["body"][1]["text"] and "Run" not in card["body"][1]["text"]
    assert card["body"][-1]["text"].startswith("Run ")
    # Only the products really short of seats (the E5 is merely low): one line each, no wide table.
    short = next(i for i, b in enumerate(card["body"]) if b.get("text") == "Products short of seats")
    assert card["body"][short + 1]["text"] == "- **Office 365 E3**: 100 of 100 used, 12 users waiting"
    assert "Office 365 E5" not in card["body"][short + 1]["text"]
    assert not any(b["type"] == "Table" for b in card["body"])
    assert "Guest 1" in texts and "Team 3" in texts and "CountViolation" in texts
    assert card["actions"][0] == {"type": "Action.OpenUrl", "title": "Full report", "url": REPORT_URL}
    for url in urls_in_card(card):
        assert url in (REPORT_URL, M365_LICENSES) or url.startswith(ENTRA), url


def test_no_report_action_without_a_report_url() -> None:
    rep = report(typical())
    s = settings()
    d = build_digest(rep, plan_alerts(rep, {}, s, NOW), s)
    assert d is not None
    assert [a["title"] for a in build_card(d)["actions"]] == ["Licenses (M365 admin)"]


def test_evil_names_create_no_link_and_no_date_function(cards: dict[str, bytes]) -> None:
    card = json.loads(cards["evil"])["attachments"][0]["content"]
    for url in urls_in_card(card):
        assert url in (REPORT_URL, M365_LICENSES) or url.startswith(ENTRA), url
    texts = card_texts(card)
    joined = "\n".join(texts)
    assert "{{DATE" not in joined and "*bold*" not in joined and "](https://evil" not in joined
    assert "](javascript" not in joined
    assert "\\*bold\\*" in joined  # shown literally


def test_5000_findings_are_trimmed_under_28kb_without_cutting_json(cards: dict[str, bytes]) -> None:
    body = cards["big"]
    assert len(body) <= TEAMS_MAX_BYTES
    card = json.loads(body)["attachments"][0]["content"]
    texts = "\n".join(card_texts(card))
    assert "more" in texts  # "and 49 more", "and 40 more groups"
    facts = {f["title"]: f["value"] for f in next(b for b in card["body"] if b["type"] == "FactSet")["facts"]}
    assert int(facts["Critical"]) + int(facts["Warning"]) == 5002  # totals stay exact when lists are cut
    huge = json.loads(cards["huge"])["attachments"][0]["content"]
    assert len(cards["huge"]) <= TEAMS_MAX_BYTES
    assert any(t.startswith("Not shown") or "more" in t for t in card_texts(huge))


def test_sections_are_dropped_with_a_note_when_trimming_is_not_enough() -> None:
    d, _ = digest_for(typical())
    body = teams_payload(d, max_bytes=4_000)
    assert len(body) <= 4_000
    texts = "\n".join(card_texts(json.loads(body)["attachments"][0]["content"]))
    assert "Not shown to fit a Teams message" in texts
    validate = validate_cards([body])
    assert validate["events"] == []


def test_critical_only_digest() -> None:
    d, _ = digest_for(typical(), critical_only=True)
    assert {s.kind for s in d.sections} == {"seat_shortage", "license_error"}
    assert d.counts[Severity.WARNING] == 0 and d.counts[Severity.CRITICAL] == 2
    assert d.headline().startswith("Critical license alerts — Contoso")


# ---------------------------------------------------------------- e-mail


def test_mail_message_shape_and_html() -> None:
    d, _ = digest_for(typical())
    request = build_message(d, ["admins@contoso.example", "ops@contoso.example", "admins@contoso.example"])
    assert request["saveToSentItems"] is False
    msg = request["message"]
    assert msg["subject"].startswith("License audit — Contoso: 2 critical, 7 warning")
    assert "\n" not in msg["subject"]
    assert msg["importance"] == "high"
    assert msg["toRecipients"] == [
        {"emailAddress": {"address": "admins@contoso.example"}},
        {"emailAddress": {"address": "ops@contoso.example"}},
    ]
    assert msg["body"]["contentType"] == "HTML"
    page = parse_html(msg["body"]["content"])
    assert not {"script", "svg", "img", "style", "iframe", "object", "form"} & set(page.tags)
    assert "Office 365 E3" in page.text and "Guest 2" in page.text and "Products short of seats" in page.text
    for url in page.links:
        assert url in (REPORT_URL, M365_LICENSES) or url.startswith(ENTRA), url
    # The usage bar is made of table cells.
    assert re.search(r'<td width="100%" style="background:#c4314b;', msg["body"]["content"])
    (att,) = msg["attachments"]
    assert att["@odata.type"] == "#microsoft.graph.fileAttachment" and att["contentType"] == "text/csv"
    rows = list(csv.DictReader(io.StringIO(base64.b64decode(att["contentBytes"]).decode("utf-8-sig"))))
    assert len(rows) == len(d.findings) == 9


def test_mail_escapes_evil_names_and_creates_no_link() -> None:
    findings = [b2b(1, 1, name=EVIL, group_name=EVIL)]
    d, _ = digest_for(findings, tenant_name=EVIL)
    msg = build_message(d, ["a@contoso.example"])["message"]
    page = parse_html(msg["body"]["content"])
    assert "script" not in page.tags and page.tags.count("a") == len(page.links)
    for url in page.links:
        assert url in (REPORT_URL, M365_LICENSES) or url.startswith(ENTRA), url
    assert EVIL.replace("://", ":\u2060//") in page.text  # the name is shown literally
    assert "\n" not in msg["subject"] and "\r" not in msg["subject"]


def test_mail_with_5000_findings_stays_under_budget_and_well_formed() -> None:
    d, _ = digest_for(big())
    request = build_message(d, ["a@contoso.example"])
    size = len(orjson.dumps(request))
    assert size <= MAIL_MAX_BYTES < 4 * 1024 * 1024
    page = parse_html(request["message"]["body"]["content"])
    assert "more" in page.text
    small = build_message(d, ["a@contoso.example"], max_bytes=60_000)
    assert len(orjson.dumps(small)) <= 60_000
    assert "attachments" not in small["message"]  # the CSV goes first, with a note
    assert "not attached" in parse_html(small["message"]["body"]["content"]).text


def test_csv_neutralises_formulas() -> None:
    f = b2b(1, 1, name='=HYPERLINK("https://evil","x")')
    text = findings_csv([f]).decode("utf-8-sig")
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["user_name"].startswith("'=")


def test_a_message_needs_recipients() -> None:
    d, _ = digest_for(typical())
    with pytest.raises(ValueError, match="recipient"):
        build_message(d, [])


def test_license_errors_are_listed_longest_waiting_first() -> None:
    day = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    errors = [
        replace(license_error(1, 1), since=day.replace(day=20)),
        replace(license_error(1, 2), since=None),  # Graph did not say: last
        replace(license_error(1, 3), since=day.replace(day=3)),
        replace(license_error(1, 4), since=day.replace(day=11)),
    ]
    d, _ = digest_for(errors)
    [section] = [s for s in d.sections if s.kind == "license_error"]
    [block] = section.blocks
    assert [e.text for e in block.entries] == ["User 3", "User 4", "User 1", "User 2"]
    assert block.entries[0].detail == "Office 365 E3: CountViolation, since 2026-11-03"
    assert block.entries[-1].detail == "Office 365 E3: CountViolation"


def test_mail_lists_license_errors_as_a_table() -> None:
    """Issue 30, item 2: the mail stays complete, with the license errors as a table (user, product, error, since,
    group), not one paragraph per group."""
    d, _ = digest_for(typical())
    html = build_message(d, ["admins@contoso.example"])["message"]["body"]["content"]
    section = html[html.index("Group license assignments in error") :]
    section = section[: section.index("</table>")]  # the section's table of errors
    assert ">User</th>" in section and ">Product</th>" in section and ">Since</th>" in section
    rows = re.findall(r"<tr><td[^>]*>(.*?)</tr>", section)
    assert len(rows) == 2  # one row per error
    assert "CountViolation" in section and "MutuallyExclusiveViolation" in section
    parse_html(html)  # still well-formed
