"""Factories and tools shared by the alerts tests (reports, settings, a scripted HTTP receiver, card checks).

Holds no tests itself; the alerts test modules import it as ``tests.unit.alerts_support``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from licensing.model import (
    AuditReport,
    Finding,
    FindingKind,
    GroupSummary,
    RuleOutcome,
    RunInfo,
    RunStatus,
    Scope,
    Severity,
    SkuSummary,
    Trigger,
    finding_id,
)
from licensing.settings import Settings, load_settings
from tests import factories

ROOT = Path(__file__).resolve().parents[2]
VALIDATOR = ROOT / "tests" / "js" / "validate_card.js"
TENANT = "11111111-2222-3333-4444-555555555555"
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
E5 = "c7df2760-2c81-4ef7-b578-5b5392b571df"
EVIL = "Bob | partner *bold* <a href=x>y</a> [link](https://evil) {{DATE(2017-02-14T06:08:39Z, SHORT)}}"


def gid(n: int) -> str:
    return f"aaaaaaaa-0000-0000-0000-{n:012d}"


def uid(n: int) -> str:
    return f"bbbbbbbb-0000-0000-0000-{n:012d}"


def settings(**env: str) -> Settings:
    base = {"ALERT_MIN_SEVERITY": "warning", "ALERT_RENOTIFY_HOURS": "24"}
    base.update(env)
    return load_settings(base)


def seat_shortage(sku_id: str = E3, part: str = "ENTERPRISEPACK") -> Finding:
    return Finding(
        id=finding_id(FindingKind.SEAT_SHORTAGE, sku_id),
        kind=FindingKind.SEAT_SHORTAGE,
        severity=Severity.CRITICAL,
        message=f"{part}: 12 users wait for a seat, 0 free",
        sku_id=sku_id,
        sku_part_number=part,
    )


def seat_low(sku_id: str = E5, part: str = "ENTERPRISEPREMIUM") -> Finding:
    return Finding(
        id=finding_id(FindingKind.SEAT_LOW, sku_id),
        kind=FindingKind.SEAT_LOW,
        severity=Severity.WARNING,
        message=f"{part}: 3 free seats",
        sku_id=sku_id,
        sku_part_number=part,
    )


def b2b(group: int, user: int, name: str | None = None, group_name: str | None = None) -> Finding:
    return Finding(
        id=finding_id(FindingKind.B2B_MEMBER, gid(group), uid(user)),
        kind=FindingKind.B2B_MEMBER,
        severity=Severity.WARNING,
        message="a B2B account is a member of a licensing group",
        group_id=gid(group),
        user_id=uid(user),
        group_name=group_name or f"Licensing group {group}",
        user_name=name or f"Guest {user}",
    )


def nested(group: int, member: int) -> Finding:
    return Finding(
        id=finding_id(FindingKind.NESTED_GROUP, gid(group), gid(member)),
        kind=FindingKind.NESTED_GROUP,
        severity=Severity.WARNING,
        message="a group is a member of a licensing group",
        group_id=gid(group),
        member_group_id=gid(member),
        group_name=f"Licensing group {group}",
        member_group_name=f"Team {member}",
    )


def license_error(group: int, user: int, error: str = "CountViolation") -> Finding:
    return Finding(
        id=finding_id(FindingKind.LICENSE_ERROR, gid(group), uid(user), E3, error),
        kind=FindingKind.LICENSE_ERROR,
        severity=Severity.CRITICAL if error == "CountViolation" else Severity.WARNING,
        message=f"license error {error}",
        group_id=gid(group),
        user_id=uid(user),
        sku_id=E3,
        sku_part_number="ENTERPRISEPACK",
        error=error,
        group_name=f"Licensing group {group}",
        user_name=f"User {user}",
    )


def processing(group: int, severity: Severity = Severity.INFO) -> Finding:
    return Finding(
        id=finding_id(FindingKind.PROCESSING_INCOMPLETE, gid(group)),
        kind=FindingKind.PROCESSING_INCOMPLETE,
        severity=severity,
        message="license processing is not complete",
        group_id=gid(group),
        group_name=f"Licensing group {group}",
    )


def sku_summary(sku_id: str = E3, part: str = "ENTERPRISEPACK", enabled: int = 100, consumed: int = 100) -> SkuSummary:
    return factories.sku_summary(
        sku_id=sku_id, sku_part_number=part,
        product_name="Office 365 E3" if part == "ENTERPRISEPACK" else "Office 365 E5",
        enabled=enabled, consumed=consumed, available=enabled - consumed, group_assigned_users=consumed,
        waiting_users=12 if consumed >= enabled else 0, assigned_by_groups=(gid(1),),
    )  # fmt: skip


def group_summary(n: int) -> GroupSummary:
    return factories.group_summary(id=gid(n), display_name=f"Licensing group {n}", sku_ids=(E3,))


def report(
    findings: Sequence[Finding],
    *,
    run_id: str = "run-1",
    when: datetime = datetime(2026, 1, 1, 2, 30, tzinfo=UTC),
    status: RunStatus = RunStatus.SUCCEEDED,
    scope: Scope = Scope.TENANT,
    scope_id: str | None = None,
    errors: tuple[str, ...] = (),
    skus: Sequence[SkuSummary] | None = None,
    groups: Sequence[GroupSummary] | None = None,
    outcomes: Sequence[RuleOutcome] | None = None,
    tenant_name: str = "Contoso",
) -> AuditReport:
    run = RunInfo(
        id=run_id,
        tenant_id=TENANT,
        tenant_name=tenant_name,
        trigger=Trigger.SCHEDULE,
        scope=scope,
        scope_id=scope_id,
        started_at=when,
        status=status,
        errors=errors,
    )
    if outcomes is None:
        counted = {k.value: 0 for k in FindingKind}
        for f in findings:
            counted[f.kind] += 1
        outcomes = [RuleOutcome(k, "failed" if n else "passed", n) for k, n in counted.items()]
    return AuditReport(
        run=run,
        skus=tuple(skus if skus is not None else (sku_summary(), sku_summary(E5, "ENTERPRISEPREMIUM", 100, 97))),
        groups=tuple(groups if groups is not None else (group_summary(1), group_summary(2))),
        findings=tuple(findings),
        outcomes=tuple(outcomes),
    )


# ---------------------------------------------------------------- Adaptive Cards, HTML


def validate_cards(payloads: Sequence[bytes | dict[str, Any]]) -> dict[str, Any]:
    """Parse every card with Microsoft's adaptivecards library in Node (one process for all of them)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: Adaptive Cards are not validated with Microsoft's library")
    if not (ROOT / "node_modules" / "adaptivecards" / "dist" / "adaptivecards.js").exists():
        pytest.skip("node_modules/adaptivecards is missing: run npm install")
    docs = [json.loads(p) if isinstance(p, bytes | bytearray) else p for p in payloads]
    proc = subprocess.run(
        [node, str(VALIDATOR)], input=json.dumps(docs), capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode in (0, 1), proc.stderr or proc.stdout
    return json.loads(proc.stdout)


class _TagBalance(HTMLParser):
    VOID = frozenset({"br", "meta", "img", "hr", "input", "link", "col", "wbr", "area", "base", "source"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unbalanced </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@dataclass
class ParsedHtml:
    tags: list[str]
    links: list[str]
    text: str


def parse_html(body: str) -> ParsedHtml:
    """Check the body is well-formed (balanced tags; XML-parsable) and return its tags, links and text."""
    import xml.etree.ElementTree as ET

    checker = _TagBalance()
    checker.feed(body)
    checker.close()
    assert not checker.problems, checker.problems
    assert not checker.stack, f"unclosed tags: {checker.stack}"
    ET.fromstring(body.replace("<!DOCTYPE html>", ""))  # XHTML-compatible: parses as XML
    return ParsedHtml(checker.tags, checker.links, "".join(checker.text))


# ---------------------------------------------------------------- a scripted local HTTP receiver


@dataclass
class Reply:
    status: int = 202
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    body: bytes = b""


class Receiver:
    """A tiny HTTP server on 127.0.0.1 that answers POSTs from a script (then 202) and records them."""

    def __init__(self, script: Sequence[Reply] = ()) -> None:
        self.script = list(script)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self._lock = threading.Lock()
        self._release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    reply = receiver.script.pop(0) if receiver.script else Reply()
                    receiver.requests.append((self.path, dict(self.headers.items()), body))
                if reply.delay_s:
                    receiver._release.wait(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:  # the client timed out and went away
                    pass

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/workflows/abc/triggers/manual/paths/invoke?sig=SECRET"

    @property
    def bodies(self) -> list[bytes]:
        return [b for _, _, b in self.requests]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
