"""What the Functions triggers do: the timer enqueues a request; a queue message runs one audit (or one chunk of a
fanned-out audit) or is rejected.

Every audit goes through the queue (docs/design.md, "Data flow") and so inherits its retry and
poison handling. Outcomes of a queue message:

- malformed, or using the timer's reserved ``schedule-`` id or ``reason: schedule`` without its ticket: rejected
  with a one-line reason, recorded as a ``rejected`` run, completed (not retried);
- already done (same request key: trigger, scope, subject and ``request_id``): nothing happens; a ``rejected``
  run never stands in for a request;
- the same request key is running in another invocation, or another tenant-wide audit holds the lease:
  the request is put back with a delay, same request id;
- more licensed groups than ``FANOUT_GROUPS``: the run is handed to the chunk queue (licensing/fanout.py),
  the lease stays with the run until its final step;
- transient failure: the exception propagates, the host retries after ``visibilityTimeout`` and
  after ``maxDequeueCount`` moves the message to ``<queue>-poison``; the failed run keeps its last error.

A chunk message (``AUDIT_CHUNK_QUEUE``) reads one chunk of groups; the last one in concludes the run.
A malformed chunk message is logged and completed; one out of retries fails its run.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Final

from licensing.audit import UNKNOWN_TENANT, new_run_id, run_audit, unexpected, utcnow
from licensing.errors import BadRequestError, ConfigurationError, LicensingError, SupersededError
from licensing.fanout import (
    LEASE_NAME,
    LEASE_TTL,
    ChunkRequest,
    FanOut,
    encode_chunk_message,
    fail_run,
    parse_chunk_message,
    process_chunk,
)
from licensing.model import AuditReport, AuditRequest, RunInfo, RunStatus, Scope, Trigger
from licensing.queues import enqueue_request, put_message
from licensing.requests import encode_request, parse_request
from licensing.schedule import occurrence_request_id
from licensing.settings import Settings, is_loopback_url

if TYPE_CHECKING:
    import httpx

    from licensing.audit import AuditOutcome
    from licensing.store import AuditStore

__all__ = [
    "LEASE_NAME",
    "LEASE_TTL",
    "MAX_DEQUEUE_COUNT",
    "MessageResult",
    "handle_audit_message",
    "handle_chunk_message",
    "handle_timer",
]

log = logging.getLogger(__name__)

DEFER_SECONDS: Final = 120


def _host_max_dequeue_count() -> int:
    """host.json's queues.maxDequeueCount (the poison threshold), read from the file we deploy."""
    try:
        host = json.loads((Path(__file__).resolve().parents[1] / "host.json").read_text(encoding="utf-8"))
        return int(host["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, KeyError, ValueError, TypeError):
        return 5  # the host's own default


MAX_DEQUEUE_COUNT: Final = _host_max_dequeue_count()


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What became of one queue message.

    Requests: ``completed`` | ``skipped`` | ``rejected`` | ``deferred`` | ``fanned_out`` | ``superseded`` (a later
    delivery of the same message took the run over; this one stopped before alerting).
    Chunks: ``rejected`` | ``stale`` | ``skipped`` | ``done`` | ``finished`` (this chunk concluded the run) |
    ``deferred`` (another invocation owns the final step; the message comes back).
    """

    outcome: str
    request: AuditRequest | None = None
    reason: str | None = None
    audit: AuditOutcome | None = None
    chunk: ChunkRequest | None = None


TICKET_TTL: Final = timedelta(days=2)  # the scheduled request may be deferred or retried for a while
RESERVED_PREFIX: Final = "schedule-"
REJECTED_KEEP: Final = 200  # rejected runs kept in the unknown-tenant partition, newest first
REJECTED_DAYS: Final = 7


def handle_timer(
    settings: Settings,
    *,
    past_due: bool = False,
    now: datetime | None = None,
    store_factory: Callable[[Settings], AuditStore | None] | None = None,
) -> AuditRequest:
    """Issue the ticket of this scheduled occurrence and enqueue its tenant audit, and nothing else."""
    now = now or utcnow()
    if past_due:
        log.warning("the audit timer is past due; enqueuing the missed occurrence now")
    request = AuditRequest(
        scope=Scope.TENANT,
        trigger=Trigger.SCHEDULE,
        request_id=occurrence_request_id(settings.audit_schedule, now),
    )
    # The ticket reserves the occurrence's request id for the timer: a queue sender cannot claim it.
    store = (store_factory or _open_store)(settings)
    if store is not None and request.request_id:
        store.issue_ticket(request.request_id, TICKET_TTL)
    enqueue_request(settings.storage, settings.audit_queue, request)
    log.info("enqueued scheduled audit %s on %s", request.request_id, settings.audit_queue)
    return request


def _open_store(settings: Settings) -> AuditStore | None:
    if settings.storage is None:
        return None
    from licensing.store import open_store

    store = open_store(settings.storage)
    store.ensure_tables()
    return store


def _record_rejection(
    store: AuditStore | None,
    settings: Settings,
    request: AuditRequest | None,
    message_id: str | None,
    reason: str,
) -> None:
    """A ``rejected`` run for the message (once per request key), in a partition bounded when the tenant is unknown."""
    if store is None:
        return
    tenant = settings.azure_tenant_id or UNKNOWN_TENANT
    request = request or AuditRequest(request_id=message_id)
    request_id = request.request_id or message_id
    key = replace(request, request_id=request_id).key
    try:
        prior = store.run_for_request(tenant, request_id, key=key) if request_id else None
        if prior is not None and prior.status is RunStatus.REJECTED:
            return  # the same bad message delivered again: recorded once
        now = utcnow()
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


def _reject(
    store: AuditStore | None, settings: Settings, request: AuditRequest | None, message_id: str | None, reason: str
) -> MessageResult:
    subject = (request.request_id if request else None) or message_id or "(no id)"
    log.error("rejected audit request %s: %s", subject, reason)
    _record_rejection(store, settings, request, message_id, reason)
    return MessageResult("rejected", request=request, reason=reason)


def _reserved(request: AuditRequest, store: AuditStore | None) -> str | None:
    """Why a message may not use the timer's reserved id or reason, or None when it is the timer's."""
    claims = request.trigger is Trigger.SCHEDULE or (request.request_id or "").startswith(RESERVED_PREFIX)
    if not claims:
        return None
    genuine = (
        request.trigger is Trigger.SCHEDULE
        and request.scope is Scope.TENANT
        and bool(request.request_id)
        and store is not None
        and store.has_ticket(str(request.request_id))
    )
    if genuine:
        return None
    return f"request ids starting with {RESERVED_PREFIX!r} and reason 'schedule' are reserved for the timer"


def _release(store: AuditStore, name: str, owner: str) -> None:
    """Give a lease back; a failure (storage outage) is logged, never allowed to replace the run's own error."""
    try:
        store.release_lease(name, owner)
    except Exception as exc:  # in a finally: the original outcome matters more
        log.warning("could not release the lease %s (its TTL frees it): %s", name, exc)


def _fence(store: AuditStore | None, owner: str, names: list[str]) -> Callable[[], None] | None:
    """A check that raises SupersededError once a later delivery took one of our leases over."""
    if store is None or not names:
        return None

    def check() -> None:
        lost = [name for name in names if not store.holds_lease(name, owner)]
        if lost:
            raise SupersededError(f"a later delivery of this message took over ({', '.join(lost)}); stopping here")

    return check


def _defer(settings: Settings, request: AuditRequest, why: str) -> MessageResult:
    put_message(settings.storage, settings.audit_queue, encode_request(request), delay_s=DEFER_SECONDS)
    log.info("%s; request %s deferred by %ss", why, request.request_id, DEFER_SECONDS)
    return MessageResult("deferred", request=request, reason=why)


async def handle_audit_message(
    body: bytes | str,
    settings: Settings,
    *,
    message_id: str | None = None,
    dequeue_count: int = 1,
    credential: str | None = None,
    store_factory: Callable[[Settings], AuditStore | None] = _open_store,
    http_client: httpx.AsyncClient | None = None,
    on_delivered: Callable[[str, str, bytes], None] | None = None,
    lease_owner: str | None = None,
    now: Callable[[], datetime] = utcnow,
) -> MessageResult:
    """Validate one queue message and run its audit. Raises on transient failure (the host retries)."""
    try:
        request = parse_request(body, message_id=message_id)
    except BadRequestError as exc:
        return _reject(store_factory(settings), settings, None, message_id, str(exc))

    store = store_factory(settings)
    reserved = _reserved(request, store)
    if reserved is not None:
        return _reject(store, settings, replace(request, trigger=Trigger.QUEUE), message_id, reserved)
    # Every invocation has its own owner token: two deliveries of one message never share a lease. A later
    # delivery of the same message (higher dequeue count) takes the leases over at once, so a retry after a
    # failure that could not release them does not wait for their TTL; the earlier invocation, if it is still
    # running, is fenced off before it alerts or concludes.
    owner = lease_owner or f"{message_id or 'request'}#{dequeue_count}:{uuid.uuid4().hex[:12]}"
    claim = f"request:{request.key}" if request.key else None
    claimed = leased = fanned_out = False
    try:
        if store is not None and claim is not None:
            # One run per request key at a time, in every scope: a duplicate delivery waits, then is skipped.
            claimed = store.try_acquire_lease(claim, owner, LEASE_TTL, message=message_id, generation=dequeue_count)
            if not claimed:
                return _defer(settings, request, "the same request is running in another invocation")
        if store is not None and request.scope is Scope.TENANT:
            leased = store.try_acquire_lease(LEASE_NAME, owner, LEASE_TTL, message=message_id, generation=dequeue_count)
            if not leased:
                # Another tenant-wide audit is running: come back later, under the same request id.
                return _defer(settings, request, "another tenant-wide audit is running")
        credential = _credential(settings, credential)
        try:
            outcome = await run_audit(
                request,
                settings,
                credential=credential,
                store=store,
                alerts=True,
                http_client=http_client,
                on_delivered=on_delivered,
                now=now,
                fanout=FanOut(settings, lease_owner=owner, now=now) if leased else None,
                fence=_fence(store, owner, [n for n, held in ((claim, claimed), (LEASE_NAME, leased)) if held and n]),
            )
        except SupersededError as exc:
            log.warning("audit request %s: %s", request.request_id, exc)
            return MessageResult("superseded", request=request, reason=str(exc))
        except BadRequestError as exc:
            # The request names a group or SKU the tenant does not have: retrying cannot help.
            return _reject(store, settings, request, message_id, str(exc))
        except LicensingError as exc:
            _log_failure("audit request", request.request_id, dequeue_count, exc)
            raise
        except Exception as exc:  # not ours: still one line with its cause and the attempt count, then retried
            error = unexpected("the audit request", exc)
            _log_failure("audit request", request.request_id, dequeue_count, error)
            raise error from exc
        fanned_out = outcome.fanned_out
    finally:
        # A fanned-out run keeps the tenant lease: its final step releases it (and its TTL bounds a crash).
        if leased and store is not None and not fanned_out:
            _release(store, LEASE_NAME, owner)
        if claimed and store is not None and claim is not None:
            _release(store, claim, owner)
    if outcome.skipped:
        return MessageResult("skipped", request=request, reason="already completed", audit=outcome)
    run = outcome.report.run
    if fanned_out:
        return MessageResult("fanned_out", request=request, reason=f"run {run.id} continues on the chunk queue")
    log.info(
        "audit %s finished: %s, %d findings, %d Graph requests (%d throttled)",
        run.id,
        run.status.value,
        len(outcome.report.findings),
        run.graph_requests,
        run.graph_throttled,
    )
    return MessageResult("completed", request=request, audit=outcome)


def _credential(settings: Settings, credential: str | None) -> str:
    if credential is not None:
        return credential
    # Tokens only ever go to a Graph endpoint: a loopback URL (the sandbox) gets none.
    return "none" if is_loopback_url(settings.graph_base_url) else "default"


def _log_failure(what: str, subject: str | None, dequeue_count: int, exc: BaseException) -> None:
    final = dequeue_count >= MAX_DEQUEUE_COUNT
    log.error(
        "%s %s failed (attempt %d of %d%s): %s",
        what,
        subject,
        dequeue_count,
        MAX_DEQUEUE_COUNT,
        "; the message goes to the poison queue" if final else "; the host will retry",
        exc,
    )


async def handle_chunk_message(
    body: bytes | str,
    settings: Settings,
    *,
    message_id: str | None = None,
    dequeue_count: int = 1,
    credential: str | None = None,
    store_factory: Callable[[Settings], AuditStore | None] = _open_store,
    http_client: httpx.AsyncClient | None = None,
    on_delivered: Callable[[str, str, bytes], None] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> MessageResult:
    """One chunk of a fanned-out tenant audit. Raises on transient failure (the host retries); on the last
    attempt the run is failed with the error first, so it never looks 'running' forever."""
    try:
        chunk = parse_chunk_message(body)
    except BadRequestError as exc:
        # Only this app writes chunk messages: a bad one is a bug or tampering, and retrying cannot fix it.
        log.error("rejected chunk message %s: %s", message_id or "(no id)", exc)
        return MessageResult("rejected", reason=str(exc))
    store = store_factory(settings)
    if store is None:
        raise ConfigurationError("the chunk queue needs storage: set LICENSING_STORAGE or AzureWebJobsStorage")
    subject = f"{chunk.chunk} of run {chunk.run_id}"
    try:
        result = await process_chunk(
            chunk,
            settings,
            store,
            # Per invocation: two deliveries of the last chunk must not both own the final step.
            token=f"{message_id or f'chunk-{chunk.chunk}'}:{uuid.uuid4().hex[:12]}",
            credential=_credential(settings, credential),
            http_client=http_client,
            on_delivered=on_delivered,
            now=now,
        )
    except Exception as exc:
        error = exc if isinstance(exc, LicensingError) else unexpected("the chunk", exc)
        _log_failure("chunk", subject, dequeue_count, error)
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            fail_run(store, chunk, error, now)
        if error is exc:
            raise
        raise error from exc
    if result.outcome in ("stale", "skipped"):
        log.info("chunk %s: nothing to do (%s)", subject, result.reason)
    if result.outcome == "claimed":
        # Another invocation owns the final step. If it dies, only a later delivery can take over (after
        # FINAL_CLAIM_TTL), so this message comes back instead of completing.
        put_message(settings.storage, settings.audit_chunk_queue, encode_chunk_message(chunk), delay_s=DEFER_SECONDS)
        log.info("chunk %s: %s; deferred by %ss", subject, result.reason, DEFER_SECONDS)
        return MessageResult("deferred", reason=result.reason, chunk=chunk)
    return MessageResult(result.outcome, reason=result.reason, audit=result.audit, chunk=chunk)
