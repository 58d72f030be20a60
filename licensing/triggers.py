"""What the Functions triggers do: the timer enqueues a request; a queue message runs one audit (or one chunk of a
fanned-out audit) or is rejected.

Every audit goes through the queue (DESIGN.md, "Data flow") and so inherits its retry and
poison handling. Outcomes of a queue message:

- malformed: rejected with a one-line reason, recorded as a ``rejected`` run, completed (not retried);
- already done (same ``request_id``): nothing happens;
- another tenant-wide audit holds the lease: the request is put back with a delay, same request id;
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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from licensing.audit import UNKNOWN_TENANT, new_run_id, run_audit, utcnow
from licensing.errors import AuditError, BadRequestError, ConfigurationError, LicensingError
from licensing.fanout import LEASE_NAME, LEASE_TTL, ChunkRequest, FanOut, fail_run, parse_chunk_message, process_chunk
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

    Requests: ``completed`` | ``skipped`` | ``rejected`` | ``deferred`` | ``fanned_out``.
    Chunks: ``rejected`` | ``stale`` | ``skipped`` | ``done`` | ``finished`` (this chunk concluded the run).
    """

    outcome: str
    request: AuditRequest | None = None
    reason: str | None = None
    audit: AuditOutcome | None = None
    chunk: ChunkRequest | None = None


def handle_timer(settings: Settings, *, past_due: bool = False, now: datetime | None = None) -> AuditRequest:
    """Enqueue the tenant audit of this scheduled occurrence, and nothing else."""
    now = now or utcnow()
    if past_due:
        log.warning("the audit timer is past due; enqueuing the missed occurrence now")
    request = AuditRequest(
        scope=Scope.TENANT,
        trigger=Trigger.SCHEDULE,
        request_id=occurrence_request_id(settings.audit_schedule, now),
    )
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


def _record_rejection(store: AuditStore | None, settings: Settings, message_id: str | None, reason: str) -> None:
    if store is None:
        return
    tenant = settings.azure_tenant_id or UNKNOWN_TENANT
    prior = store.run_for_request(tenant, message_id) if message_id else None
    if prior is not None and prior.status is RunStatus.REJECTED:
        return  # the same bad message delivered again: recorded once
    now = utcnow()
    run = RunInfo(
        id=new_run_id(now),
        tenant_id=tenant,
        trigger=Trigger.QUEUE,
        scope=Scope.TENANT,
        started_at=now,
        finished_at=now,
        status=RunStatus.REJECTED,
        errors=(reason,),
        request_id=message_id,
    )
    try:
        store.finish_run(AuditReport(run=run))
    except LicensingError as exc:
        log.error("could not record the rejected request %s: %s", message_id, exc)


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
        log.error("rejected audit request %s: %s", message_id or "(no id)", exc)
        _record_rejection(store_factory(settings), settings, message_id, str(exc))
        return MessageResult("rejected", reason=str(exc))

    store = store_factory(settings)
    # The message id is stable across the host's retries of this message: a retry after a crash that could
    # not release the lease takes its own lease back instead of waiting for it to expire.
    owner = lease_owner or message_id or f"{request.request_id or 'request'}:{datetime.now(UTC):%H%M%S%f}"
    leased = False
    if store is not None and request.scope is Scope.TENANT:
        leased = store.try_acquire_lease(LEASE_NAME, owner, LEASE_TTL)
        if not leased:
            # Another tenant-wide audit is running: come back later, under the same request id.
            put_message(settings.storage, settings.audit_queue, encode_request(request), delay_s=DEFER_SECONDS)
            log.info("tenant audit already running; request %s deferred by %ss", request.request_id, DEFER_SECONDS)
            return MessageResult("deferred", request=request, reason="another tenant-wide audit is running")
    credential = _credential(settings, credential)
    fanned_out = False
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
        )
        fanned_out = outcome.fanned_out
    except BadRequestError as exc:
        # The request names a group or SKU the tenant does not have: retrying cannot help.
        log.error("rejected audit request %s: %s", request.request_id or message_id or "(no id)", exc)
        _record_rejection(store, settings, request.request_id or message_id, str(exc))
        return MessageResult("rejected", request=request, reason=str(exc))
    except LicensingError as exc:
        _log_failure("audit request", request.request_id, dequeue_count, exc)
        raise
    finally:
        # A fanned-out run keeps the lease: its final step releases it (and its TTL bounds a crash).
        if leased and store is not None and not fanned_out:
            store.release_lease(LEASE_NAME, owner)
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
            token=message_id or f"chunk-{chunk.chunk}-{uuid.uuid4().hex[:12]}",
            credential=_credential(settings, credential),
            http_client=http_client,
            on_delivered=on_delivered,
            now=now,
        )
    except Exception as exc:
        error = (
            exc if isinstance(exc, LicensingError) else AuditError(f"chunk failed unexpectedly: {type(exc).__name__}")
        )
        _log_failure("chunk", subject, dequeue_count, error)
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            fail_run(store, chunk, error, now)
        if error is exc:
            raise
        raise error from exc
    if result.outcome in ("stale", "skipped"):
        log.info("chunk %s: nothing to do (%s)", subject, result.reason)
    return MessageResult(result.outcome, reason=result.reason, audit=result.audit, chunk=chunk)
