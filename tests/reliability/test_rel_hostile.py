"""Hostile tenant data (markup, Adaptive Card and Markdown syntax, CSV formulas, control characters, very long
and right-to-left names) shown literally in every output: terminal, Teams card, e-mail, HTML report, CSV, JSON.
Nothing from the tenant is executed, turned into a link, or allowed to reorder the text around it."""

from __future__ import annotations

import asyncio
import csv
import html
import io
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import orjson
import pytest

from licensing.emulator import Azurite
from licensing.model import AuditRequest, Scope, Trigger
from licensing.pipeline.conclusion import AuditOutcome
from licensing.pipeline.run import run_audit
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import SandboxServer, SandboxTenant, TenantSpec, generate_tenant
from licensing.sandbox.catalog import ODD_GROUP_NAMES, ODD_USER_NAMES
from tests.reliability.conftest import WebhookReceiver, assert_matches_truth, make_settings

pytestmark = pytest.mark.azurite

CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE_URL = "example.invalid"


def hostile_tenant() -> SandboxTenant:
    """The minimal tenant with every user and group of a finding given one of the sandbox's hostile names."""
    from dataclasses import replace

    from licensing.sandbox.tenant import ODD_NAME

    tenant = generate_tenant(TenantSpec(seed=23, users=60, groups=12))
    for f in tenant.ground_truth:
        index = tenant.user_index(f.user_id) if f.user_id else None
        if index is not None:
            tenant.flags[index] |= ODD_NAME  # display name = ODD_USER_NAMES[index % 12]
    tenant.groups = tuple(
        replace(g, display_name=ODD_GROUP_NAMES[i % len(ODD_GROUP_NAMES)]) for i, g in enumerate(tenant.groups)
    )
    return tenant


@pytest.fixture(scope="module")
def outputs(azurite: Azurite) -> Iterator[dict[str, Any]]:
    """One audit of the tenant with odd names, alerting to a webhook and by mail; every rendering of it."""
    from licensing.settings import Secret, StorageConnection
    from licensing.store import open_store
    from licensing.store.connection import RetryPolicy

    storage_connection = azurite.connection_string
    receiver = WebhookReceiver()
    store = open_store(
        StorageConnection(connection_string=Secret(storage_connection)), prefix="hostile",
        retry=RetryPolicy(sleep=lambda _s: None),
    )  # fmt: skip
    store.ensure_tables()
    try:
        tenant = hostile_tenant()
        with SandboxServer(tenant) as server:
            settings = make_settings(
                server, storage=storage_connection, webhook_url=receiver.url, mail=True, ALERT_MIN_SEVERITY="info"
            )
            request = AuditRequest(scope=Scope.TENANT, trigger=Trigger.CLI)
            outcome: AuditOutcome = asyncio.run(run_audit(request, Runtime(settings, store=store, credential="none")))
            mail = server.sent_mail
        assert_matches_truth(outcome.report, tenant)  # names never change what is found
        yield {"outcome": outcome, "cards": list(receiver.accepted), "mail": mail}
    finally:
        receiver.close()
        store.drop_tables()


def hostile_names(outcome: AuditOutcome) -> set[str]:
    names = {n for f in outcome.report.findings for n in (f.user_name, f.group_name, f.member_group_name) if n}
    odd = set(ODD_USER_NAMES) | set(ODD_GROUP_NAMES)
    return {n for n in names if any(o in n or n in o for o in odd)}


def test_the_tenant_really_has_hostile_names_in_findings(outputs: dict[str, Any]) -> None:
    names = hostile_names(outputs["outcome"])
    assert any("<script>" in n for n in names)
    assert any(n.startswith("=") for n in names)
    assert any("\u202e" in n for n in names)
    assert any(CONTROL.search(n) for n in names)
    assert any(len(n) >= 256 for n in names)
    assert outputs["cards"] and outputs["mail"], "both channels delivered a digest"


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def test_teams_card_shows_names_literally(outputs: dict[str, Any]) -> None:
    card = orjson.loads(outputs["cards"][0])["attachments"][0]["content"]
    texts = list(_strings(card))
    joined = "\n".join(texts)
    assert "\\<script\\>" in joined or "\\<b\\>" in joined, "names with markup are in the card, escaped"
    for text in texts:
        assert not CONTROL.search(text), repr(text[:80])
        assert "{{" not in text, "no {{DATE()}} / {{TIME()}} expansion"
        assert "://" + HOSTILE_URL not in text and "www." + HOSTILE_URL not in text, "no link from tenant data"
        # Every Markdown link or emphasis opener from the tenant arrives backslash-escaped.
        assert re.search(r"(?<!\\)\[link(?<!\\)\]", text) is None
        assert re.search(r"(?<![\\])\*bold(?<![\\])\*", text) is None
    actions = [a for a in _strings(card.get("actions", [])) if a.startswith("http")]
    assert all(HOSTILE_URL not in a for a in actions)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.hrefs.extend(v or "" for k, v in attrs if k in ("href", "src", "action"))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _check_html(document: str, *, allow_scripts: bool) -> _Tags:
    parser = _Tags()
    parser.feed(document)
    assert "<script>alert(1)</script>" not in document
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in document, "the name is shown, escaped"
    assert "<b>x</b>" not in document and "<i>markup</i>" not in document
    if not allow_scripts:
        assert "script" not in parser.tags
    assert all(HOSTILE_URL not in h for h in parser.hrefs), "no link from tenant data"
    assert not CONTROL.search(document.replace("\t", "").replace("\n", "").replace("\r", ""))
    return parser


def test_mail_shows_names_literally(outputs: dict[str, Any]) -> None:
    message = outputs["mail"][0]["body"]["message"]
    body = message["body"]["content"]
    parser = _check_html(body, allow_scripts=False)
    assert "svg" not in parser.tags and "iframe" not in parser.tags
    assert not CONTROL.search(message["subject"])
    text = html.unescape("".join(parser.text))
    assert "=1+1" in text or "=HYPERLINK(" in text


def test_html_report_shows_names_literally(outputs: dict[str, Any]) -> None:
    from licensing.report.html import render_html

    report = outputs["outcome"].report
    document = render_html(report)
    _check_html(document, allow_scripts=True)  # the report's own script block, with tenant data as inert JSON
    for block in re.findall(r"<script[^>]*>(.*?)</script>", document, flags=re.S):
        assert "</" not in block.replace("<\\/", ""), "tenant strings cannot close the script element"
        assert "<script" not in block.lower()


def test_csv_cannot_run_formulas(outputs: dict[str, Any]) -> None:
    from licensing.report.csv_report import findings_csv

    report = outputs["outcome"].report
    rows = list(csv.reader(io.StringIO(findings_csv(report.findings), newline="")))
    cells = [c for row in rows[1:] for c in row]
    assert any(c.startswith("'=") for c in cells), "formula-looking names are defused, not dropped"
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert len(rows) - 1 == len(report.findings), "no name broke the row structure"


def test_csv_cells_carry_no_raw_bidi_controls(outputs: dict[str, Any]) -> None:
    """Issue 16 item 16: a U+202E in a tenant name reached the CSV raw and reordered what Excel shows."""
    from licensing.report.csv_report import findings_csv, groups_csv

    report = outputs["outcome"].report
    text = findings_csv(report.findings) + groups_csv(report.groups)
    assert not re.search("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]", text)
    assert "<U+202E>" in text, "the control is shown as text, not dropped"


def test_terminal_shows_names_literally(outputs: dict[str, Any]) -> None:
    from rich.console import Console

    from licensing.report.terminal import render_summary

    buffer = io.StringIO()
    console = Console(file=buffer, width=160, color_system=None, force_terminal=True, emoji=False, highlight=False)
    render_summary(outputs["outcome"].report, console=console, verbose=True)
    text = buffer.getvalue()
    lines = re.sub(r"\x1b\[[0-9;]*m", "", text)  # rich's own styling
    assert not CONTROL.search(lines.replace("\t", "")), "no terminal control sequence from tenant data"
    assert "\x1b]8;" not in text, "no OSC 8 hyperlink from tenant data"
    assert "<script>alert(1)</script>" in lines or "<b>x</b>" in lines, "markup is shown as text"
    assert "[link](https://" in lines or "[link]" in lines, "rich markup in a name is not interpreted"


def test_json_report_keeps_names_exactly(outputs: dict[str, Any]) -> None:
    from licensing.report.json_report import report_from_json, to_json_bytes

    report = outputs["outcome"].report
    back = report_from_json(to_json_bytes(report))
    assert [f.id for f in back.findings] == [f.id for f in report.findings]
    assert {f.message for f in back.findings} == {f.message for f in report.findings}
