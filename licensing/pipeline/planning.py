"""A queued plan request (scope ``plan``): assess the group, store the answer with its run, tell the channels.

The queue form of ``licensing-audit plan`` (docs/plan.md): a runbook can ask before it assigns. The run is
an ``AuditRuns`` row with scope ``plan`` and the group as its subject; the answer (``licensing-audit-plan/1``,
at most :data:`STORED_PER_KIND` reasons of each kind) is kept in the run's extra document; a short card and
mail go through the alert outbox. The same request id is answered once (the run's request key).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Final

from licensing.errors import AuditError, BadRequestError, GraphError, LicensingError
from licensing.model import (
    UNKNOWN_TENANT,
    AuditReport,
    AuditRequest,
    Channel,
    OutboxItem,
    RunInfo,
    RunStatus,
    Scope,
)
from licensing.pipeline.conclusion import FINISHED
from licensing.pipeline.runtime import Runtime, new_run_id

if TYPE_CHECKING:
    from licensing.alerts.notifier import DeliveryResult
    from licensing.plan import Plan

__all__ = ["STORED_PER_KIND", "PlanOutcome", "run_plan"]

log = logging.getLogger(__name__)

STORED_PER_KIND: Final = 50  # reasons of each kind kept with the run; the CLI's --json has them all


@dataclass(frozen=True, slots=True)
class PlanOutcome:
    run: RunInfo
    plan: Plan | None  # None when the request was answered before (``skipped``)
    delivery: DeliveryResult | None = None
    skipped: bool = False


def _items(run: RunInfo, plan: Plan, runtime: Runtime) -> list[OutboxItem]:
    from licensing.alerts.notice import Notice, notice_card, notice_mail
    from licensing.plan import Verdict, summary_lines

    settings, now = runtime.settings, runtime.now()
    lines = summary_lines(plan)
    title = f"Plan for {plan.group.display_name or plan.group.id}: {plan.verdict.value}"
    good = plan.verdict is Verdict.SUITABLE
    by = f" (asked by {run.requested_by})" if run.requested_by else ""
    items: list[OutboxItem] = []
    if settings.teams_enabled:
        ref = f"{run.id}.teams.plan"
        notice = Notice(title + by, tuple(lines[1:]), good, ref, run.tenant_name, plan.group.id, settings.graph_cloud)
        items.append(OutboxItem(Channel.TEAMS, ref, run.id, notice_card(notice), now))
    if settings.mail_enabled and settings.alert_mail_to:
        import orjson

        ref = f"{run.id}.mail.plan"
        notice = Notice(title + by, tuple(lines[1:]), good, ref, run.tenant_name, plan.group.id, settings.graph_cloud)
        items.append(
            OutboxItem(Channel.MAIL, ref, run.id, orjson.dumps(notice_mail(notice, settings.alert_mail_to)), now)
        )
    return items


def _answered_before(request: AuditRequest, runtime: Runtime) -> RunInfo | None:
    """The finished run that answered this request already, found before Graph is read (a redelivery costs
    nothing); None when there is none, or when the tenant is not known before reading."""
    store = runtime.store
    tenant = runtime.settings.azure_tenant_id or (store.default_tenant_id() if store is not None else None)
    if store is None or not tenant or not request.request_id:
        return None
    prior = store.run_for_request(tenant, request.request_id, key=request.key)
    return prior if prior is not None and prior.status in FINISHED else None


def _over_rate(request: AuditRequest, runtime: Runtime) -> str | None:
    """Why this plan may not run now (``PLAN_MAX_PER_HOUR`` answered in the last hour), or None."""
    store, settings = runtime.store, runtime.settings
    tenant = settings.azure_tenant_id or (store.default_tenant_id() if store is not None else None)
    if store is None or not tenant:
        return None
    since = runtime.now() - timedelta(hours=1)
    recent = store.count_runs(tenant, scope=Scope.PLAN, since=since, statuses=FINISHED)
    if recent >= settings.plan_max_per_hour:
        return (
            f"{recent} plan requests were answered in the last hour (PLAN_MAX_PER_HOUR={settings.plan_max_per_hour}): "
            "send this one again later"
        )
    return None


async def run_plan(request: AuditRequest, runtime: Runtime, *, fence: Callable[[], None] | None = None) -> PlanOutcome:
    """Answer one plan request. BadRequestError for a group or SKU the tenant lacks, or over the hourly bound (the
    handler rejects it); AuditError when Graph could not be read (the queue retries); SupersededError when a later
    delivery took the request over (``fence``, checked before the notice is queued and before the final record)."""
    from licensing.alerts import Notifier
    from licensing.graph import open_graph
    from licensing.plan import plan_group, plan_to_plain

    settings, store, now = runtime.settings, runtime.store, runtime.now
    if not request.group_id or not request.skus:
        raise BadRequestError("a plan request needs group_id and skus")
    answered = _answered_before(request, runtime)
    if answered is not None:
        log.info("plan request %s already answered by run %s; Graph not read", request.request_id, answered.id)
        return PlanOutcome(answered, None, skipped=True)
    too_many = _over_rate(request, runtime)
    if too_many is not None:
        raise BadRequestError(too_many)
    started = now()
    run = RunInfo(
        id=new_run_id(started),
        tenant_id=settings.azure_tenant_id or UNKNOWN_TENANT,
        trigger=request.trigger,
        scope=request.scope,
        scope_id=request.group_id,
        started_at=started,
        request_id=request.request_id,
        requested_by=request.requested_by,
    )
    async with open_graph(settings, credential=runtime.credential) as graph:
        try:
            plan = await plan_group(graph, request.group_id, request.skus)
        except (BadRequestError, AuditError):
            raise
        except GraphError as exc:
            raise AuditError(f"could not read the group from Microsoft Graph: {exc}") from exc
        stats = graph.stats
        run = replace(run, tenant_id=plan.tenant_id, tenant_name=plan.tenant_name)
        if store is not None and request.request_id:
            prior = store.run_for_request(run.tenant_id, request.request_id, key=request.key)
            if prior is not None and prior.status in FINISHED:
                log.info("plan request %s already answered by run %s", request.request_id, prior.id)
                return PlanOutcome(prior, None, skipped=True)
            if prior is not None and prior.status is not RunStatus.REJECTED:
                run = replace(run, id=prior.id)  # a crashed attempt is redone under its own id
        run = replace(
            run,
            status=RunStatus.SUCCEEDED,
            graph_requests=stats.requests,
            graph_throttled=stats.throttled,
            resource_units=stats.resource_units,
        )
        queued_before = False
        if store is not None:
            store.begin_run(run)
            queued_before = bool(store.run_extra(run.tenant_id, run.id).get("notice_queued"))
            store.save_plan(run.tenant_id, run.id, plan_to_plain(plan, per_kind=STORED_PER_KIND))
        delivery: DeliveryResult | None = None
        # A redo after the notice was queued (a crash or kill -9 after delivery, a takeover) queues nothing again:
        # what is still in the outbox is replayed by the next run, what was delivered is not sent twice.
        items = _items(run, plan, runtime) if request.notify and not queued_before else []
        if fence is not None:
            fence()
        if items and store is not None:
            store.update_run_extra(run.tenant_id, run.id, lambda extra: {**extra, "notice_queued": True})
        if items:
            notifier = Notifier(
                settings,
                store=store,
                mail=graph if settings.mail_enabled else None,
                http_client=runtime.http_client,
                now=now,
                on_delivered=runtime.on_delivered,
            )
            try:
                delivery = await notifier.deliver_items(items)
            except LicensingError as exc:  # the answer is stored: a channel problem does not undo it
                log.error("plan %s: the answer could not be queued for delivery: %s", run.id, exc)
    finished = replace(run, finished_at=now())
    if fence is not None:
        fence()
    if store is not None:
        store.finish_run(AuditReport(run=finished))
    log.info("plan %s for group %s: %s", finished.id, plan.group.id, plan.verdict.value)
    return PlanOutcome(finished, plan, delivery)
