"""Whether and when a request runs: the timer's reserved ids, request claims and the tenant lease, fencing,
deferral, and the record of a rejected request.

Every invocation has its own owner token (``<message id>#<dequeue count>:<nonce>``), so two deliveries
of one message never share a lease. A later delivery of the same message (a higher dequeue count) takes
the leases over at once, so a retry after a failure that could not release them does not wait for their
TTL; the earlier invocation, if it is still running, is fenced off (:meth:`Admission.fence`) before it
alerts or writes its final record. docs/operations.md, "The tenant lease", tells the whole story.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from licensing.errors import LicensingError, SupersededError
from licensing.model import UNKNOWN_TENANT, AuditReport, AuditRequest, RunInfo, RunStatus, Scope, Trigger
from licensing.pipeline.queues import put_message
from licensing.pipeline.requests import encode_request
from licensing.pipeline.runtime import Runtime, new_run_id
from licensing.settings import Settings

if TYPE_CHECKING:
    from licensing.store import AuditStore

__all__ = [
    "DEFER_SECONDS",
    "LEASE_NAME",
    "LEASE_TTL",
    "PLAN_LEASE",
    "RESERVED_PREFIX",
    "TICKET_TTL",
    "Admission",
    "defer",
    "defer_request",
    "issue_ticket",
    "owner_token",
    "record_rejection",
    "reserved_reason",
    "timer_request",
]

log = logging.getLogger(__name__)

LEASE_NAME: Final = "tenant-audit"
PLAN_LEASE: Final = "tenant-plan"
# Longer than host.json's functionTimeout (30 min): a crashed holder never blocks the next night.
# A fanned-out run renews it with every chunk, so the TTL bounds a crash, not the run.
LEASE_TTL: Final = timedelta(minutes=40)
DEFER_SECONDS: Final = 120
TICKET_TTL: Final = timedelta(days=2)  # the scheduled request may be deferred or retried for a while
RESERVED_PREFIX: Final = "schedule-"
REJECTED_KEEP: Final = 200  # rejected runs kept in the unknown-tenant partition, newest first
REJECTED_DAYS: Final = 7


def owner_token(message_id: str | None, dequeue_count: int) -> str:
    """One invocation's lease owner: the message, its delivery, and a nonce."""
    return f"{message_id or 'request'}#{dequeue_count}:{uuid.uuid4().hex[:12]}"


def issue_ticket(store: AuditStore | None, request: AuditRequest) -> None:
    """The timer reserves its occurrence's request id before it enqueues it: a queue sender cannot claim it."""
    if store is not None and request.request_id:
        store.issue_ticket(request.request_id, TICKET_TTL)


def reserved_reason(request: AuditRequest, store: AuditStore | None) -> str | None:
    """Why a message may not use the timer's reserved id or reason, or None when it is the timer's."""
    claims = request.trigger is Trigger.SCHEDULE or (request.request_id or "").startswith(RESERVED_PREFIX)
    if not claims:
        return None
    genuine = (
        request.trigger is Trigger.SCHEDULE
        and bool(request.request_id)
        and store is not None
        and store.has_ticket(str(request.request_id))
    )
    if not genuine:
        return f"request ids starting with {RESERVED_PREFIX!r} and reason 'schedule' are reserved for the timer"
    # The ticket names the occurrence, not its options: the timer's request is the timer's alone, so a copy
    # that mutes the night (notify false), narrows it or signs it is refused and the timer's own message runs.
    if request != timer_request(str(request.request_id)):
        return "a scheduled request carries exactly the timer's options (scope tenant, notify true, nothing else)"
    return None


def timer_request(request_id: str) -> AuditRequest:
    """The one request the timer enqueues for an occurrence (licensing.pipeline.handlers.handle_timer)."""
    return AuditRequest(scope=Scope.TENANT, trigger=Trigger.SCHEDULE, request_id=request_id)


def defer(settings: Settings, queue: str, text: str, why: str, subject: str | None) -> None:
    """Put a message back on ``queue`` with a delay (the same request id: its run is found again)."""
    put_message(settings.storage, queue, text, delay_s=DEFER_SECONDS)
    log.info("%s; %s deferred by %ss", why, subject or "the message", DEFER_SECONDS)


def defer_request(settings: Settings, request: AuditRequest, why: str) -> None:
    defer(settings, settings.audit_queue, encode_request(request), why, f"request {request.request_id}")


def record_rejection(runtime: Runtime, request: AuditRequest | None, message_id: str | None, reason: str) -> None:
    """A ``rejected`` run for the message (once per request key), in a partition bounded when the tenant is unknown."""
    store = runtime.store
    if store is None:
        return
    tenant = runtime.settings.azure_tenant_id or UNKNOWN_TENANT
    request = request or AuditRequest(request_id=message_id)
    request_id = request.request_id or message_id
    key = replace(request, request_id=request_id).key
    try:
        prior = store.run_for_request(tenant, request_id, key=key) if request_id else None
        if prior is not None and prior.status is RunStatus.REJECTED:
            return  # the same bad message delivered again: recorded once
        now = runtime.now()
        run = RunInfo(
            id=new_run_id(now),
            tenant_id=tenant,
            trigger=request.trigger,
            scope=request.scope,
            scope_id=request.group_id or request.sku,
            started_at=now,
            finished_at=now,
            status=RunStatus.REJECTED,
            errors=(reason,),
            request_id=request_id,
            requested_by=request.requested_by,
        )
        store.finish_run(AuditReport(run=run))
        if tenant == UNKNOWN_TENANT:  # anyone can write here: keep it small
            store.trim_runs(UNKNOWN_TENANT, keep=REJECTED_KEEP, older_than=now - timedelta(days=REJECTED_DAYS))
    except LicensingError as exc:
        log.error("could not record the rejected request %s: %s", request_id, exc)


@dataclass(slots=True)
class Admission:
    """The leases one invocation holds for one request: its request claim (every scope, when it has a request
    id) and, for a tenant audit, the tenant lease. :meth:`acquire`, then :meth:`release` in a ``finally``."""

    store: AuditStore | None
    request: AuditRequest
    owner: str
    message_id: str | None = None
    generation: int = 1
    held: list[str] = field(default_factory=list)

    @property
    def tenant_leased(self) -> bool:
        return LEASE_NAME in self.held

    def acquire(self) -> str | None:
        """Take the leases; the reason to come back later when another invocation holds one, else None."""
        if self.store is None:
            return None
        wanted: list[tuple[str, str]] = []
        if self.request.key:
            # One run per request key at a time, in every scope: a duplicate delivery waits, then is skipped.
            wanted.append((f"request:{self.request.key}", "the same request is running in another invocation"))
        if self.request.scope is Scope.TENANT:
            wanted.append((LEASE_NAME, "another tenant-wide audit is running"))
        if self.request.scope is Scope.PLAN:
            # A plan scans every user: one at a time per tenant (issue 27, item 8).
            wanted.append((PLAN_LEASE, "another plan request is running"))
        for name, busy in wanted:
            taken = self.store.try_acquire_lease(
                name, self.owner, LEASE_TTL, message=self.message_id, generation=self.generation
            )
            if not taken:
                return busy
            self.held.append(name)
        return None

    @property
    def fence(self) -> Callable[[], None] | None:
        """A check that raises SupersededError once a later delivery took one of our leases over."""
        store, names, owner = self.store, list(self.held), self.owner
        if store is None or not names:
            return None

        def check() -> None:
            lost = [name for name in names if not store.holds_lease(name, owner)]
            if lost:
                raise SupersededError(f"a later delivery of this message took over ({', '.join(lost)}); stopping here")

        return check

    def release(self, *, keep_tenant_lease: bool = False) -> None:
        """Give the leases back (a fanned-out run keeps the tenant lease: its final step releases it). A failure
        (storage outage) is logged, never allowed to replace the run's own error: the TTL frees the lease."""
        if self.store is None:
            return
        for name in self.held:
            if keep_tenant_lease and name == LEASE_NAME:
                continue
            try:
                self.store.release_lease(name, self.owner)
            except Exception as exc:  # in a finally: the original outcome matters more
                log.warning("could not release the lease %s (its TTL frees it): %s", name, exc)
        self.held.clear()
