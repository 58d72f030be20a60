"""The alert policy over simulated nights: new, escalated, re-notified, resolved, excluded, scoped, replayed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from licensing.alerts import AlertPlan, EvaluatedScope, plan_alerts
from licensing.model import AlertState, AuditReport, Finding, RuleOutcome, RunStatus, Scope, Severity
from tests.unit.alerts_support import (
    E3,
    E5,
    b2b,
    gid,
    group_summary,
    license_error,
    nested,
    processing,
    report,
    seat_low,
    seat_shortage,
    settings,
    sku_summary,
)

NIGHT1 = datetime(2026, 1, 1, 2, 30, 4, tzinfo=UTC)


def night(n: int, jitter_s: int = 0) -> datetime:
    return NIGHT1 + timedelta(days=n - 1, seconds=jitter_s)


class Tenant:
    """Alert state carried from night to night, as the store would."""

    def __init__(self, **env: str) -> None:
        self.states: dict[str, AlertState] = {}
        self.settings = settings(**env)

    def run(self, findings: Sequence[Finding], when: datetime, run_id: str | None = None) -> AlertPlan:
        rep: AuditReport = report(findings, run_id=run_id or f"run-{when:%Y%m%d%H%M%S}", when=when)
        plan = plan_alerts(rep, self.states, self.settings, when)
        for row in plan.next_states:
            self.states[row.finding_id] = row
        return plan


def ids(findings: Sequence[Finding]) -> set[str]:
    return {f.id for f in findings}


def test_new_findings_at_or_above_the_minimum_go_out_and_every_finding_gets_a_state() -> None:
    t = Tenant()
    findings = [seat_shortage(), b2b(1, 1), processing(1)]
    plan = t.run(findings, night(1))
    assert ids(plan.new) == {findings[0].id, findings[1].id}  # info is below ALERT_MIN_SEVERITY=warning
    assert not plan.escalated and not plan.renotify and not plan.resolved
    assert {s.finding_id for s in plan.next_states} == ids(findings)
    sent = {s.finding_id: s for s in plan.next_states}
    assert sent[findings[0].id].last_notified == night(1)
    assert sent[findings[0].id].notified_severity is Severity.CRITICAL
    assert sent[findings[2].id].last_notified is None  # tracked (for 'stuck'), never sent
    assert all(s.first_seen == night(1) and s.status == "open" for s in plan.next_states)


def test_nights_dedup_renotify_escalate_resolve_and_reopen() -> None:
    t = Tenant()
    shortage, guest, err, proc = seat_shortage(), b2b(1, 1), license_error(1, 5, "DependencyViolation"), processing(2)

    p1 = t.run([shortage, guest, err, proc], night(1))
    assert ids(p1.new) == ids([shortage, guest, err])

    # Same evening, a queue-triggered run: nothing is due yet.
    p_evening = t.run([shortage, guest, err, proc], night(1) + timedelta(hours=15))
    assert p_evening.is_empty

    # Night 2 starts 5 s "earlier" than 24 h after the last notification: still re-notified (slack).
    p2 = t.run([shortage, guest, err, replace(proc, severity=Severity.WARNING)], night(2, jitter_s=-5))
    assert ids(p2.renotify) == ids([shortage, guest, err])
    assert ids(p2.escalated) == {proc.id}  # stuck processing: info (never sent) -> warning
    assert not p2.new
    assert t.states[proc.id].first_seen == night(1)  # first seen is kept across nights

    # Night 3: the B2B guest was removed and the license error became critical.
    worse = replace(err, severity=Severity.CRITICAL)
    p3 = t.run([shortage, worse, replace(proc, severity=Severity.WARNING)], night(3))
    assert ids(p3.escalated) == {err.id}
    assert [s.finding_id for s in p3.resolved] == [guest.id]
    assert t.states[guest.id].status == "resolved" and t.states[guest.id].resolved_at == night(3)
    assert ids(p3.renotify) == {shortage.id, proc.id}

    # Night 4: nothing else changed; only 24 h re-notifications, no second "resolved".
    p4 = t.run([shortage, worse, replace(proc, severity=Severity.WARNING)], night(4))
    assert not p4.resolved and not p4.new and not p4.escalated

    # Night 5: the guest is back: a new finding again, first seen now.
    p5 = t.run([shortage, guest, worse, replace(proc, severity=Severity.WARNING)], night(5))
    assert ids(p5.new) == {guest.id}
    assert t.states[guest.id].first_seen == night(5) and t.states[guest.id].status == "open"


def test_the_same_run_planned_twice_sends_nothing_twice() -> None:
    t = Tenant()
    findings = [seat_shortage(), b2b(1, 1)]
    first = t.run(findings, night(1), run_id="run-A")
    assert len(first.new) == 2
    again = t.run(findings, night(1) + timedelta(minutes=5), run_id="run-A")  # queue redelivery, same run id
    assert again.is_empty and not again.next_states
    # Even days later (a poison-queue replay), a redone run sends nothing it already planned.
    late = t.run(findings, night(4), run_id="run-A")
    assert late.is_empty


def test_a_redone_run_after_a_crash_before_the_state_commit_plans_the_same_alerts() -> None:
    t = Tenant()
    findings = [seat_shortage(), b2b(1, 1)]
    rep = report(findings, run_id="run-X", when=night(1))
    a = plan_alerts(rep, t.states, t.settings, night(1))
    b = plan_alerts(rep, t.states, t.settings, night(1))  # nothing committed in between
    assert a == b


def test_excluded_skus_never_alert_but_are_tracked() -> None:
    t = Tenant(ALERT_EXCLUDE_SKUS=f"enterprisepack,{E5.upper()}")
    findings = [seat_shortage(), seat_low(), b2b(1, 1)]
    plan = t.run(findings, night(1))
    assert ids(plan.new) == {findings[2].id}
    assert plan.excluded == 2
    assert {s.finding_id for s in plan.next_states} == ids(findings)
    assert all(t.states[f.id].last_notified is None for f in findings[:2])
    # Excluded and never sent: no "resolved" either.
    plan2 = t.run([findings[2]], night(2))
    assert not plan2.resolved
    assert t.states[findings[0].id].status == "resolved"


def test_minimum_severity_critical_sends_only_critical() -> None:
    t = Tenant(ALERT_MIN_SEVERITY="critical")
    findings = [seat_shortage(), seat_low(), license_error(1, 1), license_error(1, 2, "Other")]
    plan = t.run(findings, night(1))
    assert ids(plan.new) == {findings[0].id, findings[2].id}


def test_renotify_period_is_respected() -> None:
    t = Tenant(ALERT_RENOTIFY_HOURS="72")
    f = [b2b(1, 1)]
    t.run(f, night(1))
    assert t.run(f, night(2)).is_empty
    assert t.run(f, night(3)).is_empty
    assert ids(t.run(f, night(4)).renotify) == ids(f)


def test_without_a_store_every_finding_goes_out_on_every_run() -> None:
    s = settings()
    findings = [seat_shortage(), b2b(1, 1)]
    for n in (1, 2):
        plan = plan_alerts(report(findings, run_id=f"r{n}", when=night(n)), {}, s, night(n))
        assert ids(plan.new) == ids(findings)


def test_notify_false_records_sightings_and_sends_later() -> None:
    t = Tenant()
    f = [b2b(1, 1)]
    rep = report(f, run_id="quiet", when=night(1))
    plan = plan_alerts(rep, t.states, t.settings, night(1), notify=False)
    for row in plan.next_states:
        t.states[row.finding_id] = row
    assert t.states[f[0].id].last_notified is None and t.states[f[0].id].first_seen == night(1)
    later = t.run(f, night(1) + timedelta(hours=1))
    assert ids(later.new) == ids(f)
    assert t.states[f[0].id].first_seen == night(1)


def test_resolved_only_what_was_notified_and_naive_store_datetimes_work() -> None:
    t = Tenant()
    guest, proc = b2b(1, 1), processing(1)
    t.run([guest, proc], night(1))
    # A store that returns naive UTC datetimes.
    t.states = {
        k: replace(
            v,
            first_seen=v.first_seen.replace(tzinfo=None),
            last_seen=v.last_seen.replace(tzinfo=None),
            last_notified=v.last_notified.replace(tzinfo=None) if v.last_notified else None,
        )
        for k, v in t.states.items()
    }
    assert ids(t.run([guest, proc], night(2)).renotify) == {guest.id}
    plan = t.run([], night(3))
    assert [s.finding_id for s in plan.resolved] == [guest.id]  # the info finding resolves silently
    assert t.states[proc.id].status == "resolved"


def _open_states(findings: Sequence[Finding]) -> dict[str, AlertState]:
    t = Tenant()
    t.run(findings, night(1))
    return t.states


def test_a_group_scoped_run_resolves_only_what_it_looked_at() -> None:
    guest_g1, guest_g2 = b2b(1, 1), b2b(2, 2)
    proc_g1, proc_g2 = processing(1, Severity.WARNING), processing(2, Severity.WARNING)
    shortage_e3, low_e5 = seat_shortage(), seat_low()
    states = _open_states([guest_g1, guest_g2, proc_g1, proc_g2, shortage_e3, low_e5])
    # Group 1 only, which assigns E3: nothing found there any more.
    rep = report(
        [],
        run_id="scoped",
        when=night(1) + timedelta(hours=2),
        scope=Scope.GROUP,
        scope_id=gid(1),
        skus=[sku_summary(E3, "ENTERPRISEPACK", 100, 50)],
        groups=[group_summary(1)],
    )
    plan = plan_alerts(rep, states, settings(), night(1) + timedelta(hours=2))
    resolved = {s.finding_id for s in plan.resolved}
    # Computable from the report: group 1's processing state, E3's seat finding.
    assert resolved == {proc_g1.id, shortage_e3.id}
    # Not looked at (other group, other SKU) or not enumerable (group + user subjects): left open.
    untouched = {guest_g1.id, guest_g2.id, proc_g2.id, low_e5.id}
    assert not untouched & {s.finding_id for s in plan.next_states}


def test_a_partial_run_leaves_unreadable_groups_and_rules_not_evaluated_alone() -> None:
    guest, proc1, proc2, nest = (
        b2b(1, 1),
        processing(1, Severity.WARNING),
        processing(2, Severity.WARNING),
        nested(2, 3),
    )
    states = _open_states([guest, proc1, proc2, nest])
    rep = report(
        [],
        run_id="partial",
        when=night(2),
        status=RunStatus.PARTIAL,
        errors=(f"members {gid(2)}: 404 the group was deleted during the run",),
    )
    plan = plan_alerts(rep, states, settings(), night(2))
    assert {s.finding_id for s in plan.resolved} == {proc1.id}

    # A complete run whose nested-group rule could not be evaluated keeps those open.
    outcomes = [RuleOutcome("nested_group", "not_evaluated", 0, "groups could not be read")] + [
        RuleOutcome(k, "passed") for k in ("b2b_member", "processing_incomplete")
    ]
    complete = report([], run_id="full", when=night(2), outcomes=outcomes)
    plan2 = plan_alerts(complete, states, settings(), night(2))
    assert {s.finding_id for s in plan2.resolved} == {guest.id, proc1.id, proc2.id}


def test_an_explicit_scope_overrides_the_derived_one() -> None:
    guest = b2b(1, 1)
    states = _open_states([guest])
    rep = report([], run_id="n2", when=night(2))
    assert not plan_alerts(rep, states, settings(), night(2), evaluated_scope=EvaluatedScope.nothing()).resolved
    assert plan_alerts(rep, states, settings(), night(2), evaluated_scope=EvaluatedScope.everything()).resolved


def test_five_thousand_findings_plan_quickly_and_labels_are_consistent() -> None:
    findings = [b2b(g, u) for g in range(50) for u in range(100)]
    t = Tenant()
    plan = t.run(findings, night(1))
    assert len(plan.new) == 5000 and len(plan.next_states) == 5000
    labels = plan.labels()
    assert set(labels.values()) == {"new"}
    plan2 = t.run(findings[:4000], night(2))
    assert len(plan2.renotify) == 4000 and len(plan2.resolved) == 1000


def test_by_default_criticals_repeat_daily_and_warnings_weekly() -> None:
    t = Tenant(ALERT_RENOTIFY_HOURS="")  # unset: the per-severity defaults (24 h / 168 h)
    critical, warning = seat_shortage(), b2b(1, 1)
    assert ids(t.run([critical, warning], night(1)).new) == ids([critical, warning])
    for n in range(2, 8):
        assert ids(t.run([critical, warning], night(n)).renotify) == ids([critical]), n
    assert ids(t.run([critical, warning], night(8)).renotify) == ids([critical, warning])


def test_a_second_night_with_nothing_new_and_no_reminder_due_sends_no_digest() -> None:
    from licensing.alerts import build_digest

    t = Tenant(ALERT_RENOTIFY_HOURS="")
    open_warnings = [b2b(1, 1), nested(2, 3), seat_low()]
    first = t.run(open_warnings, night(1))
    assert build_digest(report(open_warnings, when=night(1)), first, t.settings) is not None
    second = t.run(open_warnings, night(2))
    assert second.is_empty
    assert build_digest(report(open_warnings, run_id="n2", when=night(2)), second, t.settings) is None
