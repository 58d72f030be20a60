"""The conclusion of every run: evaluate the rules, plan and queue the alerts, write the final record.

A single-invocation audit (:mod:`licensing.pipeline.run`) and a fanned-out one (the final step of
:mod:`licensing.pipeline.fanout`) both end here, so equal snapshots give equal reports. The order is
chosen for crash safety: alerts are planned, queued in the outbox and their state committed *before*
the run is marked finished; a run that crashes anywhere is redone under the same run id (findings are
upserts, outbox ids are stable, the alert state already says what was sent).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from licensing import telemetry
from licensing.changes import Product, last_applied
from licensing.errors import LicensingError
from licensing.model import (
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
from licensing.pipeline.crosscheck import ScanSummary, cross_check, not_evaluated
from licensing.pipeline.runtime import Runtime
from licensing.settings import Settings

if TYPE_CHECKING:
    from licensing.alerts import DeliveryResult
    from licensing.store import AuditStore
    from licensing.suppressions import DigestNotes

__all__ = ["FINISHED", "AuditOutcome", "evaluate_and_finish", "purge_expired"]

log = logging.getLogger(__name__)

# Runs whose work stands for their request: a redelivery of the same request is skipped. A rejected run
# never stands in for another request (issue 16, item 2): it did no work.
FINISHED = frozenset({RunStatus.SUCCEEDED, RunStatus.PARTIAL})


@dataclass(frozen=True, slots=True)
class AuditOutcome:
    """What a run produced; ``skipped`` when the request had already been completed."""

    report: AuditReport
    history: Mapping[str, Sequence[SkuDay]]
    delivery: DeliveryResult | None = None
    skipped: bool = False
    fanned_out: bool = False  # handed to the chunk queue: the report's run is still ``running``
    report_url: str | None = None  # where the run's report was published (REPORT_CONTAINER), for the last line


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


def _previous_members(store: AuditStore, run: RunInfo) -> dict[str, int]:
    """Member counts of the licensed groups in the last finished tenant run before this one (licensed_group_shrank);
    empty when the store has none (the rule then says so in the report). Found by a query on scope, so any number
    of group, SKU, plan or junk runs in between cannot push it out of sight (issue 27, item 6)."""
    earlier = store.last_tenant_run(run.tenant_id, before=run.started_at, exclude=run.id)
    return {g.id: g.members for g in store.run_groups(earlier.id)} if earlier is not None else {}


def _status_and_errors(snapshot: TenantSnapshot, errors: Sequence[str]) -> tuple[RunStatus, tuple[str, ...]]:
    lines: list[str] = []
    for part in snapshot.unreadable:
        subject = f" {part.subject_id}" if part.subject_id else ""
        lines.append(f"{part.what}{subject}: {part.reason}")
    lines.extend(errors)
    unique = tuple(dict.fromkeys(lines))
    return (RunStatus.PARTIAL if unique else RunStatus.SUCCEEDED), unique


async def evaluate_and_finish(
    *,
    run: RunInfo,
    snapshot: TenantSnapshot,
    request: AuditRequest,
    runtime: Runtime,
    graph: Any,
    alerts: bool,
    fence: Callable[[], None] | None = None,
    scan: ScanSummary | None = None,
) -> AuditOutcome:
    """Evaluate the rules on ``snapshot``, plan and queue the alerts, then write the run's final record.

    The one conclusion of every audit (single invocation or fanned out), so equal snapshots give
    equal reports. Safe to redo under the same run id after a crash anywhere in it. ``fence`` raises
    SupersededError when a later delivery took the run over: it is called before the alerts and before
    the final record, so two deliveries of one message never both alert or both conclude.
    """
    from licensing.rules import RuleContext, evaluate

    settings, store, now = runtime.settings, runtime.store, runtime.now
    today = run.started_at.date()
    history: dict[str, list[SkuDay]] = {}
    states: Mapping[str, Any] = {}
    previous: dict[str, int] | None = None
    applied: dict[str, tuple[Product, ...]] | None = None
    if store is not None:
        since = today - timedelta(days=settings.forecast_days)
        history = _history_with_today(store.sku_history(run.tenant_id, since=since), snapshot, today)
        states = store.alert_states(run.tenant_id)
        if request.scope is Scope.TENANT:
            previous = _previous_members(store, run)
            # license_drift: only with a journal of licensing-audit apply (no journal, no drift, no noise).
            applied = {g: c.after for g, c in last_applied(store.license_changes(run.tenant_id)).items()} or None
    # A part that contradicts the others is unreadable (issue 27, item 2): the run is partial, not an all-clear.
    snapshot = cross_check(snapshot, scan, len(previous) if previous else None)

    with telemetry.span("audit.evaluate", {"run.id": run.id}):
        ctx = RuleContext.from_settings(
            settings,
            now=run.started_at,
            # Forecasts need a history series; scoped runs see only part of the tenant.
            history=history if (store is not None and request.scope is Scope.TENANT) else None,
            processing_since=_processing_since(snapshot, states) if store is not None else None,
            previous_members=previous,
            applied=applied,
        )
        # What was not read is not evaluated: nothing raised from it, nothing of it resolved (item 7).
        evaluation = not_evaluated(evaluate(snapshot, ctx), snapshot)
    findings = evaluation.findings
    notes: DigestNotes | None = None
    if store is not None:
        from licensing.suppressions import apply_suppressions, digest_notes

        # Marked, not dropped: the report shows what is suppressed, with why and until when; alerts skip them.
        suppressions = store.suppressions(run.tenant_id)
        findings = apply_suppressions(findings, suppressions, now())
        notes = digest_notes(suppressions, findings, now())

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
        findings=findings,
        outcomes=evaluation.outcomes,
    )

    from licensing.pipeline.publishing import publish_report

    # Published before the alerts, so that the card and the mail can link to it (ALERT_REPORT_URL wins when set).
    report_url = publish_report(replace(report, run=replace(report.run, finished_at=now())), history, runtime)
    if report_url and not settings.alert_report_url:
        settings = replace(settings, alert_report_url=report_url)
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
                http_client=runtime.http_client,
                now=now,
                on_delivered=runtime.on_delivered,
            )
            told = (*notes.news, *notes.standing) if notes is not None else ()
            delivery = await notifier.run(report, notify=request.notify, notes=told, news=bool(notes and notes.news))
        if store is not None and notes is not None and notes.news and delivery is not None and delivery.queued:
            # In the outbox, so told at least once: not told again by the next digest.
            store.mark_suppressions_announced(run.tenant_id, notes.added, notes.removed)

    finished = replace(report, run=replace(report.run, finished_at=now()))
    if fence is not None:
        fence()
    if store is not None:
        with telemetry.span("audit.store", {"run.id": run.id, "findings": len(finished.findings)}):
            # SKU history is tenant-wide counters: one row per SKU and day, from tenant runs only.
            store.finish_run(finished, history_day=today if request.scope is Scope.TENANT else None)
        if request.trigger is Trigger.SCHEDULE:
            purge_expired(store, run.tenant_id, settings, now())
    return AuditOutcome(report=finished, history=history, delivery=delivery, report_url=report_url)


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
