"""One audit run: collect (Graph) -> evaluate (rules) -> alert -> persist, exactly once per request id.

The order is chosen for crash safety. Alerts are planned, queued in the outbox and their
state committed *before* the run is marked finished; a run that crashes anywhere is simply
redone under the same run id (findings are upserts, the outbox ids are stable, and the alert
state already says what was sent), so nothing is lost and nothing is sent twice. A request
whose run is finished is not repeated: re-delivery is normal for queues.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from licensing import telemetry
from licensing.errors import AuditError, GraphError, LicensingError, SupersededError
from licensing.model import (
    UNKNOWN_TENANT,
    AuditReport,
    AuditRequest,
    FindingKind,
    RunInfo,
    RunStatus,
    Scope,
    SkuDay,
    TenantSnapshot,
    Trigger,
    finding_id,
)
from licensing.settings import Settings

if TYPE_CHECKING:
    import httpx

    from licensing.alerts import DeliveryResult
    from licensing.fanout import FanOut
    from licensing.store import AuditStore

__all__ = [
    "FINISHED",
    "UNKNOWN_TENANT",
    "AuditOutcome",
    "ProgressFn",
    "evaluate_and_finish",
    "new_run_id",
    "run_audit",
    "unexpected",
    "utcnow",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
# Runs whose work stands for their request: a redelivery of the same request is skipped. A rejected run
# never stands in for another request (issue 16, item 2): it did no work.
FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL})


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_run_id(started_at: datetime) -> str:
    """Sortable by time, unique: ``20261124T023000Z-1a2b3c4d``."""
    return f"{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """What a run produced; ``skipped`` when the request had already been completed."""

    report: AuditReport
    history: Mapping[str, Sequence[SkuDay]]
    delivery: DeliveryResult | None = None
    skipped: bool = False
    fanned_out: bool = False  # handed to the chunk queue: the report's run is still ``running``


def _history_with_today(
    history: Mapping[str, Sequence[SkuDay]], snapshot: TenantSnapshot, today: date
) -> dict[str, list[SkuDay]]:
    """Stored history plus today's counters (which the store writes only when the run finishes)."""
    merged = {sku_id: [d for d in days if d.day != today] for sku_id, days in history.items()}
    for sku in snapshot.skus:
        merged.setdefault(sku.sku_id, []).append(SkuDay.of(sku, today))
    for days in merged.values():
        days.sort(key=lambda d: d.day)
    return merged


def _processing_since(snapshot: TenantSnapshot, states: Mapping[str, Any]) -> dict[str, datetime]:
    """When each group was first seen still processing (from alert state), for the 'stuck' escalation."""
    since: dict[str, datetime] = {}
    for group in snapshot.groups:
        state = states.get(finding_id(FindingKind.PROCESSING_INCOMPLETE.value, group.id))
        if state is not None and state.status == "open":
            since[group.id] = state.first_seen
    return since


def _status_and_errors(snapshot: TenantSnapshot, errors: Sequence[str]) -> tuple[RunStatus, tuple[str, ...]]:
    lines: list[str] = []
    for part in snapshot.unreadable:
        subject = f" {part.subject_id}" if part.subject_id else ""
        lines.append(f"{part.what}{subject}: {part.reason}")
    lines.extend(errors)
    unique = tuple(dict.fromkeys(lines))
    return (RunStatus.PARTIAL if unique else RunStatus.SUCCEEDED), unique


async def run_audit(
    request: AuditRequest,
    settings: Settings,
    *,
    credential: str = "default",
    store: AuditStore | None = None,
    alerts: bool = True,
    progress: ProgressFn | None = None,
    now: Callable[[], datetime] = utcnow,
    http_client: httpx.AsyncClient | None = None,
    on_delivered: Callable[[str, str, bytes], None] | None = None,
    run_id: str | None = None,
    fanout: FanOut | None = None,
    fence: Callable[[], None] | None = None,
) -> AuditOutcome:
    """Run one audit end to end. Raises AuditError (retryable by the queue) when it could not finish.

    With ``fanout`` (the queue pipeline) and a store, a tenant audit first reads the overview (SKUs
    and the licensed-group list); above ``FANOUT_GROUPS`` groups it hands the run to the fan-out
    (``AuditOutcome.fanned_out``), below it reads the members itself and finishes here. Either way the
    snapshot is built by the same merge and concluded by :func:`evaluate_and_finish`.
    """
    from licensing.graph import open_graph, read_snapshot
    from licensing.graph.reader import merge_snapshot, read_members, read_overview, read_users, task_group

    started_at = now()
    clock = time.monotonic()
    provisional = RunInfo(
        id=run_id or new_run_id(started_at),
        tenant_id=settings.azure_tenant_id or UNKNOWN_TENANT,
        trigger=request.trigger,
        scope=request.scope,
        scope_id=request.group_id or request.sku,
        started_at=started_at,
        request_id=request.request_id,
        requested_by=request.requested_by,
    )
    if store is not None and request.request_id and settings.azure_tenant_id:
        # The tenant is configured: a finished request is skipped without touching Graph, and an attempt
        # that fails before Graph names the tenant is recorded on the request's existing run, not a new one.
        early = store.run_for_request(settings.azure_tenant_id, request.request_id, key=request.key)
        if early is not None and early.status in FINISHED:
            log.info("request %s already completed as run %s; nothing to do", request.request_id, early.id)
            findings = tuple(store.run_findings(early.id))
            return AuditOutcome(AuditReport(run=early, findings=findings), history={}, skipped=True)
        if early is not None and fanout is not None and request.scope is Scope.TENANT:
            # A redelivered request whose fan-out is under way: its chunks carry on, Graph is not read again.
            resumed = fanout.resume(run=early, store=store)
            if resumed is not None:
                return resumed
        if early is not None and early.status is not RunStatus.REJECTED:
            provisional = replace(provisional, id=early.id)
    staged = fanout is not None and store is not None and request.scope is Scope.TENANT
    async with open_graph(settings, credential=credential) as graph:
        with telemetry.run_span(provisional) as run_span:
            with telemetry.span("audit.read", {"run.scope": request.scope.value}):
                try:
                    if staged:
                        snapshot = await read_overview(graph, progress=progress)
                    else:
                        snapshot = await read_snapshot(graph, request, progress=progress)
                except GraphError as exc:
                    error = AuditError(f"could not read the tenant from Microsoft Graph: {exc}")
                    _record_failure(store, provisional, error, now)
                    raise error from exc
                except LicensingError:
                    raise  # BadRequestError (a group or SKU the tenant does not have) is the caller's to reject
                except Exception as exc:  # a library's bare Exception must still leave a record with its cause
                    error = unexpected("reading the tenant", exc)
                    _record_failure(store, provisional, error, now)
                    raise error from exc
            tenant_id = snapshot.tenant_id
            run_span.set_attribute("tenant.id", tenant_id)

            prior: RunInfo | None = None
            if store is not None and request.request_id:
                prior = store.run_for_request(tenant_id, request.request_id, key=request.key)
                if prior is not None and prior.status is RunStatus.REJECTED:
                    prior = None  # a rejected run is not this request's work: a new run answers it
                if prior is not None and prior.status in FINISHED:
                    log.info("request %s already completed as run %s; nothing to do", request.request_id, prior.id)
                    run_span.set_attribute("run.skipped", True)
                    findings = tuple(store.run_findings(prior.id))
                    return AuditOutcome(AuditReport(run=prior, findings=findings), history={}, skipped=True)

            # A run that crashed earlier is redone under its own id: its findings and alerts are upserts.
            run = replace(
                provisional,
                id=prior.id if prior is not None else provisional.id,
                tenant_id=tenant_id,
                tenant_name=snapshot.tenant_name,
            )
            run_span.set_attribute("run.id", run.id)
            try:
                if staged:
                    assert fanout is not None and store is not None  # narrowed by `staged`
                    if len(snapshot.groups) > settings.fanout_groups:
                        run_span.set_attribute("run.fanned_out", True)
                        return await fanout.start(run=run, overview=snapshot, request=request, store=store)
                    with telemetry.span("audit.read_members", {"run.id": run.id}):
                        try:
                            async with task_group() as reads:
                                members = reads.create_task(read_members(graph, snapshot.groups, progress=progress))
                                users = reads.create_task(read_users(graph))
                        except GraphError as exc:
                            raise AuditError(f"could not read the tenant from Microsoft Graph: {exc}") from exc
                    # One client read everything here: its figures are the run's (the parts' would count twice).
                    snapshot = replace(merge_snapshot(snapshot, [members.result(), users.result()]), stats=graph.stats)
                if store is not None:
                    store.begin_run(run)
                outcome = await evaluate_and_finish(
                    run=run,
                    snapshot=snapshot,
                    request=request,
                    settings=settings,
                    store=store,
                    graph=graph,
                    alerts=alerts,
                    now=now,
                    http_client=http_client,
                    on_delivered=on_delivered,
                    fence=fence,
                )
            except SupersededError:
                raise  # the later delivery owns the run now: nothing to record here
            except LicensingError as exc:
                _record_failure(store, run, exc, now)
                raise
            except Exception as exc:  # an unexpected bug still must not leave a run that looks 'running' forever
                error = unexpected("the audit", exc)
                _record_failure(store, run, error, now)
                raise error from exc
            telemetry.set_run_outcome(outcome.report, run_span)
    telemetry.run_finished(outcome.report, time.monotonic() - clock)
    return outcome


def unexpected(during: str, exc: BaseException) -> AuditError:
    """An exception nobody mapped (a bug, a library's bare Exception) as an AuditError that names its cause."""
    from licensing.telemetry import scrub

    cause = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1 else exc
    detail = scrub(str(cause))[:200]
    return AuditError(f"{during} failed unexpectedly: {type(cause).__name__}" + (f": {detail}" if detail else ""))


def _record_failure(store: AuditStore | None, run: RunInfo, exc: BaseException, now: Callable[[], datetime]) -> None:
    if store is None:
        return
    try:
        store.finish_run(AuditReport(run=replace(run, status=RunStatus.FAILED, finished_at=now(), errors=(str(exc),))))
    except LicensingError as store_exc:  # the original failure matters more; say both
        log.error("could not record the failed run %s: %s", run.id, store_exc)


async def evaluate_and_finish(
    *,
    run: RunInfo,
    snapshot: TenantSnapshot,
    request: AuditRequest,
    settings: Settings,
    store: AuditStore | None,
    graph: Any,
    alerts: bool,
    now: Callable[[], datetime],
    http_client: httpx.AsyncClient | None,
    on_delivered: Callable[[str, str, bytes], None] | None,
    fence: Callable[[], None] | None = None,
) -> AuditOutcome:
    """Evaluate the rules on ``snapshot``, plan and queue the alerts, then write the run's final record.

    The one conclusion of every audit (single invocation or fanned out), so equal snapshots give
    equal reports. Safe to redo under the same run id after a crash anywhere in it. ``fence`` raises
    SupersededError when a later delivery took the run over: it is called before the alerts and before
    the final record, so two deliveries of one message never both alert or both conclude.
    """
    from licensing.rules import RuleContext, evaluate

    today = run.started_at.date()
    history: dict[str, list[SkuDay]] = {}
    states: Mapping[str, Any] = {}
    if store is not None:
        since = today - timedelta(days=settings.forecast_days)
        history = _history_with_today(store.sku_history(run.tenant_id, since=since), snapshot, today)
        states = store.alert_states(run.tenant_id)

    with telemetry.span("audit.evaluate", {"run.id": run.id}):
        ctx = RuleContext.from_settings(
            settings,
            now=run.started_at,
            # Forecasts need a history series; scoped runs see only part of the tenant.
            history=history if (store is not None and request.scope is Scope.TENANT) else None,
            processing_since=_processing_since(snapshot, states) if store is not None else None,
        )
        evaluation = evaluate(snapshot, ctx)

    status, errors = _status_and_errors(snapshot, evaluation.errors)
    stats = snapshot.stats
    report = AuditReport(
        run=replace(
            run,
            status=status,
            errors=errors,
            graph_requests=stats.requests,
            graph_throttled=stats.throttled,
            resource_units=stats.resource_units,
        ),
        skus=evaluation.skus,
        groups=evaluation.groups,
        findings=evaluation.findings,
        outcomes=evaluation.outcomes,
    )

    delivery: DeliveryResult | None = None
    if fence is not None:
        fence()
    if alerts and (settings.teams_enabled or settings.mail_enabled or store is not None):
        from licensing.alerts import Notifier

        with telemetry.span("audit.alert", {"run.id": run.id}):
            notifier = Notifier(
                settings,
                store=store,
                mail=graph if settings.mail_enabled else None,
                http_client=http_client,
                now=now,
                on_delivered=on_delivered,
            )
            delivery = await notifier.run(report, notify=request.notify)

    finished = replace(report, run=replace(report.run, finished_at=now()))
    if fence is not None:
        fence()
    if store is not None:
        with telemetry.span("audit.store", {"run.id": run.id, "findings": len(finished.findings)}):
            # SKU history is tenant-wide counters: one row per SKU and day, from tenant runs only.
            store.finish_run(finished, history_day=today if request.scope is Scope.TENANT else None)
        if request.trigger is Trigger.SCHEDULE:
            purge_expired(store, run.tenant_id, settings, now())
    return AuditOutcome(report=finished, history=history, delivery=delivery)


def purge_expired(store: AuditStore, tenant_id: str, settings: Settings, now: datetime) -> dict[str, int]:
    """Retention, done by the nightly run: runs, findings and history older than RETENTION_DAYS go, in batches.

    A purge that fails is logged and tried again the next night: it must never fail the audit it follows.
    """
    cutoff = now - timedelta(days=settings.retention_days)
    try:
        with telemetry.span("audit.retention", {"retention.days": settings.retention_days}):
            counts = store.purge(tenant_id, cutoff)
    except LicensingError as exc:
        log.warning("retention: could not delete data older than %s: %s", cutoff.date(), exc)
        return {}
    if any(counts.values()):
        log.info("retention: deleted %s older than %s", counts, cutoff.date())
    return counts
