"""Group rules: B2B members, nested groups, license errors, processing, disabled users, redundant, empty."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from licensing.model import (
    FindingKind,
    GroupRef,
    LicenseAssignment,
    LicensedGroup,
    Scope,
    Severity,
    Sku,
    TenantSnapshot,
    Unreadable,
    User,
    finding_id,
)
from licensing.rules import Evaluation, RuleContext, evaluate

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
E3 = "6fd2c87f-b296-42f0-b197-1e91e994b900"
EMS = "efccb6f7-5641-4e0e-bd10-b4976e1bf68e"
SKUS = (
    Sku(sku_id=E3, sku_part_number="ENTERPRISEPACK", enabled=1000, consumed=10),
    Sku(sku_id=EMS, sku_part_number="EMS", enabled=1000, consumed=10),
)


def user(uid: str, *assignments: LicenseAssignment, **kw: object) -> User:
    fields: dict[str, object] = {
        "display_name": f"User {uid}",
        "user_principal_name": f"{uid}@contoso.com",
        "user_type": "Member",
        "account_enabled": True,
    }
    fields.update(kw)
    return User(id=uid, assignments=assignments, **fields)  # type: ignore[arg-type]


def via(group: str | None, sku_id: str = E3, state: str = "Active", error: str = "None") -> LicenseAssignment:
    return LicenseAssignment(sku_id=sku_id, assigned_by_group=group, state=state, error=error)


def group(gid: str, *user_ids: str, skus: tuple[str, ...] = (E3,), **kw: object) -> LicensedGroup:
    fields: dict[str, object] = {"display_name": f"Group {gid}", "processing_state": "ProcessingComplete"}
    fields.update(kw)
    return LicensedGroup(id=gid, sku_ids=skus, user_ids=user_ids, **fields)  # type: ignore[arg-type]


def run(groups: list[LicensedGroup], users: list[User], **kw: object) -> Evaluation:
    ctx_keys = {"processing_since", "processing_stuck_hours"}
    # No expected SKUs: these tests are about groups (test_rules_seats covers that rule).
    ctx: dict[str, object] = {"expected_group_skus": ()}
    ctx.update({k: v for k, v in kw.items() if k in ctx_keys})
    snap_kw = {k: v for k, v in kw.items() if k not in ctx_keys}
    snap = TenantSnapshot(tenant_id="t1", skus=SKUS, groups=tuple(groups), users={u.id: u for u in users}, **snap_kw)  # type: ignore[arg-type]
    return evaluate(snap, RuleContext(now=NOW, **ctx))  # type: ignore[arg-type]


def of(ev: Evaluation, kind: str) -> list:
    return [f for f in ev.findings if f.kind == kind]


def outcome(ev: Evaluation, rule_id: str):
    return next(o for o in ev.outcomes if o.rule_id == rule_id)


# ---------------------------------------------------------------- b2b_member


@pytest.mark.parametrize(
    "b2b",
    [
        {"user_type": "Guest"},
        {"user_type": "guest"},
        {"external_user_state": "PendingAcceptance"},
        {"external_user_state": "Accepted", "user_type": "Member"},  # B2B with userType Member still counts
        {"creation_type": "Invitation"},
        {"user_principal_name": "ann_fabrikam.com#EXT#@contoso.onmicrosoft.com"},
        {"user_principal_name": "ann_fabrikam.com#ext#@contoso.onmicrosoft.com"},
    ],
)
def test_b2b_member_detection(b2b: dict[str, str]) -> None:
    ev = run([group("g1", "u1")], [user("u1", via("g1"), **b2b)])
    [f] = of(ev, "b2b_member")
    assert (f.group_id, f.user_id, f.severity) == ("g1", "u1", Severity.WARNING)
    assert f.id == finding_id("b2b_member", "g1", "u1")
    assert "'Group g1'" in f.message and "B2B" in f.message
    assert (f.group_name, f.user_name) == ("Group g1", "User u1")
    [summary] = ev.groups
    assert summary.b2b_users == 1


def test_members_are_not_b2b() -> None:
    ev = run([group("g1", "u1")], [user("u1", via("g1"), external_user_state="", creation_type=None)])
    assert not of(ev, "b2b_member")


def test_b2b_user_in_two_licensed_groups_yields_two_findings() -> None:
    ev = run([group("g1", "u1"), group("g2", "u1")], [user("u1", via("g1"), via("g2"), user_type="Guest")])
    found = of(ev, "b2b_member")
    assert sorted(f.group_id for f in found) == ["g1", "g2"]
    assert len({f.id for f in found}) == 2


def test_user_both_b2b_and_disabled() -> None:
    ev = run([group("g1", "u1")], [user("u1", via("g1"), user_type="Guest", account_enabled=False)])
    assert {f.kind for f in ev.findings} == {"b2b_member", "disabled_user_licensed"}


# ---------------------------------------------------------------- nested_group


def test_one_nested_group_finding_per_member_group() -> None:
    g = group("g1", "u1", member_groups=(GroupRef("n1", "Team Nested"), GroupRef("n2", "")))
    ev = run([g], [user("u1", via("g1"))])
    found = of(ev, "nested_group")
    assert [(f.group_id, f.member_group_id) for f in found] == [("g1", "n1"), ("g1", "n2")]
    assert found[0].member_group_name == "Team Nested"
    assert "'Team Nested'" in found[0].message and "do not get the licenses" in found[0].message
    assert found[1].member_group_name == "n2", "an unnamed group is shown by id"
    assert ev.groups[0].nested_groups == 2 and ev.groups[0].members == 3


# ---------------------------------------------------------------- license_error


@pytest.mark.parametrize(
    ("error", "severity", "words"),
    [
        ("CountViolation", Severity.CRITICAL, "no seat is left"),
        ("MutuallyExclusiveViolation", Severity.WARNING, "conflicts"),
        ("DependencyViolation", Severity.WARNING, "depends on"),
        ("ProhibitedInUsageLocationViolation", Severity.WARNING, "usage location (IR)"),
        # UniquenessViolation is a duplicate proxy address (licensing-groups-resolve-problems), not a plan conflict.
        ("UniquenessViolation", Severity.WARNING, "proxy address"),
        ("Other", Severity.WARNING, "unspecified"),
    ],
)
def test_each_license_error_kind(error: str, severity: Severity, words: str) -> None:
    u = user("u1", via("g1", state="Error", error=error), usage_location="IR")
    ev = run([group("g1", "u1")], [u])
    [f] = of(ev, "license_error")
    assert (f.severity, f.error, f.group_id, f.user_id, f.sku_id) == (severity, error, "g1", "u1", E3)
    assert f.sku_part_number == "ENTERPRISEPACK" and f.product_name == "Office 365 E3"
    assert f.id == finding_id("license_error", "g1", "u1", E3, error)
    assert words in f.message
    assert f.message.startswith("User u1 (u1@contoso.com) did not get Office 365 E3 from group 'Group g1'")
    assert ev.groups[0].license_errors == 1


@pytest.mark.parametrize(
    ("ago", "said"),
    [
        (timedelta(days=4, hours=3), "waiting since 2026-11-19 (4 days)"),
        (timedelta(hours=30), "waiting since 2026-11-22 (30 hours)"),
        (timedelta(minutes=20), "waiting since 2026-11-24 (under an hour)"),
    ],
)
def test_license_error_says_since_when_the_user_waits(ago: timedelta, said: str) -> None:
    state = LicenseAssignment(E3, "g1", "Error", "CountViolation", last_updated=NOW - ago)
    [f] = of(run([group("g1", "u1")], [user("u1", state)]), "license_error")
    # Issue 29: and the exact command that fixes it once a seat is free.
    assert f.message.endswith(f"no seat is left; {said}; once seats are free: licensing-audit reprocess --group g1 "
                              "--error CountViolation")  # fmt: skip
    assert f.since == NOW - ago


def test_license_error_without_a_time_or_with_one_ahead_says_nothing_of_waiting() -> None:
    ahead = LicenseAssignment(E3, "g1", "Error", "CountViolation", last_updated=NOW + timedelta(hours=2))
    for state in (via("g1", state="Error", error="CountViolation"), ahead):
        [f] = of(run([group("g1", "u1")], [user("u1", state)]), "license_error")
        assert "waiting" not in f.message


def test_license_error_only_for_the_group_that_assigns_and_also_for_former_members() -> None:
    users = [
        user("u1", via("g2", state="Error", error="CountViolation")),  # member of g1, error from g2 (not read)
        # Error from g1, not a member of g1 any more: the removal failed and the seat is still held.
        user("u2", via("g1", state="ActiveWithError", error="DependencyViolation")),
    ]
    ev = run([group("g1", "u1"), group("g3", "u2")], users)
    [found] = of(ev, "license_error")
    assert (found.group_id, found.user_id, found.error) == ("g1", "u2", "DependencyViolation")
    assert "no longer a member of group 'Group g1'" in found.message and found.severity == Severity.WARNING


def test_errors_on_two_skus_are_two_findings_and_waiting_counts_per_sku() -> None:
    u = user(
        "u1",
        via("g1", E3, "Error", "CountViolation"),
        via("g1", EMS, "ActiveWithError", "MutuallyExclusiveViolation"),
    )
    ev = run([group("g1", "u1", skus=(E3, EMS))], [u])
    assert sorted(f.sku_id for f in of(ev, "license_error")) == sorted([E3, EMS])
    waiting = {s.sku_id: s.waiting_users for s in ev.skus}
    assert waiting == {E3: 1, EMS: 0}


# ---------------------------------------------------------------- processing_incomplete


def test_processing_states() -> None:
    groups = [
        group("done"),
        group("none", processing_state=None),
        group("busy", processing_state="ProcessingInProgress"),
    ]
    ev = run(groups, [])
    [f] = of(ev, "processing_incomplete")
    assert (f.group_id, f.severity) == ("busy", Severity.INFO)
    assert "'ProcessingInProgress'" in f.message


@pytest.mark.parametrize(
    ("age", "severity"),
    [
        (timedelta(hours=24), Severity.INFO),  # "more than" PROCESSING_STUCK_HOURS: exactly 24 h is not stuck
        (timedelta(hours=24, seconds=1), Severity.WARNING),
        (timedelta(hours=2), Severity.INFO),
    ],
)
def test_processing_stuck_escalates_to_warning(age: timedelta, severity: Severity) -> None:
    g = group("busy", "u1", processing_state="ProcessingInProgress")
    ev = run([g], [user("u1")], processing_since={"busy": NOW - age})
    [f] = of(ev, "processing_incomplete")
    assert f.severity is severity
    assert f.id == finding_id("processing_incomplete", "busy"), "escalation keeps the id"


def test_processing_since_may_be_naive_utc() -> None:
    g = group("busy", "u1", processing_state="ProcessingInProgress")
    since = (NOW - timedelta(hours=30)).replace(tzinfo=None)
    ev = run([g], [user("u1")], processing_since={"busy": since}, processing_stuck_hours=12)
    assert of(ev, "processing_incomplete")[0].severity is Severity.WARNING


# ---------------------------------------------------------------- disabled_user_licensed


@pytest.mark.parametrize(
    ("enabled", "state", "expected"),
    [
        (False, "Active", True),
        (False, "ActiveWithError", True),
        (False, "Error", False),  # holds no seat
        (False, "Disabled", False),
        (None, "Active", False),  # unknown is not disabled
        (True, "Active", False),
    ],
)
def test_disabled_user_licensed(enabled: bool | None, state: str, expected: bool) -> None:
    ev = run([group("g1", "u1")], [user("u1", via("g1", state=state), account_enabled=enabled)])
    found = of(ev, "disabled_user_licensed")
    assert bool(found) is expected
    if found:
        assert (found[0].group_id, found[0].user_id, found[0].severity) == ("g1", "u1", Severity.INFO)


def test_disabled_user_with_two_skus_from_one_group_is_one_finding() -> None:
    u = user("u1", via("g1", E3), via("g1", EMS), account_enabled=False)
    ev = run([group("g1", "u1", skus=(E3, EMS))], [u])
    assert len(of(ev, "disabled_user_licensed")) == 1


# ---------------------------------------------------------------- redundant_direct_assignment


def test_redundant_direct_assignment() -> None:
    users = [
        user("u1", via(None), via("g1"), via("g2")),  # direct + two groups: one finding
        user("u2", via(None), via("g1", state="Error", error="CountViolation")),  # group one is in error
        user("u3", via(None, EMS), via("g1")),  # different SKUs
    ]
    ev = run([group("g1", "u1", "u2", "u3"), group("g2", "u1")], users)
    [f] = of(ev, "redundant_direct_assignment")
    assert (f.user_id, f.sku_id, f.group_id, f.severity) == ("u1", E3, None, Severity.INFO)
    assert f.id == finding_id("redundant_direct_assignment", "u1", E3)
    assert "both directly and through groups 'Group g1', 'Group g2'" in f.message


# ---------------------------------------------------------------- empty_licensed_group


def test_empty_licensed_group() -> None:
    ev = run([group("empty"), group("devices", other_members=3), group("gone", members_read=False)], [])
    [f] = of(ev, "empty_licensed_group")
    assert f.group_id == "empty"
    assert "assigns Office 365 E3 but has no members" in f.message


# ---------------------------------------------------------------- could not evaluate


def test_unreadable_group_members_skip_every_group_rule_for_that_group() -> None:
    groups = [group("ok", "u1"), group("gone", "u2", member_groups=(GroupRef("n1"),), processing_state="X")]
    users = [user("u1", via("ok"), user_type="Guest"), user("u2", via("gone"), user_type="Guest")]
    unreadable = (Unreadable("members", "gone", "404 the group was deleted"),)
    ev = run(groups, users, unreadable=unreadable)
    assert {f.group_id for f in ev.findings if f.group_id} == {"ok"}
    for rule_id in ("b2b_member", "nested_group", "license_error", "processing_incomplete", "disabled_user_licensed"):
        o = outcome(ev, rule_id)
        assert "'Group gone' (gone): 404 the group was deleted" in (o.reason or ""), rule_id
    assert outcome(ev, "b2b_member").status == "failed"  # found something in the readable group
    assert outcome(ev, "nested_group").status == "not_evaluated"
    assert any(e.startswith("nested_group not evaluated for 1 group") for e in ev.errors)


def test_unreadable_users_block_user_rules() -> None:
    ev = run([group("g1", "u1")], [], unreadable=(Unreadable("users", None, "403", permission="User.Read.All"),))
    for rule_id in ("b2b_member", "license_error", "disabled_user_licensed", "redundant_direct_assignment"):
        assert outcome(ev, rule_id).status == "not_evaluated"
        assert "User.Read.All" in (outcome(ev, rule_id).reason or "")
    assert outcome(ev, "nested_group").status == "passed"


def test_group_scope_sees_only_its_group() -> None:
    groups = [group("g1", "u1"), group("g2", "u1", member_groups=(GroupRef("n"),))]
    users = [user("u1", via(None), via("g1"), via("g2"), user_type="Guest")]
    ev = run(groups, users, scope=Scope.GROUP, scope_id="g1")
    assert {f.group_id for f in ev.findings if f.group_id} == {"g1"}
    assert [g.id for g in ev.groups] == ["g1"]
    assert of(ev, "redundant_direct_assignment"), "direct + active from the scoped group"


def test_group_scope_on_a_deleted_group_is_not_evaluated() -> None:
    gone = (Unreadable("group", "g9", "the group does not exist (404)"),)
    ev = run([], [], scope=Scope.GROUP, scope_id="g9", unreadable=gone)
    assert not ev.findings
    for rule_id in ("b2b_member", "nested_group", "license_error", "processing_incomplete", "empty_licensed_group"):
        assert outcome(ev, rule_id).status == "not_evaluated"
        assert "g9: the group does not exist (404)" in (outcome(ev, rule_id).reason or "")
    assert ev.errors


def test_sku_scope_restricts_license_errors_and_redundancy_to_that_sku() -> None:
    u = user(
        "u1",
        via("g1", E3, "Error", "CountViolation"),
        via("g1", EMS, "Error", "DependencyViolation"),
        via(None, EMS),
        via("g2", EMS),
    )
    groups = [group("g1", "u1", skus=(E3, EMS)), group("g2", "u1", skus=(EMS,)), group("g3", skus=(EMS,))]
    ev = run(groups, [u], scope=Scope.SKU, scope_id=E3)
    assert [(f.kind, f.sku_id) for f in ev.findings] == [("license_error", E3)]
    assert [g.id for g in ev.groups] == ["g1"]


def test_every_kind_has_a_rule_with_title_and_remediation() -> None:
    from licensing.rules import RULES

    assert list(RULES) == [k.value for k in FindingKind]
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id and rule.title and len(rule.remediation) > 40
