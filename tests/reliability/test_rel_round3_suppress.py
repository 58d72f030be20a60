"""Round three, item 1 (and the suppress parts of item 9): nobody silences alerts unseen. Real Table Storage
(Azurite), the sandbox, a loopback Teams webhook and the real CLI. Each failed before its fix."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any

import orjson
import pytest

from licensing.cli import EXIT_OK, EXIT_USAGE, main
from licensing.errors import BadRequestError
from licensing.model import Finding, RunStatus, Severity
from licensing.pipeline.handlers import MessageResult, handle_audit_message
from licensing.pipeline.runtime import Runtime
from licensing.sandbox import SandboxServer, SandboxTenant
from licensing.settings import Settings
from licensing.suppressions import (
    Limits,
    Suppression,
    SuppressionRequest,
    apply_request,
    apply_suppressions,
    end_words,
)
from tests.reliability.conftest import SleepLog, WebhookReceiver, make_settings

pytestmark = pytest.mark.azurite


def settings_for(sandbox: SandboxServer, storage: str, tenant: SandboxTenant, webhook: WebhookReceiver) -> Settings:
    return make_settings(
        sandbox, storage=storage, webhook_url=webhook.url, AZURE_TENANT_ID=tenant.tenant_id, AUDIT_QUEUE="q-unused"
    )


def handle(body: dict[str, Any], settings: Settings, store: Any, message_id: str, now: Any = None) -> MessageResult:
    kw = {"now": now} if now is not None else {}
    runtime = Runtime(settings, store=store, credential="none", **kw)
    return asyncio.run(handle_audit_message(orjson.dumps(body), runtime, message_id=message_id))


def night(settings: Settings, store: Any, name: str, now: Any = None) -> MessageResult:
    result = handle({"scope": "tenant", "request_id": name}, settings, store, f"m-{name}", now)
    assert result.outcome == "completed" and result.audit is not None, result.reason
    return result


def card_text(body: bytes) -> str:
    """The card's texts, with the Markdown escapes taken out."""
    card = orjson.loads(body)["attachments"][0]["content"]
    return " ".join(str(b.get("text", "")) for b in card["body"]).replace("\\", "")


def criticals(result: MessageResult) -> list[Finding]:
    assert result.audit is not None
    return [f for f in result.audit.report.findings if f.severity == Severity.CRITICAL]


def jwt(**claims: str) -> str:
    part = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJub25lIn0.{part}.sig"


class TokenCredential:
    """A credential whose Graph token carries the given claims (what `az login` would give)."""

    def __init__(self, **claims: str) -> None:
        self.token = jwt(**claims)
        self.scopes: list[str] = []

    async def get_token(self, *scopes: str, **_kw: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.extend(scopes)
        return AccessToken(self.token, 4_102_444_800)

    async def close(self) -> None:
        return None


def signed_in(monkeypatch: pytest.MonkeyPatch, credential: TokenCredential) -> None:
    import licensing.graph.auth as auth

    real = auth.make_auth_provider
    monkeypatch.setattr(
        auth, "make_auth_provider", lambda s, name: real(s, name) if name == "none" else (None, credential)
    )


# ------------------------------------------------------------------ the audit queue silences nothing


@pytest.mark.parametrize(
    "message",
    [
        {"scope": "suppress", "sku": "ENTERPRISEPACK", "reason": "noise", "requested_by": "Global Administrator"},
        {"scope": "Suppress", "finding_id": "0" * 32, "reason": "x", "until": "9999-12-31"},
    ],
    ids=["sku-no-end", "until-9999"],
)
def test_a_suppress_message_on_the_audit_queue_is_rejected_with_its_message_id_and_silences_nothing(
    message: dict[str, Any], sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any,
    storage_connection: str, webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook)
    first = night(settings, store, "n1")
    result = handle(message, settings, store, "msg-suppress-1")
    assert result.outcome == "rejected", result
    assert "not accepted from the audit queue" in (result.reason or "")
    assert store.suppressions(small_tenant.tenant_id) == []
    rejected = [r for r in store.runs(small_tenant.tenant_id, limit=20) if r.status is RunStatus.REJECTED]
    assert [r.request_id for r in rejected] == ["msg-suppress-1"], "recorded as a run with its message id"
    second = night(settings, store, "n2")
    assert all(f.suppressed is None for f in second.audit.report.findings)  # type: ignore[union-attr]
    assert criticals(first) and len(criticals(second)) == len(criticals(first))


# ------------------------------------------------------------------ an end, a maximum, a ceiling, a real subject


def test_until_is_required_bounded_and_shorter_for_critical_findings(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook)
    first = night(settings, store, "n1")
    run = first.audit.report.run  # type: ignore[union-attr]
    tenant, now = small_tenant.tenant_id, run.finished_at or run.started_at
    short = next(f for f in criticals(first) if f.kind == "seat_shortage")
    warning = next(f for f in run_findings(store, run.id) if f.severity == Severity.WARNING and f.group_id)
    limits = Limits(max_days=90, max_days_critical=14)

    def ask(until: str | None, **subject: str) -> Any:
        return apply_request(store, tenant, SuppressionRequest(reason="r", by="cli:t", until=until, **subject), now,
                             limits)  # fmt: skip

    for until, needle in ((None, "needs an end"), ("9999-12-31", "more than 14 days"), ("2020-01-01", "in the past")):
        with pytest.raises(BadRequestError, match=needle):
            ask(until, finding_id=short.id)
    with pytest.raises(BadRequestError, match="more than 14 days"):
        ask((now + timedelta(days=30)).date().isoformat(), sku=short.sku_part_number or "")
    with pytest.raises(BadRequestError, match="more than 90 days"):
        ask((now + timedelta(days=120)).date().isoformat(), finding_id=warning.id)
    made = ask((now + timedelta(days=60)).date().isoformat(), finding_id=warning.id).suppression
    assert made.severity is Severity.WARNING and made.until is not None
    crit = ask((now + timedelta(days=10)).date().isoformat(), finding_id=short.id).suppression
    assert crit.severity is Severity.CRITICAL


def run_findings(store: Any, run_id: str) -> list[Finding]:
    return list(store.run_findings(run_id))


def test_user_and_group_subjects_must_be_the_tenants(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook)
    run = night(settings, store, "n1").audit.report.run  # type: ignore[union-attr]
    until = (run.started_at + timedelta(days=5)).date().isoformat()
    for subject in (
        {"user_id": "7" * 8 + "-1111-2222-3333-" + "4" * 12},
        {"group_id": "1" * 8 + "-0000-0000-0000-" + "9" * 12},
    ):
        with pytest.raises(BadRequestError, match="the tenant has no"):
            apply_request(store, small_tenant.tenant_id, SuppressionRequest(reason="r", by="t", until=until, **subject),
                          run.started_at)  # fmt: skip
    assert store.suppressions(small_tenant.tenant_id) == []
    user = next(f.user_id for f in run_findings(store, run.id) if f.user_id)
    assert user is not None
    req = SuppressionRequest(reason="r", by="t", until=until, user_id=user)
    assert apply_request(store, small_tenant.tenant_id, req, run.started_at).added


def test_a_suppression_never_hides_a_finding_that_became_more_severe() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 7, tzinfo=UTC)
    finding = Finding(id="f" * 32, kind="units_expiring", severity=Severity.WARNING, message="grace", sku_id="s1")
    made = Suppression(id="s" + "a" * 12, tenant_id="t", reason="renewing", created_by="cli:x", created_at=now,
                       finding_id=finding.id, until=now + timedelta(days=5), severity=Severity.WARNING)  # fmt: skip
    (marked,) = apply_suppressions([finding], [made], now)
    assert marked.suppressed is not None
    worse = Finding(id=finding.id, kind=finding.kind, severity=Severity.CRITICAL, message="suspended", sku_id="s1")
    (shown,) = apply_suppressions([worse], [made], now)
    assert shown.suppressed is None, "suspended now: it alerts"


# ------------------------------------------------------------------ seen: announced, and listed while hiding criticals


def test_additions_and_removals_are_announced_and_hidden_criticals_listed_in_every_digest(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog,
) -> None:  # fmt: skip
    settings = settings_for(sandbox, storage_connection, small_tenant, webhook)
    first = night(settings, store, "n1")
    assert len(webhook.accepted) == 1
    run = first.audit.report.run  # type: ignore[union-attr]
    short = next(f for f in criticals(first) if f.kind == "seat_shortage")
    until = (run.started_at + timedelta(days=7)).date().isoformat()
    req = SuppressionRequest(reason="PO 4711 raised", by="cli:ana@contoso.com (oid 42)", until=until,
                             finding_id=short.id)  # fmt: skip
    made = apply_request(store, small_tenant.tenant_id, req, run.started_at).suppression

    night(settings, store, "n2")
    assert len(webhook.accepted) == 2, "the addition alone is worth a digest"
    told = card_text(webhook.accepted[-1])
    assert made.id in told and "ana@contoso.com" in told and "PO 4711 raised" in told and made.until is not None
    assert end_words(made.until) in told, "a whole day, said as its last day (issue 30, item 10)"
    assert "hides 1 critical finding" in told

    night(settings, store, "n3")
    assert len(webhook.accepted) == 2, "told once: nothing new, no second announcement"

    store.remove_suppression(small_tenant.tenant_id, made.id, by="cli:bo@contoso.com (oid 7)", at=run.started_at)
    night(settings, store, "n4")
    assert len(webhook.accepted) == 3
    last = card_text(webhook.accepted[-1])
    assert "removed by cli:bo@contoso.com" in last and made.id in last


# ------------------------------------------------------------------ the CLI records who signed in, not a typed name


def test_the_cli_records_the_signed_in_identity_from_the_token(
    sandbox: SandboxServer, small_tenant: SandboxTenant, store: Any, storage_connection: str,
    webhook: WebhookReceiver, graph_sleeps: SleepLog, alert_sleeps: SleepLog, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import licensing.store

    settings = settings_for(sandbox, storage_connection, small_tenant, webhook)
    run = night(settings, store, "n1").audit.report.run  # type: ignore[union-attr]
    finding = next(f for f in run_findings(store, run.id) if f.severity == Severity.WARNING)
    monkeypatch.setattr(licensing.store, "open_store", lambda *_a, **_k: store)
    monkeypatch.setenv("USER", "Global Administrator")
    base = ["suppress", "--store", storage_connection, "--tenant-id", small_tenant.tenant_id,
            "--finding", finding.id, "--reason", "accepted risk"]  # fmt: skip
    until = ["--until", (run.started_at + timedelta(days=3)).date().isoformat()]

    assert main([*base, *until, "--credential", "none"]) == EXIT_USAGE
    assert "sign in" in capsys.readouterr().err
    assert store.suppressions(small_tenant.tenant_id) == []

    credential = TokenCredential(upn="ana@contoso.com", oid="0c7e1d2a-1111-4222-8333-944455556666")
    signed_in(monkeypatch, credential)
    assert main([*base, *until]) == EXIT_OK, capsys.readouterr().err
    [made] = store.suppressions(small_tenant.tenant_id)
    assert made.created_by == "cli:ana@contoso.com (oid 0c7e1d2a-1111-4222-8333-944455556666)"
    assert "Global Administrator" not in made.created_by
    assert credential.scopes and credential.scopes[0].endswith("/.default")


def test_suppression_notes_are_escaped_in_the_card_and_the_mail() -> None:
    """The reason and the identity are admin text shown to every recipient: they cannot inject links or markup."""
    from licensing.alerts import AlertPlan, build_digest
    from licensing.alerts.mail import build_message
    from licensing.alerts.teams import teams_payload
    from tests.unit.alerts_support import report, settings

    hostile = "Suppression s1 added by cli:x: [click](https://evil.example) <script>alert(1)</script> **now**"
    digest = build_digest(report([]), AlertPlan(), settings(), notes=(hostile,), news=True)
    assert digest is not None and "no new findings" in digest.headline(), "a notice alone is no all-clear"
    card = orjson.loads(teams_payload(digest))["attachments"][0]["content"]
    texts = [str(b.get("text", "")) for b in card["body"]]
    note = next(t for t in texts if "Suppression" in t)
    assert "](https://evil.example)" not in note and "\\[click\\]" in note and "\\*\\*now\\*\\*" in note
    html = build_message(digest, ["admins@contoso.example"])["message"]["body"]["content"]
    assert "<script>" not in html and "&lt;script&gt;" in html
