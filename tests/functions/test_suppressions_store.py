"""Suppressions against Azurite through the real triggers: added between two nights (the CLI, signed in), listed,
removed, expired; what they cover is reported, never alerted, and comes back as new when they end. The audit queue
takes none."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import timedelta

import azure.functions.queue as fq
import orjson
import pytest

from licensing.cli import EXIT_OK, EXIT_USAGE, main
from licensing.clock import utcnow
from licensing.model import RunStatus
from licensing.suppressions import Suppression
from tests.functions.test_queue_pipeline import Pipeline, pipe  # noqa: F401 - the fixture

pytestmark = pytest.mark.azurite


def night(p: Pipeline, fns: dict, request_id: str) -> None:  # type: ignore[type-arg]
    body = orjson.dumps({"scope": "tenant", "request_id": request_id})
    asyncio.run(fns["audit_request"](fq.QueueMessage(id=f"m-{request_id}", body=body, dequeue_count=1)))


def queued(p: Pipeline, fns: dict, body: dict, message_id: str) -> None:  # type: ignore[type-arg]
    asyncio.run(fns["audit_request"](fq.QueueMessage(id=message_id, body=orjson.dumps(body), dequeue_count=1)))


def card_finding_names(body: bytes) -> str:
    return json.dumps(orjson.loads(body))


class _Credential:
    """What `az login` gives the CLI: a Graph token whose claims name the admin."""

    async def get_token(self, *_scopes: str, **_kw: object) -> object:
        from azure.core.credentials import AccessToken

        claims = base64.urlsafe_b64encode(b'{"upn": "ana@contoso.com", "oid": "oid-1"}').decode().rstrip("=")
        return AccessToken(f"h.{claims}.s", 4_102_444_800)

    async def close(self) -> None:
        return None


@pytest.fixture(autouse=True)
def _signed_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import licensing.graph.auth as auth

    real = auth.make_auth_provider
    # The audits read the sandbox with no credential; the CLI's sign-in (default credential) gets the admin's token.
    monkeypatch.setattr(
        auth, "make_auth_provider", lambda s, name: real(s, name) if name == "none" else (None, _Credential())
    )


def suppress(p: Pipeline, *args: str) -> int:
    return main(["suppress", *args, "--store", p.storage, "--tenant-id", p.tenant.tenant_id])


def test_a_suppression_added_between_two_nights(pipe: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    fns = pipe.load()
    night(pipe, fns, "n1")
    first = pipe.report("n1")
    assert first.run.status is RunStatus.SUCCEEDED and len(pipe.teams.bodies) == 1
    guests = [f for f in first.findings if f.kind == "b2b_member"]
    group_id = guests[0].group_id
    assert group_id
    capsys.readouterr()

    # Bad input: one line, exit 2, nothing written (a missing --until is named first: tests/integration).
    soon = (utcnow() + timedelta(days=7)).date().isoformat()
    for args, needle in (
        (["--finding", "0" * 32, "--reason", "x", "--until", soon], "no finding"),
        (["--group", group_id, "--reason", "x", "--until", "2020-01-01"], "is in the past"),
        (["--sku", "NOT_OWNED", "--reason", "x", "--until", soon], "no subscribed SKU"),
        (["--group", group_id], "needs a reason"),
        (["--remove", "s000000000000"], "has no suppression"),
    ):
        assert suppress(pipe, *args) == EXIT_USAGE, args
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1, err
    assert pipe.store.suppressions(pipe.tenant.tenant_id) == []

    reason = "Partner accounts are licensed on purpose (CAB-1234)"
    until = (utcnow() + timedelta(days=30)).date().isoformat()
    assert suppress(pipe, "--group", group_id, "--kind", "b2b_member", "--reason", reason, "--until", until) == EXIT_OK
    out = capsys.readouterr().out
    [made] = pipe.store.suppressions(pipe.tenant.tenant_id)
    assert made.id in out and made.created_by == "cli:ana@contoso.com (oid oid-1)" and made.group_id == group_id

    night(pipe, fns, "n2")
    second = pipe.report("n2")
    marked = [f for f in second.findings if f.suppressed is not None]
    assert {f.id for f in marked} == {f.id for f in guests if f.group_id == group_id}
    assert all(f.suppressed.reason == reason and f.suppressed.id == made.id for f in marked)  # type: ignore[union-attr]
    # Nothing new, nothing escalated or resolved, no reminder due: the one digest announces the suppression.
    assert len(pipe.teams.bodies) == 2 and made.id in card_finding_names(pipe.teams.bodies[-1])

    assert suppress(pipe, "--list") == EXIT_OK
    listed = capsys.readouterr().out
    assert made.id in listed and "active" in listed and reason in listed
    assert suppress(pipe, "--remove", made.id) == EXIT_OK
    capsys.readouterr()
    [removed] = pipe.store.suppressions(pipe.tenant.tenant_id)
    assert removed.removed_at is not None and removed.removed_by and removed.removed_by.startswith("cli:")
    # Again: nothing changes, and it says who removed it and when (issue 30, item 10: "removed" twice).
    assert suppress(pipe, "--remove", made.id) == EXIT_OK
    again = capsys.readouterr().out
    assert f"{made.id} (" in again and f"was already removed by {removed.removed_by}" in again
    assert not again.startswith("removed ")
    assert pipe.store.suppressions(pipe.tenant.tenant_id) == [removed]

    night(pipe, fns, "n3")
    assert len(pipe.teams.bodies) == 3, "what the suppression covered comes back as new"
    card = card_finding_names(pipe.teams.bodies[-1])
    assert "B2B" in card


def test_the_queue_takes_no_suppression_and_a_suppression_expires(pipe: Pipeline) -> None:  # noqa: F811
    fns = pipe.load()
    night(pipe, fns, "q1")
    first = pipe.report("q1")
    short = next(f for f in first.findings if f.kind == "seat_shortage")
    queued(
        pipe, fns, {"scope": "suppress", "finding_id": short.id, "reason": "PO raised", "requested_by": "runbook"}, "s1"
    )
    assert pipe.store.suppressions(pipe.tenant.tenant_id) == []
    rejected = [r for r in pipe.store.runs(pipe.tenant.tenant_id, limit=50) if r.status is RunStatus.REJECTED]
    assert [r.request_id for r in rejected] == ["s1"] and "audit queue" in rejected[0].errors[0]

    # Expiry: a suppression that ends in a moment covers one night, not the next.
    soon = Suppression(
        id="s0000000000ee", tenant_id=pipe.tenant.tenant_id, reason="short", created_by="test",
        created_at=utcnow(), finding_id=short.id, until=utcnow() + timedelta(seconds=4), severity=short.severity,
        announced=True,
    )  # fmt: skip
    assert pipe.store.put_suppression(soon)
    cards = len(pipe.teams.bodies)
    night(pipe, fns, "q2")
    marked = next(f for f in pipe.report("q2").findings if f.id == short.id).suppressed
    assert marked is not None and marked.id == soon.id and len(pipe.teams.bodies) == cards
    time.sleep(4.2)
    night(pipe, fns, "q3")
    assert all(f.suppressed is None for f in pipe.report("q3").findings), "expired: nothing is suppressed"
    assert len(pipe.teams.bodies) == cards + 1, "the shortage is news again once the suppression ended"
