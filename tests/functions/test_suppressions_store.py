"""Suppressions against Azurite through the real triggers: added between two nights (CLI and queue), listed,
removed, expired; what they cover is reported, never alerted, and comes back as new when they end."""

from __future__ import annotations

import asyncio
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

    # Bad input: one line, exit 2, nothing written.
    for args, needle in (
        (["--finding", "0" * 32, "--reason", "x"], "no finding"),
        (["--group", group_id, "--reason", "x", "--until", "2020-01-01"], "is in the past"),
        (["--sku", "NOT_OWNED", "--reason", "x"], "no subscribed SKU"),
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
    assert made.id in out and made.created_by.startswith("cli:") and made.group_id == group_id

    night(pipe, fns, "n2")
    second = pipe.report("n2")
    marked = [f for f in second.findings if f.suppressed is not None]
    assert {f.id for f in marked} == {f.id for f in guests if f.group_id == group_id}
    assert all(f.suppressed.reason == reason and f.suppressed.id == made.id for f in marked)  # type: ignore[union-attr]
    # Nothing new, nothing escalated or resolved, no reminder due: no second digest.
    assert len(pipe.teams.bodies) == 1

    assert suppress(pipe, "--list") == EXIT_OK
    listed = capsys.readouterr().out
    assert made.id in listed and "active" in listed and reason in listed
    assert suppress(pipe, "--remove", made.id) == EXIT_OK
    capsys.readouterr()
    [removed] = pipe.store.suppressions(pipe.tenant.tenant_id)
    assert removed.removed_at is not None and removed.removed_by and removed.removed_by.startswith("cli:")

    night(pipe, fns, "n3")
    assert len(pipe.teams.bodies) == 2, "what the suppression covered comes back as new"
    card = card_finding_names(pipe.teams.bodies[-1])
    assert "B2B" in card


def test_a_suppression_from_the_queue_and_its_expiry(pipe: Pipeline) -> None:  # noqa: F811
    fns = pipe.load()
    night(pipe, fns, "q1")
    first = pipe.report("q1")
    short = next(f for f in first.findings if f.kind == "seat_shortage")
    queued(
        pipe, fns, {"scope": "suppress", "finding_id": short.id, "reason": "PO raised", "requested_by": "runbook"}, "s1"
    )
    queued(
        pipe, fns, {"scope": "suppress", "finding_id": short.id, "reason": "PO raised", "requested_by": "runbook"}, "s1"
    )
    [made] = pipe.store.suppressions(pipe.tenant.tenant_id)
    assert made.created_by == "queue:runbook", "the same message twice makes one suppression"
    queued(pipe, fns, {"scope": "suppress", "finding_id": "f" * 32, "reason": "x"}, "s2")
    rejected = [r for r in pipe.store.runs(pipe.tenant.tenant_id, limit=50) if r.status is RunStatus.REJECTED]
    assert any("no finding" in e for r in rejected for e in r.errors)

    # Expiry: a suppression that ends in a moment covers one night, not the next.
    queued(pipe, fns, {"scope": "suppress", "remove": made.id, "requested_by": "runbook"}, "s3")
    assert pipe.store.suppressions(pipe.tenant.tenant_id)[0].removed_by == "queue:runbook"
    soon = Suppression(
        id="s0000000000ee", tenant_id=pipe.tenant.tenant_id, reason="short", created_by="test",
        created_at=utcnow(), finding_id=short.id, until=utcnow() + timedelta(seconds=4),
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
