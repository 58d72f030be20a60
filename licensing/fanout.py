"""Fan-out of large tenant audits: chunks of licensed groups on a second queue, one final step once all are in.

A tenant audit whose licensed groups exceed ``FANOUT_GROUPS`` is split so that no invocation comes
near the plan's timeout (docs/operations.md):

1. the coordinator (the tenant request's invocation, holding the tenant lease) has read the overview
   (organization, SKUs, licensed-group list); it records the run as ``running``, stores the overview
   as a blob, writes the plan into the run's ``extra`` (plan id, chunk count and size, chunks done,
   lease owner) and puts one message per chunk on ``AUDIT_CHUNK_QUEUE``;
2. each chunk invocation reads the members of its groups, stores them as a blob keyed by run, plan and
   chunk (a redelivery rewrites the same key), then marks its chunk done with ETag concurrency; the
   update that completes the set also *claims* the final step for that message (its id is the token);
3. the claimant loads the overview and every part, merges them into one snapshot and concludes with
   exactly the path of a single-invocation audit (:func:`licensing.audit.evaluate_and_finish`), then
   records the final step finished, releases the tenant lease and deletes the blobs.

A crashed final step is redone by the host's redelivery of the same message (same token). A plan id
in every chunk message makes messages of an abandoned plan harmless. A chunk message that exhausts
its retries fails the run (keeping its error) and releases the lease.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

import orjson

from licensing import telemetry
from licensing.audit import FINISHED, AuditOutcome, evaluate_and_finish, utcnow
from licensing.errors import (
    AuditError,
    BadRequestError,
    GraphError,
    LicensingError,
    StorageError,
    StorageUnavailableError,
    redact_text,
)
from licensing.model import (
    AuditReport,
    AuditRequest,
    GraphStats,
    GroupRef,
    LicenseAssignment,
    LicensedGroup,
    RunInfo,
    RunStatus,
    Scope,
    Sku,
    TenantSnapshot,
    Unreadable,
    User,
)
from licensing.requests import decode_message
from licensing.settings import Settings

if TYPE_CHECKING:
    import httpx

    from licensing.store import AuditStore

__all__ = [
    "LEASE_NAME",
    "LEASE_TTL",
    "ChunkOutcome",
    "ChunkRequest",
    "FanOut",
    "decode_overview",
    "decode_part",
    "encode_chunk_message",
    "encode_overview",
    "encode_part",
    "fail_run",
    "fanout_state",
    "parse_chunk_message",
    "process_chunk",
]

log = logging.getLogger(__name__)

LEASE_NAME: Final = "tenant-audit"
# Longer than host.json's functionTimeout (30 min): a crashed holder never blocks the next night.
# A fanned-out run renews it with every chunk, so the TTL bounds a crash, not the run.
LEASE_TTL: Final = timedelta(minutes=40)
# A final step claimed longer ago than any invocation may live (functionTimeout) was abandoned.
FINAL_CLAIM_TTL: Final = timedelta(minutes=35)
# A plan without progress for this long is abandoned: a redelivered request plans again.
STALE_PLAN: Final = LEASE_TTL
FORMAT: Final = 1
MAX_CHUNKS: Final = 100_000
_CHUNK_FIELDS: Final = frozenset({"run_id", "tenant_id", "chunk", "plan", "request_id"})
_REQUIRED: Final = ("run_id", "tenant_id", "chunk", "plan")
# Ids become table keys and log fields: printable, no key-forbidden characters (as request ids).
_ID: Final = re.compile(r"^[A-Za-z0-9_.:@\-]{1,200}$")
_PLAN: Final = re.compile(r"^[0-9a-f]{12}$")


# ---------------------------------------------------------------- the chunk message


@dataclass(frozen=True, slots=True)
class ChunkRequest:
    """One chunk message: which run, which plan of it, which chunk of its licensed groups."""

    run_id: str
    tenant_id: str
    chunk: int
    plan: str
    request_id: str | None = None


def parse_chunk_message(body: bytes | str) -> ChunkRequest:
    """Decode and validate a chunk message (plain or base64 JSON); BadRequestError names the problem."""
    data = decode_message(body)
    unknown = sorted(str(k) for k in data if k not in _CHUNK_FIELDS)
    if unknown:
        raise BadRequestError(f"chunk message has unknown field(s) {', '.join(unknown)[:200]}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise BadRequestError(f"chunk message lacks {', '.join(missing)}")
    for name in ("run_id", "tenant_id"):
        value = data[name]
        if not isinstance(value, str) or not _ID.match(value):
            raise BadRequestError(f"chunk message {name} must be letters, digits and _ . : @ - (at most 200)")
    plan = data["plan"]
    if not isinstance(plan, str) or not _PLAN.match(plan):
        raise BadRequestError("chunk message plan must be 12 lowercase hex digits")
    chunk = data["chunk"]
    if not isinstance(chunk, int) or isinstance(chunk, bool) or not 0 <= chunk < MAX_CHUNKS:
        raise BadRequestError(f"chunk message chunk must be an integer from 0 to {MAX_CHUNKS - 1}")
    request_id = data.get("request_id")
    if request_id is not None and (not isinstance(request_id, str) or not _ID.match(request_id)):
        raise BadRequestError("chunk message request_id must be letters, digits and _ . : @ - (at most 200)")
    return ChunkRequest(
        run_id=data["run_id"], tenant_id=data["tenant_id"], chunk=chunk, plan=plan, request_id=request_id
    )


def encode_chunk_message(chunk: ChunkRequest) -> str:
    """Plain JSON, the encoding host.json reads (``messageEncoding: none``)."""
    body: dict[str, Any] = {
        "run_id": chunk.run_id,
        "tenant_id": chunk.tenant_id,
        "chunk": chunk.chunk,
        "plan": chunk.plan,
    }
    if chunk.request_id:
        body["request_id"] = chunk.request_id
    return orjson.dumps(body).decode("utf-8")


# ---------------------------------------------------------------- snapshot parts as compact blobs


def _pack(value: Any) -> bytes:
    # orjson writes the frozen dataclasses and datetimes directly; zlib shrinks the repeated field names.
    return zlib.compress(orjson.dumps(value), 6)


def _unpack(data: bytes, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(zlib.decompress(data))
    except (zlib.error, orjson.JSONDecodeError) as exc:
        raise StorageError(f"stored {what} is not readable: {exc}") from None
    if not isinstance(value, dict) or value.get("v") != FORMAT:
        raise StorageError(f"stored {what} has an unknown format")
    return value


def _time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def _sku(d: Mapping[str, Any]) -> Sku:
    return Sku(**{**d, "next_lifecycle": _time(d.get("next_lifecycle"))})


def _group(d: Mapping[str, Any]) -> LicensedGroup:
    return LicensedGroup(
        **{
            **d,
            "sku_ids": tuple(d.get("sku_ids", ())),
            "user_ids": tuple(d.get("user_ids", ())),
            "member_groups": tuple(GroupRef(**g) for g in d.get("member_groups", ())),
            "unknown_members": tuple(d.get("unknown_members", ())),
        }
    )


def _assignment(d: Mapping[str, Any]) -> LicenseAssignment:
    return LicenseAssignment(**{**d, "last_updated": _time(d.get("last_updated"))})


def _user(d: Mapping[str, Any]) -> User:
    return User(
        **{
            **d,
            "assigned_sku_ids": tuple(d.get("assigned_sku_ids", ())),
            "assignments": tuple(_assignment(a) for a in d.get("assignments", ())),
        }
    )


def _decode(what: str, build: Callable[[], TenantSnapshot]) -> TenantSnapshot:
    try:
        return build()
    except (TypeError, ValueError, KeyError) as exc:  # a field renamed between versions, a corrupt value
        raise StorageError(f"stored {what} does not match this version: {exc}") from None


def encode_overview(overview: TenantSnapshot) -> bytes:
    """The coordinator's read (tenant, SKUs, groups without members, what was unreadable, Graph figures)."""
    return _pack(
        {
            "v": FORMAT,
            "tenant_id": overview.tenant_id,
            "tenant_name": overview.tenant_name,
            "read_at": overview.read_at,
            "skus": overview.skus,
            "groups": overview.groups,
            "unreadable": overview.unreadable,
            "stats": overview.stats,
        }
    )


def decode_overview(data: bytes) -> TenantSnapshot:
    d = _unpack(data, "fan-out overview")
    return _decode(
        "fan-out overview",
        lambda: TenantSnapshot(
            tenant_id=d["tenant_id"],
            tenant_name=d["tenant_name"],
            scope=Scope.TENANT,
            read_at=_time(d["read_at"]),
            skus=tuple(_sku(s) for s in d["skus"]),
            groups=tuple(_group(g) for g in d["groups"]),
            unreadable=tuple(Unreadable(**u) for u in d["unreadable"]),
            stats=GraphStats(**d["stats"]),
        ),
    )


def encode_part(part: TenantSnapshot) -> bytes:
    """One chunk's read: its groups with their members, those users (each once), what was unreadable;
    or the users scan (``scope_id`` marks it)."""
    return _pack(
        {
            "v": FORMAT,
            "scope_id": part.scope_id,
            "groups": part.groups,
            "users": list(part.users.values()),
            "unreadable": part.unreadable,
            "stats": part.stats,
        }
    )


def decode_part(data: bytes) -> TenantSnapshot:
    d = _unpack(data, "fan-out part")

    def build() -> TenantSnapshot:
        users = {u.id: u for u in (_user(x) for x in d["users"])}
        return TenantSnapshot(
            tenant_id="",
            scope_id=d.get("scope_id"),
            groups=tuple(_group(g) for g in d["groups"]),
            users=MappingProxyType(users),
            unreadable=tuple(Unreadable(**u) for u in d["unreadable"]),
            stats=GraphStats(**d["stats"]),
        )

    return _decode("fan-out part", build)


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
    moment = _time(stamp)
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
    """Hands a large tenant audit to the chunk queue (called by :func:`licensing.audit.run_audit`)."""

    def __init__(self, settings: Settings, *, lease_owner: str | None, now: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.lease_owner = lease_owner
        self.now = now

    async def start(
        self, *, run: RunInfo, overview: TenantSnapshot, request: AuditRequest, store: AuditStore
    ) -> AuditOutcome:
        """Plan the chunks and enqueue them (or resume the plan of a redelivered request). Returns at once."""
        size = self.settings.fanout_groups
        # One chunk per FANOUT_GROUPS groups, and the last one reads the tenant-wide users scan.
        total = math.ceil(len(overview.groups) / size) + 1
        current = store.get_run(run.tenant_id, run.id)
        if current is not None:
            resumed = self.resume(run=current, store=store)
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

    def resume(self, *, run: RunInfo, store: AuditStore) -> AuditOutcome | None:
        """The outcome for a redelivered request whose fan-out is live (running, progress within STALE_PLAN);
        None when there is none and the run must be planned (again)."""
        state = fanout_state(store.run_extra(run.tenant_id, run.id))
        if state is None or run.status is not RunStatus.RUNNING:
            return None
        if _older_than(state.get("updated_at"), STALE_PLAN, self.now()):
            return None
        return self._resume(run=run, state=state, store=store)

    def _resume(self, *, run: RunInfo, state: Mapping[str, Any], store: AuditStore) -> AuditOutcome | None:
        """A redelivered request whose fan-out is under way: make sure every chunk was enqueued, adopt the
        lease (its owner releases it at the end), and leave the rest to the chunks. None: plan afresh."""
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
        from azure.core.exceptions import AzureError, ResourceExistsError

        from licensing.queues import queue_client

        queue = self.settings.audit_chunk_queue
        client = queue_client(self.settings.storage, queue)
        try:
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()
            for index in chunks:
                message = ChunkRequest(run.id, run.tenant_id, index, plan, run.request_id)
                client.send_message(encode_chunk_message(message))
        except AzureError as exc:
            reason = redact_text(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            raise StorageUnavailableError(f"could not put a message on queue {queue}: {reason}") from None
        finally:
            client.close()


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

    outcome: str
    reason: str | None = None
    audit: AuditOutcome | None = None


async def process_chunk(
    chunk: ChunkRequest,
    settings: Settings,
    store: AuditStore,
    *,
    token: str,
    credential: str,
    http_client: httpx.AsyncClient | None = None,
    on_delivered: Callable[[str, str, bytes], None] | None = None,
    now: Callable[[], datetime] = utcnow,
) -> ChunkOutcome:
    """Read one chunk's members and mark it done; the invocation that completes the set concludes the run.

    ``token`` identifies the message across redeliveries (its queue message id): a final step it
    claimed and crashed in is resumed by it. Raises on transient failure (the host retries).
    """
    from licensing.graph import open_graph
    from licensing.graph.reader import read_members, read_users

    run = store.get_run(chunk.tenant_id, chunk.run_id)
    if run is None:
        return ChunkOutcome("stale", f"no run {chunk.run_id} is recorded")
    state = fanout_state(store.run_extra(chunk.tenant_id, chunk.run_id))
    if run.status in FINISHED:
        if state is not None and state.get("plan") == chunk.plan:
            _cleanup(store, run.id, state)  # a final step that died after finishing left these behind
        return ChunkOutcome("skipped", f"run {run.id} is already {run.status.value}")
    if state is None or state.get("plan") != chunk.plan:
        return ChunkOutcome("stale", f"run {run.id} was planned again; this chunk belongs to an older plan")
    if run.status is not RunStatus.RUNNING:
        return ChunkOutcome("stale", f"run {run.id} is {run.status.value}")
    total = int(state["chunks"])
    if chunk.chunk >= total:
        return ChunkOutcome("stale", f"chunk {chunk.chunk} is not in the plan of run {run.id} ({total} chunks)")

    async with open_graph(settings, credential=credential) as graph:
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
            return ChunkOutcome("done", f"chunk {chunk.chunk} of run {run.id} done ({done} of {total})")
        final = state.get("final") or {}
        if final.get("by") != token:
            if final.get("finished_at"):
                return ChunkOutcome("skipped", f"run {run.id} was concluded by another invocation")
            return ChunkOutcome("claimed", f"chunk {chunk.chunk} done; another invocation concludes run {run.id}")
        try:
            outcome = await _final_step(
                chunk, settings, store, state, graph=graph, http_client=http_client, on_delivered=on_delivered, now=now
            )
        except BaseException:
            # Tokens are per invocation: give the claim up, so the redelivery of this message can redo the step
            # (a killed invocation cannot; its claim expires after FINAL_CLAIM_TTL).
            _give_up_final(store, run, plan=chunk.plan, token=token)
            raise
    if outcome is None:
        return ChunkOutcome("skipped", f"run {run.id} was concluded by another invocation")
    return ChunkOutcome("finished", audit=outcome)


def _load_overview(store: AuditStore, run_id: str, plan: str) -> TenantSnapshot:
    data = store.get_blob(_blob(run_id, plan, "overview"))
    if data is None:
        raise StorageError(f"the fan-out overview of run {run_id} (plan {plan}) is missing")
    return decode_overview(data)


async def _final_step(
    chunk: ChunkRequest,
    settings: Settings,
    store: AuditStore,
    state: Mapping[str, Any],
    *,
    graph: Any,
    http_client: httpx.AsyncClient | None,
    on_delivered: Callable[[str, str, bytes], None] | None,
    now: Callable[[], datetime],
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
            settings=settings,
            store=store,
            graph=graph,
            alerts=True,
            now=now,
            http_client=http_client,
            on_delivered=on_delivered,
        )
        telemetry.set_run_outcome(outcome.report, run_span)
    telemetry.run_finished(outcome.report, time.monotonic() - clock)
    moment = now()
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
