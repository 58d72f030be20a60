"""licensing.suppressions: what a suppression covers and the checks a new one passes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from licensing.alerts import plan_alerts
from licensing.errors import BadRequestError
from licensing.model import AlertStatus, Severity
from licensing.suppressions import (
    Applied,
    Suppression,
    SuppressionRequest,
    apply_request,
    apply_suppressions,
    covers,
    describe_all,
    digest_notes,
    end_words,
    new_suppression,
    parse_until,
)
from tests.factories import sku_summary
from tests.unit.alerts_support import E3, b2b, gid, license_error, report, seat_shortage, settings, uid

NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
TENANT = "t1"


def suppression(**fields: object) -> Suppression:
    base: dict[str, object] = {
        "id": "s0123456789ab",
        "tenant_id": TENANT,
        "reason": "accepted",
        "created_by": "cli:ana",
        "created_at": NOW - timedelta(days=1),
        "severity": Severity.CRITICAL,
    }
    base.update(fields)
    return Suppression(**base)  # type: ignore[arg-type]


def test_what_a_suppression_covers() -> None:
    guest, err, short = b2b(1, 1), license_error(1, 1), seat_shortage()
    by_user = suppression(user_id=uid(1))
    assert covers(by_user, guest, NOW) and covers(by_user, err, NOW) and not covers(by_user, short, NOW)
    narrowed = suppression(user_id=uid(1), kind="b2b_member")
    assert covers(narrowed, guest, NOW) and not covers(narrowed, err, NOW)
    assert covers(suppression(group_id=gid(1)), err, NOW)
    assert covers(suppression(sku="enterprisepack"), short, NOW) and covers(suppression(sku=E3), short, NOW)
    assert covers(suppression(finding_id=guest.id), guest, NOW) and not covers(
        suppression(finding_id=guest.id), err, NOW
    )
    # Ended: expired or removed.
    assert not covers(suppression(user_id=uid(1), until=NOW), guest, NOW)
    assert not covers(suppression(user_id=uid(1), removed_at=NOW), guest, NOW)


def test_marked_findings_keep_everything_else() -> None:
    guest = b2b(1, 1)
    [marked, other] = apply_suppressions(
        [guest, seat_shortage()], [suppression(user_id=uid(1), until=NOW + timedelta(days=3))], NOW
    )
    assert marked.suppressed is not None and (marked.suppressed.reason, marked.suppressed.by) == ("accepted", "cli:ana")
    assert marked.id == guest.id and marked.message == guest.message and other.suppressed is None


def known() -> dict[str, str]:
    return {b2b(1, 1).id: "b2b_member"}


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        (SuppressionRequest(reason="x", finding_id="0" * 32), "no finding"),
        (SuppressionRequest(reason="x", finding_id="not-an-id"), "no finding"),
        (SuppressionRequest(reason="x", user_id="bob"), "is not a GUID"),
        (SuppressionRequest(reason="x", sku="VISIO_NOPE"), "the tenant has no subscribed SKU 'VISIO_NOPE'"),
        (SuppressionRequest(reason="x", sku="'; drop"), "neither a skuId GUID nor a skuPartNumber"),
        (SuppressionRequest(reason="x", group_id=gid(1), kind="nope"), "is not a finding kind"),
        (SuppressionRequest(reason="x", group_id=gid(1), until="2026-12-01"), "is in the past"),
        (SuppressionRequest(reason="x", group_id=gid(1), until="next week"), "is not a date"),
        (SuppressionRequest(reason="  ", group_id=gid(1)), "needs a reason"),
        (SuppressionRequest(reason="x" * 501, group_id=gid(1)), "longer than 500"),
        (SuppressionRequest(reason="x"), "exactly one"),
        (SuppressionRequest(reason="x", user_id=uid(1), group_id=gid(1)), "exactly one"),
    ],
)
def test_bad_requests_are_one_line_reasons(request_: SuppressionRequest, needle: str) -> None:
    with pytest.raises(BadRequestError) as caught:
        new_suppression(request_, TENANT, NOW, known_findings=known(), skus=[sku_summary()], last_findings=[b2b(1, 1)])
    assert needle in str(caught.value) and "\n" not in str(caught.value)


def test_a_good_request_and_the_same_queue_request_twice() -> None:
    request = SuppressionRequest(
        reason="Partner accounts are licensed on purpose", by="cli:ana", group_id=gid(1).upper(), kind="b2b_member",
        until="2027-01-31",
    )  # fmt: skip
    s = new_suppression(request, TENANT, NOW, known_findings=known(), skus=[], last_findings=[b2b(1, 1)])
    assert (s.group_id, s.kind, s.created_by, s.created_at) == (gid(1), "b2b_member", "cli:ana", NOW)
    assert s.until == datetime(2027, 2, 1, tzinfo=UTC), "through the last day named"
    assert s.severity is Severity.WARNING, "the most severe finding it covered when made"
    queued = SuppressionRequest(reason="r", group_id=gid(1), request_id="req-1", until="2027-01-01")
    first = new_suppression(queued, TENANT, NOW, known_findings={}, skus=[], last_findings=[b2b(1, 1)])
    again = new_suppression(
        queued, TENANT, NOW + timedelta(minutes=5), known_findings={}, skus=[], last_findings=[b2b(1, 1)]
    )
    assert first.id == again.id, "the same request id makes the same suppression"


def test_until_takes_a_date_or_an_iso_time() -> None:
    assert parse_until("2026-12-02T18:00:00Z", NOW) == datetime(2026, 12, 2, 18, 0, tzinfo=UTC)
    # An offset is converted, so that "until 2026-12-10 10:00 UTC" is what every output says.
    offset = parse_until("2026-12-10T12:00:00+02:00", NOW)
    assert offset.tzinfo is UTC and f"{offset:%Y-%m-%d %H:%M}" == "2026-12-10 10:00"
    with pytest.raises(BadRequestError, match="in the past"):
        parse_until("2026-12-02T08:59:00+00:00", NOW)


def test_the_last_day_there_is_is_refused_not_a_crash() -> None:
    with pytest.raises(BadRequestError, match="more than 90 days"):
        parse_until("9999-12-31", NOW, max_days=90)


def test_suppressed_findings_never_alert_and_come_back_as_new_when_it_ends() -> None:
    s = settings()
    states: dict = {}
    guest, short = b2b(1, 1), seat_shortage()
    rule = suppression(user_id=uid(1), until=NOW + timedelta(days=2))

    def night(n: int) -> object:
        when = NOW + timedelta(days=n - 1)
        findings = apply_suppressions([guest, short], [rule], when)
        plan = plan_alerts(report(findings, run_id=f"r{n}", when=when), states, s, when)
        for row in plan.next_states:
            states[row.finding_id] = row
        return plan

    p1 = night(1)
    assert {f.id for f in p1.new} == {short.id}
    assert states[guest.id].status is AlertStatus.SUPPRESSED and states[guest.id].last_notified is None
    p2 = night(2)
    assert guest.id not in {f.id for f in (*p2.new, *p2.renotify, *p2.escalated)}
    p3 = night(3)  # the suppression ended between the nights
    assert guest.id in {f.id for f in p3.new}


def test_a_suppressed_finding_that_goes_away_is_closed_without_an_all_clear() -> None:
    s = settings()
    guest = b2b(1, 1)
    states: dict = {}
    first = plan_alerts(
        report(apply_suppressions([guest], [suppression(user_id=uid(1))], NOW), when=NOW), states, s, NOW
    )
    states.update({r.finding_id: r for r in first.next_states})
    later = NOW + timedelta(days=1)
    gone = plan_alerts(report([], run_id="r2", when=later), states, s, later)
    assert not gone.resolved and {r.finding_id: r.status for r in gone.next_states} == {guest.id: AlertStatus.RESOLVED}


def test_a_whole_day_end_is_said_as_the_last_day_and_a_time_is_kept() -> None:
    # Issue 30, item 10: `--until 2027-03-31` answered "until 2027-04-01 00:00 UTC".
    day = parse_until("2027-03-31", NOW)
    assert end_words(day) == "through 31 Mar 2027"
    assert end_words(parse_until("2027-01-05T12:30:00+02:00", NOW)) == "until 2027-01-05 10:30 UTC"
    made = suppression(group_id=gid(1), until=day)
    assert "through 31 Mar 2027 as s0123456789ab" in Applied(made, added=True).summary
    assert "through 31 Mar 2027" in describe_all([made], NOW)[0]
    assert "through 31 Mar 2027. Reason" in digest_notes([made], [], NOW).news[0]


class _Removals:
    """The part of the store that removing needs: the row stays, marked, and comes back unchanged once removed."""

    def __init__(self, row: Suppression) -> None:
        self.row = row

    def remove_suppression(self, tenant_id: str, suppression_id: str, *, by: str, at: datetime) -> Suppression | None:
        if suppression_id != self.row.id:
            return None
        if self.row.removed_at is None:
            self.row = replace(self.row, removed_at=at, removed_by=by)
        return self.row


def test_removing_twice_says_it_was_already_removed_by_whom_and_when() -> None:
    store = _Removals(suppression(group_id=gid(1), until=NOW + timedelta(days=3)))
    first = apply_request(store, TENANT, SuppressionRequest(remove="s0123456789ab", by="cli:ana"), NOW)  # type: ignore[arg-type]
    assert first.summary.startswith("removed s0123456789ab")
    later = NOW + timedelta(hours=1)
    again = apply_request(store, TENANT, SuppressionRequest(remove="s0123456789ab", by="cli:bo"), later)  # type: ignore[arg-type]
    assert again.summary == (
        f"s0123456789ab (group {gid(1)}) was already removed by cli:ana on 2026-12-02 09:00 UTC: nothing changed"
    )
