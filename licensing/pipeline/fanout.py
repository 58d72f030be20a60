"""Fan-out of large tenant audits: chunks of licensed groups on a second queue, one final step once all are in.

A tenant audit whose licensed groups exceed ``FANOUT_GROUPS`` is split so that no invocation comes
near the plan's timeout (docs/operations.md):

1. the coordinator (the tenant request's invocation, holding the tenant lease) has read the overview
   (organization, SKUs, licensed-group list); it records the run as ``running``, stores the overview
   as a blob, writes the plan into the run's ``extra`` (plan id, chunk count and size, chunks done,
   lease owner) and puts one message per chunk on ``AUDIT_CHUNK_QUEUE``;
2. each chunk invocation reads the members of its groups, stores them as a blob keyed by run, plan and
   chunk (a redelivery rewrites the same key), then marks its chunk done with ETag concurrency; the
   update that completes the set also *claims* the final step for that invocation (its token);
3. the claimant loads the overview and every part, merges them into one snapshot and concludes with
   exactly the path of a single-invocation audit (:func:`licensing.pipeline.conclusion.evaluate_and_finish`),
   then records the final step finished, releases the tenant lease and deletes the blobs.

A final step that fails gives its claim up, so a redelivery redoes it; a delivery that finds another
invocation's claim comes back later (``claimed``). A plan id in every chunk message makes messages of
an abandoned plan harmless. A chunk message that exhausts its retries fails the run (keeping its error)
and releases the lease.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from licensing import telemetry
from licensing.errors import AuditError, GraphError, LicensingError, StorageError
from licensing.model import AuditReport, AuditRequest, MessageOutcome, RunInfo, RunStatus, Scope, TenantSnapshot
from licensing.pipeline.admission import LEASE_NAME, LEASE_TTL
from licensing.pipeline.conclusion import FINISHED, AuditOutcome, evaluate_and_finish
from licensing.pipeline.crosscheck import ScanSummary
from licensing.pipeline.parts import (
    ChunkRequest,
    decode_overview,
    decode_part,
    encode_chunk_message,
    encode_overview,
    encode_part,
)
from licensing.pipeline.queues import put_messages
from licensing.pipeline.runtime import Runtime, utcnow

if TYPE_CHECKING:
    from licensing.store import AuditStore

__all__ = ["FINAL_CLAIM_TTL", "ChunkOutcome", "FanOut", "fail_run", "fanout_state", "process_chunk"]

log = logging.getLogger(__name__)

# A final step claimed longer ago than any invocation may live (functionTimeout) was abandoned.
FINAL_CLAIM_TTL: Final = timedelta(minutes=35)
# A plan without progress for this long is abandoned: a redelivered request plans again.
STALE_PLAN: Final = LEASE_TTL
# ---------------------------------------------------------------- the plan in the run record


def fanout_state(extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run's fan-out bookkeeping (``extra["fanout"]``), or None for a run that did not fan out."""
    state = extra.get("fanout")
    return dict(state) if isinstance(state, dict) else None


def _blob(run_id: str, plan: str, part: str) -> str:
    return f"fanout/{run_id}/{plan}/{part}"


def _chunk_blob(run_id: str, plan: str, index: int) -> str:
    return _blob(run_id, plan, f"chunk-{index:05d}")


def _older_than(stamp: Any, age: timedelta, now: datetime) -> bool:
    moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) and stamp else None
    return moment is None or now - moment > age


def _mark_done(extra: dict[str, Any], *, plan: str, index: int, token: str, now: datetime) -> dict[str, Any]:
    """Pure (re-applied on every ETag retry): add ``index`` to the chunks done; the update that completes
    the set claims the final step for ``token`` (or takes over a claim abandoned for FINAL_CLAIM_TTL)."""
    state = fanout_state(extra)
    if state is None or state.get("plan") != plan:
        return extra
    done = sorted({*state.get("done", ()), index})
    new = {**state, "done": done, "updated_at": now.isoformat()}
    final = state.get("final")
    complete = len(done) >= int(state["chunks"]) and not (final and final.get("finished_at"))
    if complete and (not final or final.get("by") == token or _older_than(final.get("at"), FINAL_CLAIM_TTL, now)):
        new["final"] = {"by": token, "at": now.isoformat(), "finished_at": None}
    return {**extra, "fanout": new}


def _release_final(extra: dict[str, Any], *, plan: str, token: str) -> dict[str, Any]:
    """Pure: drop the final-step claim of ``token`` if it still holds it and the step did not finish."""
    state = fanout_state(extra)
    final = (state or {}).get("final") or {}
    if state is None or state.get("plan") != plan or final.get("by") != token or final.get("finished_at"):
        return extra
    return {**extra, "fanout": {**state, "final": None}}


def _give_up_final(store: AuditStore, run: RunInfo, *, plan: str, token: str) -> None:
    try:
        store.update_run_extra(run.tenant_id, run.id, lambda extra: _release_final(extra, plan=plan, token=token))
    except Exception as exc:  # storage may be what failed: the claim's TTL frees it then
        log.warning("could not give up the final step of run %s: %s", run.id, exc)


def _mark_finished(extra: dict[str, Any], *, plan: str, now: datetime) -> dict[str, Any]:
    state = fanout_state(extra)
    if state is None or state.get("plan") != plan or not state.get("final"):
        return extra
    return {**extra, "fanout": {**state, "final": {**state["final"], "finished_at": now.isoformat()}}}


def _cleanup(store: AuditStore, run_id: str, state: Mapping[str, Any]) -> None:
    """Release the tenant lease and delete the plan's blobs; idempotent, and never fails the caller."""
    try:
        owner = state.get("lease_owner")
        if owner:
            store.release_lease(LEASE_NAME, str(owner))
        plan = str(state["plan"])
        for index in range(int(state["chunks"])):
            store.delete_blob(_chunk_blob(run_id, plan, index))
        store.delete_blob(_blob(run_id, plan, "overview"))
    except LicensingError as exc:  # leftovers cost storage, not correctness; the next cleanup retries
        log.warning("could not clean up after fanned-out run %s: %s", run_id, exc)


# ---------------------------------------------------------------- the coordinator


class FanOut:
    """Hands a large tenant audit to the chunk queue (called by :func:`licensing.pipeline.run.run_audit`)."""

    def __init__(self, runtime: Runtime, *, lease_owner: str | None) -> None:
        if runtime.store is None:
            raise LicensingError("fan-out needs storage")
        self.settings = runtime.settings
        self.store: AuditStore = runtime.store
        self.lease_owner = lease_owner
        self.now = runtime.now

    async def start(self, *, run: RunInfo, overview: TenantSnapshot, request: AuditRequest) -> AuditOutcome:
        """Plan the chunks and enqueue them (or resume the plan of a redelivered request). Returns at once."""
        store = self.store
        size = self.settings.fanout_groups
        # One chunk per FANOUT_GROUPS groups, and the last one reads the tenant-wide users scan.
        total = math.ceil(len(overview.groups) / size) + 1
        current = store.get_run(run.tenant_id, run.id)
        if current is not None:
            resumed = self.resume(run=current)
            if resumed is not None:
                return resumed
        previous = fanout_state(store.run_extra(run.tenant_id, run.id))
        now = self.now()
        if previous is not None:
            _cleanup(store, run.id, {**previous, "lease_owner": None})  # the old plan's blobs; our lease stays
        plan = uuid.uuid4().hex[:12]
        store.begin_run(run)
        store.put_blob(_blob(run.id, plan, "overview"), encode_overview(overview))
        state = {
            "plan": plan,
            "chunks": total,
            "size": size,
            "groups": len(overview.groups),
            "users_chunk": True,
            "done": [],
            "enqueued": False,
            "lease_owner": self.lease_owner,
            "notify": request.notify,
            "final": None,
            "updated_at": now.isoformat(),
        }
        store.update_run_extra(run.tenant_id, run.id, lambda extra: {**extra, "fanout": state})
        self._enqueue(run, plan, range(total))
        store.update_run_extra(run.tenant_id, run.id, lambda extra: _set_enqueued(extra, plan))
        log.info(
            "tenant audit %s fanned out: %d licensed groups in %d chunks of up to %d on %s",
            run.id,
            len(overview.groups),
            total,
            size,
            self.settings.audit_chunk_queue,
        )
        return AuditOutcome(AuditReport(run=replace(run, status=RunStatus.RUNNING)), history={}, fanned_out=True)

    def resume(self, *, run: RunInfo) -> AuditOutcome | None:
        """The outcome for a redelivered request whose fan-out is live (running, progress within STALE_PLAN);
        None when there is none and the run must be planned (again)."""
        state = fanout_state(self.store.run_extra(run.tenant_id, run.id))
        if state is None or run.status is not RunStatus.RUNNING:
            return None
        if _older_than(state.get("updated_at"), STALE_PLAN, self.now()):
            return None
        return self._resume(run=run, state=state)

    def _resume(self, *, run: RunInfo, state: Mapping[str, Any]) -> AuditOutcome | None:
        """A redelivered request whose fan-out is under way: make sure every chunk was enqueued, adopt the
        lease (its owner releases it at the end), and leave the rest to the chunks. None: plan afresh."""
        store = self.store
        plan = str(state["plan"])
        if store.get_blob(_blob(run.id, plan, "overview")) is None:
            return None  # the coordinator crashed before its overview was stored
        if not state.get("enqueued"):
            done = set(state.get("done", ()))
            self._enqueue(run, plan, [i for i in range(int(state["chunks"])) if i not in done])
        owner = self.lease_owner

        def adopt(extra: dict[str, Any]) -> dict[str, Any]:
            extra = _set_enqueued(extra, plan)
            current = fanout_state(extra)
            if current is None or current.get("plan") != plan:
                return extra
            return {**extra, "fanout": {**current, "lease_owner": owner or current.get("lease_owner")}}

        store.update_run_extra(run.tenant_id, run.id, adopt)
        log.info("tenant audit %s is already fanned out (plan %s); its chunks are under way", run.id, plan)
        return AuditOutcome(AuditReport(run=run), history={}, fanned_out=True)

    def _enqueue(self, run: RunInfo, plan: str, chunks: Iterable[int]) -> None:
        texts = [encode_chunk_message(ChunkRequest(run.id, run.tenant_id, i, plan, run.request_id)) for i in chunks]
        put_messages(self.settings.storage, self.settings.audit_chunk_queue, texts)


def _set_enqueued(extra: dict[str, Any], plan: str) -> dict[str, Any]:
    state = fanout_state(extra)
    if state is None or state.get("plan") != plan:
        return extra
    return {**extra, "fanout": {**state, "enqueued": True}}


# ---------------------------------------------------------------- a chunk, and the final step


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """``stale`` (nothing to do for this message) | ``skipped`` (run finished) | ``done`` | ``finished`` |
    ``claimed`` (every chunk is done and another invocation owns the final step)."""

    outcome: MessageOutcome
    reason: str | None = None
    audit: AuditOutcome | None = None


async def process_chunk(chunk: ChunkRequest, runtime: Runtime, *, token: str) -> ChunkOutcome:
    """Read one chunk's members and mark it done; the invocation that completes the set concludes the run.

    ``token`` identifies the message across redeliveries (its queue message id): a final step it
    claimed and crashed in is resumed by it. Raises on transient failure (the host retries).
    """
    from licensing.graph import open_graph
    from licensing.graph.reader import read_members, read_users

    store, now = runtime.store, runtime.now
    if store is None:
        raise LicensingError("the chunk queue needs storage")
    run = store.get_run(chunk.tenant_id, chunk.run_id)
    if run is None:
        return ChunkOutcome(MessageOutcome.STALE, f"no run {chunk.run_id} is recorded")
    state = fanout_state(store.run_extra(chunk.tenant_id, chunk.run_id))
    if run.status in FINISHED:
        if state is not None and state.get("plan") == chunk.plan:
            _cleanup(store, run.id, state)  # a final step that died after finishing left these behind
        return ChunkOutcome(MessageOutcome.SKIPPED, f"run {run.id} is already {run.status.value}")
    if state is None or state.get("plan") != chunk.plan:
        return ChunkOutcome(
            MessageOutcome.STALE, f"run {run.id} was planned again; this chunk belongs to an older plan"
        )
    if run.status is not RunStatus.RUNNING:
        return ChunkOutcome(MessageOutcome.STALE, f"run {run.id} is {run.status.value}")
    total = int(state["chunks"])
    if chunk.chunk >= total:
        return ChunkOutcome(
            MessageOutcome.STALE, f"chunk {chunk.chunk} is not in the plan of run {run.id} ({total} chunks)"
        )

    async with open_graph(runtime.settings, credential=runtime.credential) as graph:
        if chunk.chunk not in state.get("done", ()):
            overview = _load_overview(store, run.id, chunk.plan)
            size = int(state["size"])
            users_chunk = bool(state.get("users_chunk")) and chunk.chunk == total - 1
            groups = () if users_chunk else overview.groups[chunk.chunk * size : (chunk.chunk + 1) * size]
            with telemetry.span("audit.chunk", {"run.id": run.id, "chunk": chunk.chunk, "groups": len(groups)}):
                try:
                    part = await read_users(graph) if users_chunk else await read_members(graph, groups)
                except GraphError as exc:
                    raise AuditError(
                        f"chunk {chunk.chunk}: could not read the members from Microsoft Graph: {exc}"
                    ) from exc
                store.put_blob(_chunk_blob(run.id, chunk.plan, chunk.chunk), encode_part(part))
        moment = now()
        extra = store.update_run_extra(
            run.tenant_id,
            run.id,
            lambda extra: _mark_done(extra, plan=chunk.plan, index=chunk.chunk, token=token, now=moment),
        )
        state = fanout_state(extra) or state
        owner = state.get("lease_owner")
        if owner:  # progress renews the tenant lease, so only a stalled run lets it expire
            store.try_acquire_lease(LEASE_NAME, str(owner), LEASE_TTL)
        done = len(state.get("done", ()))
        if done < total:
            return ChunkOutcome(MessageOutcome.DONE, f"chunk {chunk.chunk} of run {run.id} done ({done} of {total})")
        final = state.get("final") or {}
        if final.get("by") != token:
            if final.get("finished_at"):
                return ChunkOutcome(MessageOutcome.SKIPPED, f"run {run.id} was concluded by another invocation")
            return ChunkOutcome(
                MessageOutcome.CLAIMED, f"chunk {chunk.chunk} done; another invocation concludes run {run.id}"
            )
        try:
            outcome = await _final_step(chunk, runtime, store, state, graph=graph)
        except BaseException:
            # Tokens are per invocation: give the claim up, so the redelivery of this message can redo the step
            # (a killed invocation cannot; its claim expires after FINAL_CLAIM_TTL).
            _give_up_final(store, run, plan=chunk.plan, token=token)
            raise
    if outcome is None:
        return ChunkOutcome(MessageOutcome.SKIPPED, f"run {run.id} was concluded by another invocation")
    return ChunkOutcome(MessageOutcome.FINISHED, audit=outcome)


def _load_overview(store: AuditStore, run_id: str, plan: str) -> TenantSnapshot:
    data = store.get_blob(_blob(run_id, plan, "overview"))
    if data is None:
        raise StorageError(f"the fan-out overview of run {run_id} (plan {plan}) is missing")
    return decode_overview(data)


async def _final_step(
    chunk: ChunkRequest, runtime: Runtime, store: AuditStore, state: Mapping[str, Any], *, graph: Any
) -> AuditOutcome | None:
    """Merge every part with the overview and conclude exactly as a single-invocation audit does."""
    from licensing.graph.reader import merge_snapshot

    run = store.get_run(chunk.tenant_id, chunk.run_id)
    if run is None or run.status in FINISHED:
        return None
    overview = _load_overview(store, run.id, chunk.plan)
    parts: list[TenantSnapshot] = []
    for index in range(int(state["chunks"])):
        data = store.get_blob(_chunk_blob(run.id, chunk.plan, index))
        if data is None:
            raise StorageError(f"part {index} of fanned-out run {run.id} is missing")
        parts.append(decode_part(data))
    snapshot = merge_snapshot(overview, parts)
    request = AuditRequest(
        scope=Scope.TENANT,
        request_id=run.request_id,
        notify=bool(state.get("notify", True)),
        requested_by=run.requested_by,
        trigger=run.trigger,
    )
    clock = time.monotonic()
    with telemetry.run_span(run) as run_span:
        run_span.set_attribute("run.fanned_out", True)
        outcome = await evaluate_and_finish(
            run=replace(run, tenant_name=run.tenant_name or snapshot.tenant_name),
            snapshot=snapshot,
            request=request,
            runtime=runtime,
            graph=graph,
            alerts=True,
            scan=ScanSummary.of(parts),
        )
        telemetry.set_run_outcome(outcome.report, run_span)
    telemetry.run_finished(outcome.report, time.monotonic() - clock)
    moment = runtime.now()
    try:
        store.update_run_extra(run.tenant_id, run.id, lambda extra: _mark_finished(extra, plan=chunk.plan, now=moment))
    except LicensingError as exc:  # the run itself says it finished; this is bookkeeping
        log.warning("could not record the end of the final step of run %s: %s", run.id, exc)
    _cleanup(store, run.id, state)
    log.info(
        "fanned-out audit %s finished: %s, %d findings from %d chunks",
        run.id,
        outcome.report.run.status.value,
        len(outcome.report.findings),
        len(parts),
    )
    return outcome


def fail_run(
    store: AuditStore, chunk: ChunkRequest, error: BaseException, now: Callable[[], datetime] = utcnow
) -> None:
    """A chunk message out of retries (bound for the poison queue): the run fails with its error, the lease goes."""
    try:
        run = store.get_run(chunk.tenant_id, chunk.run_id)
        state = fanout_state(store.run_extra(chunk.tenant_id, chunk.run_id))
        if run is None or run.status is not RunStatus.RUNNING or state is None or state.get("plan") != chunk.plan:
            return
        message = f"chunk {chunk.chunk}: {error}"
        moment = now()

        def failed(current: RunInfo) -> RunInfo:
            if current.status is not RunStatus.RUNNING:
                return current
            return replace(current, status=RunStatus.FAILED, finished_at=moment, errors=(message,))

        store.update_run(chunk.tenant_id, chunk.run_id, failed)
        owner = state.get("lease_owner")
        if owner:
            store.release_lease(LEASE_NAME, str(owner))
    except LicensingError as exc:  # the original failure matters more; say both
        log.error("could not record the failure of run %s: %s", chunk.run_id, exc)
