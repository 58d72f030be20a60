"""licensing.plan.assess: the verdict, the seat counts and each reason, on candidates built in memory."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson
import pytest

from licensing.errors import AuditError
from licensing.graph.candidates import GroupCandidate
from licensing.model import GroupRef, LicenseAssignment, LicensedGroup, Part, Sku, Unreadable, User
from licensing.plan import PLAN_SCHEMA, Blocker, Verdict, Warning, assess, plan_to_json_bytes, summary_lines
from licensing.plan.assess import LARGE_GROUP_USERS, holds

E5 = Sku("06ebc4ee-1bb5-47dd-8120-11324bc54e06", "SPE_E5", enabled=10, consumed=7)  # includes P2: 3 free
ROOT = Path(__file__).resolve().parents[2]
SCHEMA = orjson.loads((ROOT / "licensing" / "data" / "plan.schema.json").read_bytes())


def user(uid: str, *states: LicenseAssignment, **fields: object) -> User:
    base: dict[str, object] = {"account_enabled": True, "user_type": "Member", "usage_location": "US"}
    base.update(fields)
    return User(id=uid, display_name=uid, assignments=states, **base)  # type: ignore[arg-type]


def candidate(users: list[User], skus: tuple[Sku, ...] = (E5,), **group_fields: object) -> GroupCandidate:
    fields: dict[str, object] = {"security_enabled": True}
    fields.update(group_fields)
    group = LicensedGroup(id="g", display_name="Sales", user_ids=tuple(u.id for u in users), **fields)  # type: ignore[arg-type]
    return GroupCandidate(
        tenant_id="t",
        group=group,
        members={u.id: u for u in users},
        skus=skus,
        tenant_skus=skus,
        group_licensed_users=frozenset(),
    )


def test_who_holds_a_seat() -> None:
    sku = E5.sku_id
    assert holds(user("a", LicenseAssignment(sku, None, "Active")), sku)
    assert holds(user("b", LicenseAssignment(sku, "other-group", "ActiveWithError", "CountViolation")), sku)
    # Only in an error state: no seat held, one still needed.
    assert not holds(user("c", LicenseAssignment(sku, "other-group", "Error", "CountViolation")), sku)
    assert holds(user("d", assigned_sku_ids=(sku,)), sku), "assignedLicenses decide without states"
    assert not holds(user("e"), sku)


def test_suitable_with_counts_and_the_document() -> None:
    users = [user("a", LicenseAssignment(E5.sku_id, None, "Active")), user("b"), user("c")]
    plan = assess(candidate(users))
    assert plan.verdict is Verdict.SUITABLE and not plan.blockers and not plan.warnings
    [row] = plan.skus
    assert (row.free, row.needed, row.already_licensed) == (3, 2, 1)
    document = orjson.loads(plan_to_json_bytes(plan))
    jsonschema.validate(document, SCHEMA)
    assert document["schema"] == PLAN_SCHEMA and document["verdict"] == "suitable"
    lines = summary_lines(plan)
    assert "SUITABLE" in lines[0]
    # A member already holds it (directly here): the line names the command that moves such holders to the group.
    assert any("licensing-audit migrate --group g --sku SPE_E5" in line for line in lines)
    assert not any("migrate" in line for line in summary_lines(assess(candidate([user("b")]))))


def test_every_blocker() -> None:
    users = [user(f"u{i}") for i in range(4)] + [user("guest", user_type="Guest")]
    plan = assess(
        candidate(
            users,
            security_enabled=False,
            group_types=("DynamicMembership",),
            membership_rule='(user.department -eq "Sales")',
            member_groups=(GroupRef("inner", "Inner"),),
        )
    )
    assert plan.verdict is Verdict.UNSUITABLE
    assert [r.kind for r in plan.blockers] == [
        Blocker.SEATS_SHORT,
        Blocker.B2B_MEMBER,
        Blocker.NESTED_GROUP,
        Blocker.NOT_SECURITY_ENABLED,
        Blocker.DYNAMIC_RULE_ADMITS_GUESTS,
    ]
    short = plan.blockers[0]
    assert short.sku_id == E5.sku_id and "needs 5 seats" in short.message and "buy 2" in short.message
    assert plan.blockers[1].user_id == "guest" and plan.blockers[2].member_group_id == "inner"


def test_one_free_seat_and_one_needed_are_said_in_the_singular() -> None:
    # Issue 30, item 10: "1 are free".
    one_free = Sku(E5.sku_id, "SPE_E5", enabled=10, consumed=9)
    [short] = assess(candidate([user("a"), user("b")], skus=(one_free,))).blockers
    assert "needs 2 seats for the members who do not hold it, 1 is free: buy 1 or reclaim them" in short.message
    [none_free] = assess(candidate([user("a")], skus=(Sku(E5.sku_id, "SPE_E5", enabled=9, consumed=9),))).blockers
    assert "needs 1 seat for the members who do not hold it, 0 are free: buy 1" in none_free.message
    lone = assess(candidate([user("a")], skus=(Sku(E5.sku_id, "SPE_E5", enabled=9, consumed=9),)))
    assert "  Microsoft 365 E5 (SPE_E5): 1 needs a seat, 0 free, 0 already licensed" in summary_lines(lone)


def test_a_lifecycle_only_sku_is_short_and_says_why() -> None:
    suspended = Sku("s", "CRMSTANDARD", capability_status="Suspended", enabled=0, suspended=25, consumed=14)
    plan = assess(candidate([user("a")], skus=(suspended,)))
    [short] = plan.blockers
    assert short.kind is Blocker.SEATS_SHORT and "no active units" in short.message


def test_every_warning() -> None:
    conflict = LicenseAssignment("other-sku", "g2", "Error", "MutuallyExclusiveViolation")
    users = [
        user("nowhere", usage_location=None),
        user("conflicted", conflict),
        user("off", account_enabled=False),
    ]
    no_p1 = Sku("f30db892-07e9-47e9-837c-80727f46fd3d", "FLOW_FREE", enabled=10_000)
    plan = assess(candidate(users, skus=(no_p1,)))
    assert plan.verdict is Verdict.SUITABLE
    assert [(r.kind, r.user_id) for r in plan.warnings] == [
        (Warning.USAGE_LOCATION_MISSING, "nowhere"),
        (Warning.MUTUALLY_EXCLUSIVE, "conflicted"),
        (Warning.DISABLED_MEMBERS, "off"),
        (Warning.P1_NOT_COVERED, None),
    ]
    assert plan.warnings[1].sku_id == "other-sku"


def test_p1_counts_who_already_benefits() -> None:
    p1 = Sku("078d2b04-f1bd-4111-bbd4-b4b1b354cef4", "AAD_PREMIUM", enabled=3)
    c = candidate([user("a"), user("b")], skus=(p1,))
    assert not [w for w in assess(c).warnings if w.kind is Warning.P1_NOT_COVERED]
    crowded = GroupCandidate(
        tenant_id="t",
        group=c.group,
        members=c.members,
        skus=c.skus,
        tenant_skus=c.tenant_skus,
        group_licensed_users=frozenset({"a", "x", "y"}),  # a is counted once: 4 users for 3 seats
    )
    assert [w.kind for w in assess(crowded).warnings] == [Warning.P1_NOT_COVERED]


def test_a_large_group_is_warned_about() -> None:
    many = [user(f"u{i}") for i in range(LARGE_GROUP_USERS + 1)]
    big = Sku(E5.sku_id, "SPE_E5", enabled=100_000)
    plan = assess(candidate(many, skus=(big,)))
    assert Warning.LARGE_GROUP in {w.kind for w in plan.warnings}
    assert Warning.LARGE_GROUP not in {w.kind for w in assess(candidate(many[:10], skus=(big,))).warnings}


def test_a_paused_dynamic_group_is_warned_about() -> None:
    # It said "suitable" with nothing to read first: the rule would not be followed while processing is paused.
    paused = assess(
        candidate(
            [user("a")],
            group_types=("DynamicMembership",),
            membership_rule='user.department -eq "Sales" -and (user.userType -eq "Member")',
            rule_processing="Paused",
        )
    )
    assert paused.verdict is Verdict.SUITABLE
    assert [w.kind for w in paused.warnings] == [Warning.DYNAMIC_RULE_PAUSED]
    jsonschema.validate(orjson.loads(plan_to_json_bytes(paused)), SCHEMA)
    running = assess(
        candidate(
            [user("a")],
            group_types=("DynamicMembership",),
            membership_rule='(user.userType -eq "Member")',
            rule_processing="On",
        )
    )
    assert not running.warnings


def test_what_was_not_read_gives_no_verdict() -> None:
    c = candidate([user("a")])
    unread = GroupCandidate(
        tenant_id="t",
        group=c.group,
        members=c.members,
        skus=c.skus,
        tenant_skus=c.tenant_skus,
        group_licensed_users=frozenset(),
        unreadable=(Unreadable(Part.USERS, None, "403: no User.Read.All", "User.Read.All"),),
    )
    with pytest.raises(AuditError, match="cannot assess group g: users: 403"):
        assess(unread)
    # A lifecycle date that could not be read does not matter to the verdict.
    dated = GroupCandidate(
        **{
            **{f: getattr(unread, f) for f in unread.__slots__},
            "unreadable": (Unreadable(Part.SUBSCRIPTIONS, None, "500"),),
        }
    )
    assert assess(dated).verdict is Verdict.SUITABLE
