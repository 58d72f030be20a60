"""licensing.rules.reclaim: inactive accounts, the seats a shortage can reclaim, and when a redundant direct
assignment is safe to remove (disabledPlans)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from licensing.graph.parse import last_sign_in, parse_user
from licensing.model import LicenseAssignment, LicensedGroup, Sku, TenantSnapshot, User
from licensing.rules import RuleContext, evaluate
from licensing.rules.reclaim import direct_adds_nothing, is_inactive

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
E3 = Sku("6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK", enabled=3, consumed=3)
SIGN_IN = Path(__file__).resolve().parents[1] / "conformance" / "fixtures" / "signinactivity.json"


def member(uid: str, **fields: object) -> User:
    base: dict[str, object] = {
        "account_enabled": True,
        "user_type": "Member",
        "created": NOW - timedelta(days=400),
        "assignments": (LicenseAssignment(E3.sku_id, "g", "Active"),),
    }
    base.update(fields)
    return User(id=uid, display_name=uid, **base)  # type: ignore[arg-type]


def test_microsofts_sign_in_shape_and_the_fallbacks() -> None:
    shape = orjson.loads(SIGN_IN.read_bytes())
    assert last_sign_in(shape) is None, "Microsoft's JSON shows type names, not dates: nothing to trust"
    assert last_sign_in(
        {"lastSuccessfulSignInDateTime": "2026-11-30T10:00:00Z", "lastSignInDateTime": "2026-12-01T10:00:00Z"}
    ) == datetime(2026, 11, 30, 10, 0, tzinfo=UTC), "success wins over attempts"
    both = {"lastSignInDateTime": "2026-08-01T00:00:00Z", "lastNonInteractiveSignInDateTime": "2026-10-01T00:00:00Z"}
    assert last_sign_in(both) == datetime(2026, 10, 1, tzinfo=UTC), "without the successful property: the later attempt"
    assert last_sign_in({**both, "lastSuccessfulSignInDateTime": None}) is None, "served empty: no success"
    user = parse_user({"id": "u", "createdDateTime": "2026-01-05T00:00:00Z", "signInActivity": both})
    assert user.created == datetime(2026, 1, 5, tzinfo=UTC) and user.last_sign_in == datetime(2026, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "inactive"),
    [
        ({"last_sign_in": NOW - timedelta(days=91)}, True),
        ({"last_sign_in": NOW - timedelta(days=89)}, False),
        ({"last_sign_in": None}, True),  # never, and created 400 days ago
        ({"last_sign_in": None, "created": NOW - timedelta(days=10)}, False),  # a new hire
        ({"last_sign_in": None, "created": None}, False),  # age unknown: not called inactive
    ],
)
def test_who_is_inactive(fields: dict[str, object], inactive: bool) -> None:
    assert is_inactive(member("u", **fields), NOW, 90) is inactive


def snap(*users: User, sign_ins: bool = True) -> TenantSnapshot:
    group = LicensedGroup(
        id="g",
        display_name="G",
        sku_ids=(E3.sku_id,),
        processing_state="ProcessingComplete",
        user_ids=tuple(u.id for u in users),
    )
    return TenantSnapshot(
        tenant_id="t",
        skus=(E3,),
        groups=(group,),
        users={u.id: u for u in users},
        read_at=NOW,
        sign_ins_read=sign_ins,
        sign_ins_note=None if sign_ins else "sign-in activity not readable: 403",
    )


def test_inactive_user_licensed_and_its_not_evaluated_case() -> None:
    old = member("old", last_sign_in=NOW - timedelta(days=120))
    off = member("off", account_enabled=False, last_sign_in=NOW - timedelta(days=300))
    ev = evaluate(snap(old, off, member("new", last_sign_in=NOW - timedelta(days=2))), RuleContext(now=NOW))
    found = [f for f in ev.findings if f.kind == "inactive_user_licensed"]
    assert [f.user_id for f in found] == ["old"], "the disabled one is disabled_user_licensed"
    assert "last signed in 2026-08-04" in found[0].message
    ev = evaluate(snap(old, sign_ins=False), RuleContext(now=NOW))
    [outcome] = [o for o in ev.outcomes if o.rule_id == "inactive_user_licensed"]
    assert outcome.status == "not_evaluated" and "403" in (outcome.reason or "")
    assert not [f for f in ev.findings if f.kind == "inactive_user_licensed"], "never a pass, never a guess"


def test_a_shortage_says_buy_or_reclaim() -> None:
    waiting = member("w", assignments=(LicenseAssignment(E3.sku_id, "g", "Error", "CountViolation"),))
    users = (
        member("off", account_enabled=False),
        member("old", last_sign_in=NOW - timedelta(days=200)),
        member("ok", last_sign_in=NOW - timedelta(days=1)),
        waiting,
        member("w2", assignments=(LicenseAssignment(E3.sku_id, "g", "Error", "CountViolation"),)),
    )
    [short] = [f for f in evaluate(snap(*users), RuleContext(now=NOW)).findings if f.kind == "seat_shortage"]
    assert short.message.endswith("; buy 2 or reclaim 2 (1 disabled, 1 inactive)")


def test_a_redundant_direct_assignment_is_safe_only_when_it_adds_no_plan() -> None:
    yammer, teams = "7547a3fe-08ee-4ccb-b430-5077c5041653", "57ff2da0-773e-42df-b2af-ffb7a2317929"
    group_off_yammer = LicenseAssignment(E3.sku_id, "g", "Active", disabled_plans=(yammer,))
    assert direct_adds_nothing(
        LicenseAssignment(E3.sku_id, None, "Active", disabled_plans=(yammer,)), [group_off_yammer]
    )
    assert not direct_adds_nothing(LicenseAssignment(E3.sku_id, None, "Active"), [group_off_yammer]), (
        "direct adds Yammer"
    )
    two_groups = [group_off_yammer, LicenseAssignment(E3.sku_id, "h", "Active", disabled_plans=(teams,))]
    assert direct_adds_nothing(LicenseAssignment(E3.sku_id, None, "Active"), two_groups), (
        "together the groups enable all"
    )
    risky = member("r", assignments=(LicenseAssignment(E3.sku_id, None, "Active"), group_off_yammer))
    safe = member(
        "s", assignments=(LicenseAssignment(E3.sku_id, None, "Active", disabled_plans=(yammer,)), group_off_yammer)
    )
    found = {
        f.user_id: f.message
        for f in evaluate(snap(risky, safe), RuleContext(now=NOW)).findings
        if f.kind == "redundant_direct_assignment"
    }
    assert found["s"].endswith("the direct assignment adds no service plan and is safe to remove")
    assert "compare them before removing it" in found["r"]
