"""The alert policy: what to send for a run's findings given the alert state (a pure function).

New findings and escalations at or above ``ALERT_MIN_SEVERITY`` go out at once; open ones again after
their severity's period (``ALERT_RENOTIFY_HOURS_CRITICAL`` / ``_WARNING``: Settings.renotify_hours);
resolved ones (open in the state, absent from the run's findings, and within what the run looked at) in a
short section. SKUs in ``ALERT_EXCLUDE_SKUS`` never alert. :func:`plan_alerts` also returns the alert-state
rows to write, so that the same run planned twice (a redelivered queue message) sends nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final

from licensing.kinds import GROUP_SUBJECT_KINDS, SKU_SUBJECT_KINDS
from licensing.model import (
    AlertState,
    AlertStatus,
    AuditReport,
    Finding,
    FindingKind,
    OutcomeStatus,
    RunStatus,
    Scope,
    Severity,
    finding_id,
)
from licensing.settings import Settings

__all__ = ["AlertPlan", "EvaluatedScope", "is_excluded", "plan_alerts"]

OPEN: Final = AlertStatus.OPEN
RESOLVED: Final = AlertStatus.RESOLVED
SUPPRESSED: Final = AlertStatus.SUPPRESSED

# Kinds whose finding id is computable from what a report lists (one SKU, or one group: the catalogue's
# SKU_SUBJECT_KINDS and GROUP_SUBJECT_KINDS): a scoped or partial run can resolve these for the SKUs/groups it
# did read. Multi-part subjects (group + user, ...) cannot be enumerated from the report, so only a complete
# tenant run resolves them.
_EVALUATED: Final = frozenset({OutcomeStatus.PASSED, OutcomeStatus.FAILED})


def _utc(value: datetime) -> datetime:
    # The store may hand back naive datetimes (Azurite, older rows): they are UTC by contract.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@dataclass(frozen=True, slots=True)
class EvaluatedScope:
    """What a run looked at, so that nothing it did not look at is called resolved.

    ``kinds``: the finding kinds whose rule ran. ``complete``: a tenant-wide run that read everything,
    so every open state of those kinds absent from the findings is resolved. Otherwise only the states
    whose ids are in ``finding_ids`` (the SKUs and groups the run did read) may resolve.
    """

    kinds: frozenset[str]
    complete: bool
    finding_ids: frozenset[str] = frozenset()

    def covers(self, state: AlertState) -> bool:
        if state.kind not in self.kinds:
            return False
        return self.complete or state.finding_id in self.finding_ids

    @classmethod
    def everything(cls) -> EvaluatedScope:
        return cls(kinds=frozenset(k.value for k in FindingKind), complete=True)

    @classmethod
    def nothing(cls) -> EvaluatedScope:
        return cls(kinds=frozenset(), complete=False)

    @classmethod
    def from_report(cls, report: AuditReport) -> EvaluatedScope:
        """Derive the scope from the run (scope, status, errors) and the rules' outcomes."""
        run = report.run
        clean = run.status is RunStatus.SUCCEEDED and not run.errors
        if report.outcomes:
            kinds = frozenset(o.rule_id for o in report.outcomes if o.status in _EVALUATED)
        else:  # a report without outcomes (older producers): trust only a clean run
            kinds = frozenset(k.value for k in FindingKind) if clean else frozenset()
        if clean and run.scope is Scope.TENANT:
            return cls(kinds=kinds, complete=True)
        # What could not be read is named in the run errors and rule reasons (with its id): those SKUs and
        # groups are left alone. Ids are GUIDs in Graph, so a substring test is precise enough.
        caveats = {o.rule_id: o.reason for o in report.outcomes}
        problems = " ".join([*run.errors, *(reason or "" for reason in caveats.values())]).lower()
        ids: set[str] = set()
        for kind in kinds & SKU_SUBJECT_KINDS:
            if caveats.get(kind):  # e.g. "waiting users may be undercounted": absence proves nothing
                continue
            ids.update(finding_id(kind, s.sku_id) for s in report.skus if s.sku_id.lower() not in problems)
        for kind in kinds & GROUP_SUBJECT_KINDS:
            ids.update(finding_id(kind, g.id) for g in report.groups if g.id.lower() not in problems)
        return cls(kinds=kinds, complete=False, finding_ids=frozenset(ids))


@dataclass(frozen=True, slots=True)
class AlertPlan:
    """What to send now, and the alert-state rows to write (first/last seen, notified, resolved)."""

    new: tuple[Finding, ...] = ()
    escalated: tuple[Finding, ...] = ()
    renotify: tuple[Finding, ...] = ()
    resolved: tuple[AlertState, ...] = ()
    next_states: tuple[AlertState, ...] = ()
    excluded: int = 0  # findings at or above the minimum severity not sent because their SKU is excluded

    @property
    def is_empty(self) -> bool:
        return not (self.new or self.escalated or self.renotify or self.resolved)

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Everything to show in the digest, in the report's order (severity first)."""
        return (*self.new, *self.escalated, *self.renotify)

    def labels(self) -> dict[str, str]:
        """Finding id -> ``new`` | ``escalated`` | ``open`` (a reminder of something still open)."""
        out = dict.fromkeys((f.id for f in self.renotify), "open")
        out.update(dict.fromkeys((f.id for f in self.escalated), "escalated"))
        out.update(dict.fromkeys((f.id for f in self.new), "new"))
        return out


def is_excluded(finding: Finding, excluded: Iterable[str]) -> bool:
    """True when the finding's SKU (part number or skuId, case-insensitive) is in ``ALERT_EXCLUDE_SKUS``."""
    wanted = {s.casefold() for s in excluded}
    if not wanted:
        return False
    return any(v and v.casefold() in wanted for v in (finding.sku_id, finding.sku_part_number))


def _renotify_due(last: datetime, now: datetime, hours: int) -> bool:
    period = timedelta(hours=hours)
    # Nightly runs start a few seconds earlier or later each night: without some slack a 24 h period
    # would skip every other night. Up to an hour, and never more than a tenth of the period.
    slack = min(timedelta(hours=1), period / 10)
    return now - _utc(last) >= period - slack


def plan_alerts(
    report: AuditReport,
    states: Mapping[str, AlertState],
    settings: Settings,
    now: datetime,
    *,
    evaluated_scope: EvaluatedScope | None = None,
    notify: bool = True,
) -> AlertPlan:
    """Decide what to send for ``report`` against the alert ``states`` (finding id -> state).

    ``notify=False`` (no channel, or a request with ``notify: false``) still records what was seen and
    resolved but marks nothing as notified, so the findings go out once a channel is there; the lists
    say what would have been sent.
    Every finding gets a state row, also those below the minimum severity: their first-seen time is
    what escalates a stuck ``processing_incomplete``.
    """
    now = _utc(now)
    scope = evaluated_scope if evaluated_scope is not None else EvaluatedScope.from_report(report)
    run_id = report.run.id
    minimum = settings.alert_min_severity
    new: list[Finding] = []
    escalated: list[Finding] = []
    renotify: list[Finding] = []
    resolved: list[AlertState] = []
    rows: list[AlertState] = []
    excluded = 0
    seen: set[str] = set()

    for finding in report.findings:
        if finding.id in seen:
            continue
        seen.add(finding.id)
        severity = Severity(finding.severity)
        state = states.get(finding.id)
        if state is not None and state.last_run_id == run_id:
            continue  # this run was already planned and committed: a redelivery sends nothing twice
        if finding.suppressed is not None:
            # An admin suppressed it: never alerted. The row says so, and when the suppression ends (expired,
            # removed) the state is not open, so the finding comes back as new.
            rows.append(
                AlertState(
                    finding_id=finding.id,
                    kind=finding.kind,
                    severity=severity,
                    first_seen=state.first_seen if state is not None else now,
                    last_seen=now,
                    last_notified=state.last_notified if state is not None else None,
                    notified_severity=state.notified_severity if state is not None else None,
                    status=SUPPRESSED,
                    last_run_id=run_id,
                    etag=state.etag if state is not None else None,
                )
            )
            continue
        reopened = state is None or state.status != OPEN
        category: list[Finding] | None = None
        if severity.at_least(minimum):
            if is_excluded(finding, settings.alert_exclude_skus):
                excluded += 1
            elif reopened:
                category = new
            else:
                assert state is not None
                known = state.notified_severity if state.last_notified is not None else None
                if known is None:
                    # Seen before but never sent (below the minimum then, or no channel): news now,
                    # an escalation if it was seen at a lower severity.
                    category = escalated if Severity(state.severity).rank < severity.rank else new
                elif Severity(known).rank < severity.rank:
                    category = escalated
                elif state.last_notified is not None and _renotify_due(
                    state.last_notified, now, settings.renotify_hours(severity)
                ):
                    category = renotify
        if category is not None:
            category.append(finding)
        sent = category is not None and notify
        rows.append(
            AlertState(
                finding_id=finding.id,
                kind=finding.kind,
                severity=severity,
                first_seen=now if reopened or state is None else state.first_seen,
                last_seen=now,
                last_notified=now if sent else (None if reopened or state is None else state.last_notified),
                notified_severity=severity
                if sent
                else (None if reopened or state is None else state.notified_severity),
                status=OPEN,
                resolved_at=None,
                last_run_id=run_id,
                etag=state.etag if state is not None else None,
            )
        )

    for fid, state in states.items():
        if fid in seen or state.last_run_id == run_id or not scope.covers(state):
            continue
        if state.status == SUPPRESSED:  # gone while suppressed: closed without an all-clear nobody asked for
            rows.append(replace(state, status=RESOLVED, resolved_at=now, last_run_id=run_id))
            continue
        if state.status != OPEN:
            continue
        rows.append(replace(state, status=RESOLVED, resolved_at=now, last_run_id=run_id))
        if state.last_notified is not None:
            resolved.append(state)  # only what the admins were told about is worth an all-clear

    return AlertPlan(
        new=tuple(new),
        escalated=tuple(escalated),
        renotify=tuple(renotify),
        resolved=tuple(sorted(resolved, key=lambda s: (-Severity(s.severity).rank, s.kind, s.finding_id))),
        next_states=tuple(rows),
        excluded=excluded,
    )
