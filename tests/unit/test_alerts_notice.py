"""Issue 30, item 2: a plan card names the reasons' kinds in words, not as vocabulary values."""

from __future__ import annotations

import json

from licensing.alerts.notice import Notice, notice_card, notice_mail
from tests.unit.alerts_support import validate_cards

LINES = (
    "  Microsoft 365 E3 (SPE_E3): 2 need a seat, 158 free, 0 already licensed",
    "Blockers:",
    "  nested_group (1):",
    "    - the group contains the group Team Nested: its members would get nothing",
    "Warnings:",
    "  usage_location_missing (3):",
)


def test_plan_card_and_mail_name_kinds_in_words() -> None:
    notice = Notice("Plan for SG-Plan-Nested: unsuitable", LINES, False, "run-1.teams.plan", "Contoso")
    body = notice_card(notice)
    texts = [b["text"].replace("\\", "") for b in json.loads(body)["attachments"][0]["content"]["body"]]
    assert "Nested group (1):" in texts and "Usage location missing (3):" in texts
    assert not any("nested_group" in t or "usage_location_missing" in t for t in texts)
    assert "Blockers:" in texts  # other lines as they are
    assert validate_cards([body])["events"] == []
    html = notice_mail(notice, ["admins@contoso.example"])["message"]["body"]["content"]
    assert "Nested group (1):" in html and "nested_group" not in html


def test_plan_card_and_mail_link_the_group_in_the_entra_admin_center() -> None:
    # Issue 30, item 2: "plan cards ... link the group".
    from licensing.links import group_url

    gid = "0b5a4d3c-2e1f-4a9b-8c7d-6e5f4a3b2c1d"
    notice = Notice("Plan for SG-Sales: suitable", LINES, True, "run-1.teams.plan", "Contoso", gid, "usgov")
    body = notice_card(notice)
    [action] = json.loads(body)["attachments"][0]["content"]["actions"]
    assert action == {"type": "Action.OpenUrl", "title": "Group (Entra admin)", "url": group_url(gid, "usgov")}
    assert validate_cards([body])["events"] == []
    html = notice_mail(notice, ["admins@contoso.example"])["message"]["body"]["content"]
    assert f'<a href="{group_url(gid, "usgov")}"' in html and "Group (Entra admin)</a>" in html
    # Without a group (none known), no button and no link.
    bare = Notice("Plan", LINES, True, "r", "Contoso")
    assert "actions" not in json.loads(notice_card(bare))["attachments"][0]["content"]
