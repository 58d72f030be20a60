"""What the Functions triggers do: the timer enqueues a request; a queue message runs one audit (or one chunk of a
fanned-out audit) or is rejected.

Every audit goes through the queue (docs/design.md, "Data flow") and so inherits its retry and
poison handling. Outcomes of a queue message (:class:`~licensing.model.MessageOutcome`):

- malformed, or using the timer's reserved ``schedule-`` id or ``reason: schedule`` without its ticket: rejected
  with a one-line reason, recorded as a ``rejected`` run, completed (not retried);
- already done (same request key: trigger, scope, subject and ``request_id``): nothing happens; a ``rejected``
  run never stands in for a request;
- the same request key is running in another invocation, or another tenant-wide audit holds the lease:
  the request is put back with a delay, same request id (:mod:`licensing.pipeline.admission`);
- more licensed groups than ``FANOUT_GROUPS``: the run is handed to the chunk queue
  (:mod:`licensing.pipeline.fanout`), the lease stays with the run until its final step;
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
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from licensing.errors import BadRequestError, ConfigurationError, LicensingError, SupersededError
from licensing.model import AuditRequest, MessageOutcome, Scope, Trigger
from licensing.pipeline import admission
from licensing.pipeline.admission import Admission, defer, defer_request, owner_token, record_rejection
from licensing.pipeline.fanout import FanOut, fail_run, process_chunk
from licensing.pipeline.parts import ChunkRequest, encode_chunk_message, parse_chunk_message
from licensing.pipeline.queues import enqueue_request
from licensing.pipeline.requests import decode_message, validate_request
from licensing.pipeline.run import run_audit, unexpected
from licensing.pipeline.runtime import Runtime, open_runtime, utcnow
from licensing.pipeline.schedule import occurrence_request_id
from licensing.settings import Settings

if TYPE_CHECKING:
    from licensing.pipeline.conclusion import AuditOutcome
    from licensing.pipeline.planning import PlanOutcome
    from licensing.store import AuditStore

__all__ = ["MAX_DEQUEUE_COUNT", "MessageResult", "handle_audit_message", "handle_chunk_message", "handle_timer"]

log = logging.getLogger(__name__)


def _host_max_dequeue_count() -> int:
    """host.json's queues.maxDequeueCount (the poison threshold), read from the file we deploy."""
    try:
        host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text(encoding="utf-8"))
        return int(host["extensions"]["queues"]["maxDequeueCount"])
    except (OSError, KeyError, ValueError, TypeError):
        return 5  # the host's own default


MAX_DEQUEUE_COUNT: Final = _host_max_dequeue_count()


@dataclass(frozen=True, slots=True)
class MessageResult:
    """What became of one queue message, and why."""

    outcome: MessageOutcome
    request: AuditRequest | None = None
    reason: str | None = None
    audit: AuditOutcome | None = None
    chunk: ChunkRequest | None = None
    plan: PlanOutcome | None = None


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
    request = admission.timer_request(occurrence_request_id(settings.audit_schedule, now))
    store = store_factory(settings) if store_factory is not None else open_runtime(settings).store
    admission.issue_ticket(store, request)
    enqueue_request(settings.storage, settings.audit_queue, request)
    log.info("enqueued scheduled audit %s on %s", request.request_id, settings.audit_queue)
    return request


def _reject(runtime: Runtime, request: AuditRequest | None, message_id: str | None, reason: str) -> MessageResult:
    subject = (request.request_id if request else None) or message_id or "(no id)"
    log.error("rejected audit request %s: %s", subject, reason)
    record_rejection(runtime, request, message_id, reason)
    return MessageResult(MessageOutcome.REJECTED, request=request, reason=reason)


async def handle_audit_message(
    body: bytes | str,
    runtime: Runtime,
    *,
    message_id: str | None = None,
    dequeue_count: int = 1,
    lease_owner: str | None = None,
) -> MessageResult:
    """Validate one queue message and run its audit. Raises on transient failure (the host retries)."""
    try:
        data = decode_message(body)
        scope = data.get("scope")
        if isinstance(scope, str) and scope.strip().lower() == "suppress":
            # A queue message carries no identity, and the role that may enqueue an audit must not silence alerts
            # (issue 27): recorded as a rejected run under its message id, nothing else happens.
            raise BadRequestError(
                "suppressions are not accepted from the audit queue (a message carries no identity): "
                "use `licensing-audit suppress`, signed in"
            )
        request = validate_request(data, message_id=message_id)
    except BadRequestError as exc:
        return _reject(runtime, None, message_id, str(exc))

    reserved = admission.reserved_reason(request, runtime.store)
    if reserved is not None:
        return _reject(runtime, replace(request, trigger=Trigger.QUEUE), message_id, reserved)
    owner = lease_owner or owner_token(message_id, dequeue_count)
    leases = Admission(runtime.store, request, owner, message_id=message_id, generation=dequeue_count)
    fanned_out = False
    try:
        busy = leases.acquire()
        if busy is not None:
            defer_request(runtime.settings, request, busy)
            return MessageResult(MessageOutcome.DEFERRED, request=request, reason=busy)
        if request.scope is Scope.PLAN:
            return await _plan(runtime, request, message_id, dequeue_count, leases.fence)
        try:
            outcome = await run_audit(
                request,
                runtime,
                alerts=True,
                fanout=FanOut(runtime, lease_owner=owner) if leases.tenant_leased else None,
                fence=leases.fence,
            )
        except SupersededError as exc:
            log.warning("audit request %s: %s", request.request_id, exc)
            return MessageResult(MessageOutcome.SUPERSEDED, request=request, reason=str(exc))
        except BadRequestError as exc:
            # The request names a group or SKU the tenant does not have: retrying cannot help.
            return _reject(runtime, request, message_id, str(exc))
        except LicensingError as exc:
            _log_failure("audit request", request.request_id, dequeue_count, exc)
            raise
        except Exception as exc:  # not ours: still one line with its cause and the attempt count, then retried
            error = unexpected("the audit request", exc)
            _log_failure("audit request", request.request_id, dequeue_count, error)
            raise error from exc
        fanned_out = outcome.fanned_out
    finally:
        leases.release(keep_tenant_lease=fanned_out)
    if outcome.skipped:
        return MessageResult(MessageOutcome.SKIPPED, request=request, reason="already completed", audit=outcome)
    run = outcome.report.run
    if fanned_out:
        return MessageResult(
            MessageOutcome.FANNED_OUT, request=request, reason=f"run {run.id} continues on the chunk queue"
        )
    log.info(
        "audit %s finished: %s, %d findings, %d Graph requests (%d throttled)",
        run.id,
        run.status.value,
        len(outcome.report.findings),
        run.graph_requests,
        run.graph_throttled,
    )
    return MessageResult(MessageOutcome.COMPLETED, request=request, audit=outcome)


async def _plan(
    runtime: Runtime,
    request: AuditRequest,
    message_id: str | None,
    dequeue_count: int,
    fence: Callable[[], None] | None = None,
) -> MessageResult:
    """A plan request (licensing.pipeline.planning): answered, skipped (answered before), rejected or retried."""
    from licensing.pipeline.planning import run_plan

    try:
        answer = await run_plan(request, runtime, fence=fence)
    except SupersededError as exc:
        log.warning("plan request %s: %s", request.request_id, exc)
        return MessageResult(MessageOutcome.SUPERSEDED, request=request, reason=str(exc))
    except BadRequestError as exc:
        return _reject(runtime, request, message_id, str(exc))
    except LicensingError as exc:
        _log_failure("plan request", request.request_id, dequeue_count, exc)
        raise
    except Exception as exc:
        error = unexpected("the plan request", exc)
        _log_failure("plan request", request.request_id, dequeue_count, error)
        raise error from exc
    if answer.skipped:
        return MessageResult(MessageOutcome.SKIPPED, request=request, reason="already answered", plan=answer)
    return MessageResult(MessageOutcome.COMPLETED, request=request, plan=answer)


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
    body: bytes | str, runtime: Runtime, *, message_id: str | None = None, dequeue_count: int = 1
) -> MessageResult:
    """One chunk of a fanned-out tenant audit. Raises on transient failure (the host retries); on the last
    attempt the run is failed with the error first, so it never looks 'running' forever."""
    try:
        chunk = parse_chunk_message(body)
    except BadRequestError as exc:
        # Only this app writes chunk messages: a bad one is a bug or tampering, and retrying cannot fix it.
        log.error("rejected chunk message %s: %s", message_id or "(no id)", exc)
        return MessageResult(MessageOutcome.REJECTED, reason=str(exc))
    store = runtime.store
    if store is None:
        raise ConfigurationError("the chunk queue needs storage: set LICENSING_STORAGE or AzureWebJobsStorage")
    subject = f"{chunk.chunk} of run {chunk.run_id}"
    # Per invocation: two deliveries of the last chunk must not both own the final step.
    token = f"{message_id or f'chunk-{chunk.chunk}'}:{uuid.uuid4().hex[:12]}"
    try:
        result = await process_chunk(chunk, runtime, token=token)
    except Exception as exc:
        error = exc if isinstance(exc, LicensingError) else unexpected("the chunk", exc)
        _log_failure("chunk", subject, dequeue_count, error)
        if dequeue_count >= MAX_DEQUEUE_COUNT:
            fail_run(store, chunk, error, runtime.now)
        if error is exc:
            raise
        raise error from exc
    if result.outcome in (MessageOutcome.STALE, MessageOutcome.SKIPPED):
        log.info("chunk %s: nothing to do (%s)", subject, result.reason)
    if result.outcome is MessageOutcome.CLAIMED:
        # Another invocation owns the final step. If it dies, only a later delivery can take over (after
        # FINAL_CLAIM_TTL), so this message comes back instead of completing.
        settings = runtime.settings
        defer(settings, settings.audit_chunk_queue, encode_chunk_message(chunk), str(result.reason), f"chunk {subject}")
        return MessageResult(MessageOutcome.DEFERRED, reason=result.reason, chunk=chunk)
    return MessageResult(result.outcome, reason=result.reason, audit=result.audit, chunk=chunk)
