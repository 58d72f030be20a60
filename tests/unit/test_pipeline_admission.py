"""licensing/pipeline/admission.py, the parts that need no storage: owner tokens and the timer's reserved ids."""

from __future__ import annotations

from typing import Any

from licensing.model import AuditRequest, Scope, Trigger
from licensing.pipeline.admission import RESERVED_PREFIX, Admission, owner_token, reserved_reason


class Tickets:
    """The one store method reserved_reason asks (has_ticket)."""

    def __init__(self, *issued: str) -> None:
        self.issued = set(issued)

    def has_ticket(self, name: str) -> bool:
        return name in self.issued


def test_every_invocation_has_its_own_owner_token() -> None:
    a, b = owner_token("m1", 1), owner_token("m1", 1)
    assert a != b and a.startswith("m1#1:") and b.startswith("m1#1:")
    assert owner_token(None, 2).startswith("request#2:")


def test_only_the_timer_with_its_ticket_may_use_the_reserved_id_and_reason() -> None:
    rid = RESERVED_PREFIX + "20261203T023000Z"
    timer = AuditRequest(scope=Scope.TENANT, trigger=Trigger.SCHEDULE, request_id=rid)
    store: Any = Tickets(rid)
    assert reserved_reason(timer, store) is None
    assert reserved_reason(timer, Tickets()) is not None, "no ticket: a queue sender"
    assert reserved_reason(timer, None) is not None
    assert reserved_reason(AuditRequest(scope=Scope.SKU, sku="X", trigger=Trigger.SCHEDULE, request_id=rid), store)
    assert reserved_reason(AuditRequest(request_id=rid), store), "the prefix without the reason"
    assert reserved_reason(AuditRequest(request_id="runbook-1"), None) is None


def test_no_store_means_no_leases_and_no_fence() -> None:
    admission = Admission(None, AuditRequest(request_id="r"), "o")
    assert admission.acquire() is None and admission.fence is None and not admission.tenant_leased
    admission.release()
