"""Unit tests of the sandbox tenant generator, its counters and its ground truth (docs/findings.md)."""

from __future__ import annotations

import pytest

from licensing.errors import ConfigurationError
from licensing.model import FindingKind, Severity, finding_id
from licensing.sandbox import ExpectedFinding, FaultRule, Faults, TenantSpec, generate_tenant, parse_faults
from licensing.sandbox import tenant as tm
from licensing.sandbox.catalog import ERROR_KINDS


@pytest.fixture(scope="module")
def small():
    return generate_tenant(TenantSpec(seed=3, users=60, groups=12))


@pytest.fixture(scope="module")
def medium():
    return generate_tenant(TenantSpec(seed=11, users=2_000, groups=60))


def _by_kind(tenant, kind):
    return [f for f in tenant.ground_truth if f.kind == kind]


def test_same_spec_same_tenant_and_other_seed_differs():
    a = generate_tenant(TenantSpec(seed=5, users=300, groups=20))
    b = generate_tenant(TenantSpec(seed=5, users=300, groups=20))
    c = generate_tenant(TenantSpec(seed=6, users=300, groups=20))
    assert a.tenant_id == b.tenant_id != c.tenant_id
    assert [f.id for f in a.ground_truth] == [f.id for f in b.ground_truth]
    assert [a.user_id(i) for i in range(300)] == [b.user_id(i) for i in range(300)]
    assert a.skus == b.skus
    assert a.user_id(0) != c.user_id(0)


def test_what_the_server_answers_is_a_function_of_spec_and_as_of_alone() -> None:
    """The sandbox takes its now from the tenant (as_of), never from the wall clock: the same (spec, as_of) is
    served byte for byte alike, and a later as_of moves every date it serves by exactly the difference."""
    from datetime import UTC, datetime, timedelta

    from licensing.sandbox.graph_api import GraphApp, Request

    def answers(as_of: datetime) -> list[bytes]:
        app = GraphApp(generate_tenant(TenantSpec(seed=5, users=120, groups=14), as_of=as_of))
        paths = [
            "/v1.0/users?$select=id,createdDateTime,signInActivity,licenseAssignmentStates&$top=500",
            "/v1.0/directory/subscriptions",
            "/v1.0/subscribedSkus",
        ]
        return [app.handle(Request("GET", path, {}, b"")).body for path in paths]

    as_of = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    first = answers(as_of)
    assert first == answers(as_of)
    later = answers(as_of + timedelta(days=400))
    assert later != first
    shifted = [b.replace(b"2026-", b"2027-") for b in first]  # not a proof, but the dates must have moved
    assert b"2026-12-14" in first[1] and b"2026-12-14" not in later[1]
    assert any(b"2027-12-" in b or b"2028-01-" in b for b in later) and shifted


def test_ids_are_guids_that_resolve_back_to_their_index(medium):
    ids = [medium.user_id(i) for i in range(medium.user_count)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 36 and i[14] == "4" for i in ids[:50])
    assert medium.user_index(ids[1234]) == 1234
    assert medium.user_index("00000000-0000-4000-8000-000000000000") is None
    for g in medium.groups:
        assert medium.group_by_id(g.id) is g


def test_every_finding_kind_is_present(medium):
    kinds = {f.kind for f in medium.ground_truth}
    # Both need the history of earlier runs, which a generated tenant has not; P1 coverage is short only when
    # the spec says so (premium_spare=False: test_a_tenant_without_spare_premium_seats_is_short_of_p1);
    # license_drift needs a journal of licensing-audit apply (tests/integration/test_configure_drift.py).
    expected = set(FindingKind) - {
        FindingKind.SEAT_FORECAST,
        FindingKind.LICENSED_GROUP_SHRANK,
        FindingKind.P1_COVERAGE_SHORT,
        FindingKind.LICENSE_DRIFT,
    }
    assert kinds == expected
    errors = {f.error for f in _by_kind(medium, FindingKind.LICENSE_ERROR)}
    assert errors == {"CountViolation", *ERROR_KINDS}
    expiring = {(f.sku_id, f.severity) for f in _by_kind(medium, FindingKind.UNITS_EXPIRING)}
    assert {sev for _, sev in expiring} == {Severity.WARNING, Severity.CRITICAL}


def test_a_tenant_without_spare_premium_seats_is_short_of_p1() -> None:
    tenant = generate_tenant(TenantSpec(seed=1, premium_spare=False))
    [short] = [f for f in tenant.ground_truth if f.kind == FindingKind.P1_COVERAGE_SHORT]
    assert short.subject == () and short.severity == Severity.WARNING
    qualifying = [s for s in tenant.skus if s.part_number in ("ENTERPRISEPACK", "SPE_E3", "EMS")]
    assert all(s.enabled == s.consumed for s in qualifying), "no seat beyond those in use"


def test_severities_follow_findings_md(medium):
    for f in medium.ground_truth:
        if f.kind == FindingKind.LICENSE_ERROR:
            assert f.severity == (Severity.CRITICAL if f.error == "CountViolation" else Severity.WARNING)
        if f.kind in (FindingKind.B2B_MEMBER, FindingKind.NESTED_GROUP, FindingKind.SEAT_LOW):
            assert f.severity == Severity.WARNING
        if f.kind in (FindingKind.EMPTY_LICENSED_GROUP, FindingKind.REDUNDANT_DIRECT_ASSIGNMENT):
            assert f.severity == Severity.INFO
        assert f.id == finding_id(f.kind, *f.subject)


def test_counters_are_consistent_like_graph(medium):
    """consumedUnits = distinct users holding the SKU through an assignment that holds a seat (Active, or
    ActiveWithError left by a failed removal); a user waits for a SKU with free seats only when another SKU of
    the same group has none (group licensing is all or nothing)."""
    holders: dict[int, set[int]] = {}
    waiting: dict[int, set[int]] = {}
    for u in medium.iter_users():
        states = medium.user_states(u)
        for st in states:
            if st.holds_seat:
                holders.setdefault(st.sku, set()).add(u)
            elif st.error == "CountViolation":
                waiting.setdefault(st.sku, set()).add(u)
                if medium.skus[st.sku].available > 0:
                    short = [
                        o for o in states if o.group == st.group and o.error == "CountViolation" and o.sku != st.sku
                    ]
                    assert any(medium.skus[o.sku].available <= 0 for o in short), medium.skus[st.sku].part_number
    for s in medium.skus:
        assert s.consumed == len(holders.get(s.index, ())), s.part_number
        if waiting.get(s.index):
            assert not holders.get(s.index, set()) & waiting[s.index]
    assert any(medium.skus[k].available <= 0 for k in waiting), "the shortage SKU has waiting users"
    assert any(st.state == "ActiveWithError" for u in medium.removed for st in medium.user_states(u))


def test_small_tenant_hand_checked(small):
    t = small
    e3 = t.sku_by_part("ENTERPRISEPACK")
    e5 = t.sku_by_part("SPE_E5")
    g = t.groups
    truth = set(t.ground_truth)

    def has(*args, **kw):
        return ExpectedFinding(*args, **kw) in truth

    # Seat findings, one per situation.
    assert e3.enabled == e3.consumed and has(FindingKind.SEAT_SHORTAGE, Severity.CRITICAL, sku_id=e3.sku_id)
    bi = t.sku_by_part("POWER_BI_PRO")
    assert bi.consumed > bi.enabled and has(FindingKind.SEAT_SHORTAGE, Severity.CRITICAL, sku_id=bi.sku_id)
    assert e5.available == 2 and has(FindingKind.SEAT_LOW, Severity.WARNING, sku_id=e5.sku_id)
    assert has(FindingKind.UNITS_EXPIRING, Severity.WARNING, sku_id=t.sku_by_part("EMS").sku_id)
    assert has(FindingKind.UNITS_EXPIRING, Severity.CRITICAL, sku_id=t.sku_by_part("EMSPREMIUM").sku_id)
    assert has(FindingKind.UNITS_EXPIRING, Severity.CRITICAL, sku_id=t.sku_by_part("VISIOCLIENT").sku_id)
    e5p = t.sku_by_part("ENTERPRISEPREMIUM").sku_id
    assert has(FindingKind.EXPECTED_SKU_NOT_GROUP_ASSIGNED, Severity.WARNING, sku_id=e5p)
    company = t.sku_by_part("SHAREPOINTSTORAGE")
    assert company.applies_to == "Company" and company.available < 5 and company.warning > 0
    assert not [f for f in truth if f.sku_id == company.sku_id]
    # Each B2B signal alone is enough; the guest of the unlicensed group never alerts.
    e5_group = g[tm.G_E5].id
    for u in tm.U_B2B:
        assert has(FindingKind.B2B_MEMBER, Severity.WARNING, group_id=e5_group, user_id=t.user_id(u))
    assert not [f for f in truth if f.user_id == t.user_id(tm.U_GUEST_UNLICENSED)]
    assert not [f for f in truth if f.group_id == g[tm.G_GUESTS].id]
    # Nested groups, empty and processing groups.
    assert has(FindingKind.NESTED_GROUP, Severity.WARNING, group_id=e5_group, member_group_id=g[tm.G_NESTED].id)
    assert has(FindingKind.NESTED_GROUP, Severity.WARNING, group_id=g[tm.G_E3].id, member_group_id=g[tm.G_EMS5].id)
    assert has(FindingKind.EMPTY_LICENSED_GROUP, Severity.INFO, group_id=g[tm.G_EMPTY].id)
    assert not has(FindingKind.EMPTY_LICENSED_GROUP, Severity.INFO, group_id=g[tm.G_KIOSK].id)  # devices count
    assert has(FindingKind.PROCESSING_INCOMPLETE, Severity.INFO, group_id=g[tm.G_PROC].id)
    # Nested members get nothing from the licensed parent.
    for u in tm.U_NESTED_ONLY:
        assert t.user_states(u) == []
    # Errors, disabled users, redundant direct assignments.
    m365e3 = t.sku_by_part("SPE_E3").sku_id
    for u, err in zip(tm.U_ERRORS, ERROR_KINDS, strict=True):
        assert has(FindingKind.LICENSE_ERROR, Severity.WARNING, m365e3, g[tm.G_E3].id, t.user_id(u), error=err)
    for u, grp in zip(tm.U_DISABLED, (tm.G_E5, tm.G_E5, tm.G_E3), strict=True):
        assert has(FindingKind.DISABLED_USER_LICENSED, Severity.INFO, group_id=g[grp].id, user_id=t.user_id(u))
    for u in tm.U_REDUNDANT_E3:
        assert has(FindingKind.REDUNDANT_DIRECT_ASSIGNMENT, Severity.INFO, m365e3, user_id=t.user_id(u))
    assert has(FindingKind.REDUNDANT_DIRECT_ASSIGNMENT, Severity.INFO, bi.sku_id, user_id=t.user_id(tm.U_REDUNDANT_BI))
    # The direct-only user is not a member of any licensed group: the audit never reads them.
    assert not [f for f in truth if f.user_id == t.user_id(tm.U_DIRECT_ONLY)]
    # Waiting users = CountViolation license errors of the short SKU, and (all or nothing) of the other SKU of the
    # same group for the same users.
    waits = [f for f in truth if f.error == "CountViolation"]
    assert waits and all(f.severity == Severity.CRITICAL for f in waits)
    short = {(f.group_id, f.user_id) for f in waits if f.sku_id == e3.sku_id}
    assert short and all((f.group_id, f.user_id) in short for f in waits if f.sku_id != e3.sku_id)
    assert {f.sku_id for f in waits} == {e3.sku_id, t.sku_by_part("EMS").sku_id}
    # Users in several licensed groups yield one finding per group.
    assert len([gi for gi in t.user_groups(tm.U_MULTI[0]) if g[gi].licensed]) == 3


def test_odd_names_are_generated(small):
    names = {small.user_names(u)[0] for u in range(small.user_count)}
    assert {"<b>x</b>", "Bob | partner *bold*", "=1+1"} <= names
    assert any(any(ord(c) < 32 for c in n) for n in names)
    assert any("\u202e" in n for n in names) and any(len(n) == 256 for n in names)
    group_names = {grp.display_name for grp in small.groups}
    assert "<b>Licensed</b> & <i>markup</i>" in group_names
    upns = [small.user_names(u)[3] for u in tm.U_B2B]
    assert sum("#EXT#" in x for x in upns) == 2


@pytest.mark.parametrize(
    ("users", "groups"), [(10, 20), (100, 3), (2_000_001, 20)], ids=["few-users", "few-groups", "too-many"]
)
def test_bad_specs_are_one_line_errors(users, groups):
    with pytest.raises(ConfigurationError) as exc:
        generate_tenant(TenantSpec(users=users, groups=groups))
    assert "\n" not in str(exc.value) and "sandbox" in str(exc.value)


def test_parse_faults():
    f = parse_faults("429@members:first=2:retry_after=0.05; reset@users:rate=0.5:after=1; ru_budget=auto; latency_ms=5")
    assert f.rules == (
        FaultRule("429", "members", first=2, retry_after="0.05"),
        FaultRule("reset", "users", rate=0.5, after=1),
    )
    assert f.ru_budget == 0 and f.latency_ms == 5.0
    assert parse_faults("429:retry_after=none").rules[0].retry_after is None
    assert Faults().with_rules(FaultRule("500")).rules == (FaultRule("500"),)
    for bad in ("explode@users", "429@nowhere", "429:first=x", "latency_ms=fast", "nope=1", "429:rate=2"):
        with pytest.raises(ConfigurationError):
            parse_faults(bad)
