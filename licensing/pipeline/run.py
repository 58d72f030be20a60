"""One audit run: admission done, read Graph, then hand over to the fan-out or conclude here.

A tenant audit in the queue pipeline first reads the overview (SKUs and the licensed-group list); above
``FANOUT_GROUPS`` groups it is handed to :mod:`licensing.pipeline.fanout`, below it the members are
read here. Either way the snapshot is built by the same merge and concluded by
:func:`licensing.pipeline.conclusion.evaluate_and_finish`. A request whose run is finished is not
repeated: re-delivery is normal for queues.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from licensing import telemetry
from licensing.errors import AuditError, GraphError, LicensingError, SupersededError
from licensing.model import UNKNOWN_TENANT, AuditReport, AuditRequest, RunInfo, RunStatus, Scope
from licensing.pipeline.conclusion import FINISHED, AuditOutcome, evaluate_and_finish
from licensing.pipeline.crosscheck import ScanSummary
from licensing.pipeline.runtime import Runtime, new_run_id

if TYPE_CHECKING:
    from licensing.pipeline.fanout import FanOut
    from licensing.store import AuditStore

__all__ = ["ProgressFn", "run_audit", "unexpected"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


async def run_audit(
    request: AuditRequest,
    runtime: Runtime,
    *,
    alerts: bool = True,
    progress: ProgressFn | None = None,
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

    settings, store, now = runtime.settings, runtime.store, runtime.now
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
            resumed = fanout.resume(run=early)
            if resumed is not None:
                return resumed
        if early is not None and early.status is not RunStatus.REJECTED:
            provisional = replace(provisional, id=early.id)
    # A tenant audit reads the overview, then members and the users scan apart, so the scan is summarised before
    # the merge keeps only the users the rules need (licensing.pipeline.crosscheck); the CLI reads so too.
    staged = request.scope is Scope.TENANT
    async with open_graph(settings, credential=runtime.credential) as graph:
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
            scan: ScanSummary | None = None
            try:
                if staged:
                    if fanout is not None and store is not None and len(snapshot.groups) > settings.fanout_groups:
                        run_span.set_attribute("run.fanned_out", True)
                        return await fanout.start(run=run, overview=snapshot, request=request)
                    with telemetry.span("audit.read_members", {"run.id": run.id}):
                        try:
                            async with task_group() as reads:
                                members = reads.create_task(read_members(graph, snapshot.groups, progress=progress))
                                users = reads.create_task(read_users(graph))
                        except GraphError as exc:
                            raise AuditError(f"could not read the tenant from Microsoft Graph: {exc}") from exc
                    # One client read everything here: its figures are the run's (the parts' would count twice).
                    parts = [members.result(), users.result()]
                    scan = ScanSummary.of(parts)  # before the merge keeps only the users the rules need
                    snapshot = replace(merge_snapshot(snapshot, parts), stats=graph.stats)
                if store is not None:
                    store.begin_run(run)
                outcome = await evaluate_and_finish(
                    run=run,
                    snapshot=snapshot,
                    request=request,
                    runtime=runtime,
                    graph=graph,
                    alerts=alerts,
                    fence=fence,
                    scan=scan,
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
