"""A plan request through function_app's queue trigger: answered once, stored with its run, told to Teams and
by mail; bad plan requests rejected in one line (Azurite, the sandbox, a local Teams receiver)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import azure.functions.queue as fq
import jsonschema
import orjson
import pytest

from licensing.alerts.escape import md_text
from licensing.model import RunStatus, Scope
from tests.functions.test_queue_pipeline import Pipeline, deliver_one, pipe  # noqa: F401 - the fixture

pytestmark = pytest.mark.azurite

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "licensing" / "data" / "plan.schema.json").read_text())


def send(p: Pipeline, fns: dict, body: dict, message_id: str) -> None:  # type: ignore[type-arg]
    raw = orjson.dumps(body)
    asyncio.run(fns["audit_request"](fq.QueueMessage(id=message_id, body=raw, dequeue_count=1)))


def test_a_queued_plan_is_answered_stored_and_told_once(pipe: Pipeline) -> None:  # noqa: F811
    mailbox = f"license-audit@{pipe.tenant.domain}"
    fns = pipe.load(ALERT_MAIL_FROM=mailbox, ALERT_MAIL_TO="admins@contoso.example")
    nested = pipe.tenant.plan_group("plan_nested")
    body = {
        "scope": "plan",
        "group_id": nested.id,
        "skus": ["SPE_E3"],
        "requested_by": "runbook-7",
        "request_id": "plan-1",
    }
    send(pipe, fns, body, "m-1")
    run = pipe.run("plan-1")
    assert (run.scope, run.scope_id, run.status) == (Scope.PLAN, nested.id, RunStatus.SUCCEEDED)
    assert run.requested_by == "runbook-7" and run.finished_at is not None
    document = pipe.store.run_plan(pipe.tenant.tenant_id, run.id)
    assert document is not None
    jsonschema.validate(document, SCHEMA)
    assert document["verdict"] == "unsuitable" and [b["kind"] for b in document["blockers"]] == ["nested_group"]
    # One card and one mail, each naming the verdict and who asked.
    [card] = pipe.teams.bodies
    blocks = orjson.loads(card)["attachments"][0]["content"]["body"]
    texts = [b["text"] for b in blocks]
    # Card text is escaped so that tenant names render literally (licensing.alerts.escape.md_text).
    assert texts[0] == md_text("Plan for SG-Plan-Nested: unsuitable (asked by runbook-7)")
    assert md_text("Nested group (1):") in texts  # kinds in words (issue 30)
    # And it links the group's page in the Entra admin center (issue 30, item 2), as the mail does.
    [action] = orjson.loads(card)["attachments"][0]["content"]["actions"]
    assert action["type"] == "Action.OpenUrl" and action["url"].endswith(f"/groupId/{nested.id}")
    [mail] = pipe.graph.sent_mail
    assert (
        mail["mailbox"] == mailbox
        and mail["body"]["message"]["subject"] == "Plan for SG-Plan-Nested: unsuitable (asked by runbook-7)"
    )
    assert f"/groupId/{nested.id}" in mail["body"]["message"]["body"]["content"]
    # The same request again (a duplicate delivery): skipped, nothing sent twice.
    send(pipe, fns, body, "m-2")
    assert len(pipe.teams.bodies) == 1 and len(pipe.graph.sent_mail) == 1
    assert len(pipe.runs("plan-1")) == 1
    assert pipe.store.outbox_list() == [], "delivered items leave the outbox"


def test_bad_plan_requests_are_rejected_in_one_line(pipe: Pipeline) -> None:  # noqa: F811
    fns = pipe.load()
    ready = pipe.tenant.plan_group("plan_ready").id
    cases = {
        "p-sku": ({"scope": "plan", "group_id": ready, "skus": ["NOT_OWNED"]}, "the tenant has no subscribed SKU"),
        "p-gone": (
            {"scope": "plan", "group_id": "00000000-0000-4000-8000-000000000000", "skus": ["SPE_E3"]},
            "the tenant has no group",
        ),
        "p-none": ({"scope": "plan", "group_id": ready}, "skus is required when scope is plan"),
        "p-one": ({"scope": "plan", "group_id": ready, "sku": "SPE_E3"}, "sku is not allowed when scope is plan"),
        "p-guid": ({"scope": "plan", "group_id": "nope", "skus": ["SPE_E3"]}, "is not a GUID"),
    }
    for request_id, (body, _needle) in cases.items():
        send(pipe, fns, {**body, "request_id": request_id}, f"m-{request_id}")
    rejected = [r for r in pipe.store.runs(pipe.tenant.tenant_id, limit=50) if r.status is RunStatus.REJECTED]
    reasons = " | ".join(e for r in rejected for e in r.errors)
    for _body, needle in cases.values():
        assert needle in reasons
    assert all(len(e.splitlines()) == 1 for r in rejected for e in r.errors)
    assert pipe.teams.bodies == [], "a rejected plan tells nobody anything"


def test_enqueue_puts_a_plan_request_on_the_queue(pipe: Pipeline, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    from licensing.cli import main

    fns = pipe.load()
    ready = pipe.tenant.plan_group("plan_ready").id
    args = ["enqueue", "--scope", "plan", "--group", ready, "--sku", "SPE_E3", "--sku", "EMS"]
    assert main([*args, "--request-id", "plan-q", "--store", pipe.storage]) == 0
    assert "enqueued plan request" in capsys.readouterr().out
    deliver_one(pipe, fns["audit_request"], pipe.requests_queue)
    run = pipe.run("plan-q")
    document = pipe.store.run_plan(pipe.tenant.tenant_id, run.id)
    assert document is not None and document["verdict"] == "suitable"
    assert [s["sku_part_number"] for s in document["skus"]] == ["SPE_E3", "EMS"]
