"""migrate's verdicts (pure): safe, would lose (named), not yet inherited, kept; the waves; the shared plan loss."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from licensing.configure.migrate import Migration, Verdict, classify, parse_waves
from licensing.configure.tenant import CurrentGroup, TenantSku
from licensing.errors import BadRequestError
from licensing.model import LicenseAssignment, User
from licensing.rules.reclaim import direct_adds_nothing, plans_lost

G = "00000000-0000-0000-0000-0000000000a1"
E3 = TenantSku("e3", "SPE_E3", {"p-exo": "EXCHANGE_S_ENTERPRISE", "p-yam": "YAMMER_ENTERPRISE"}, 10, 5)
SKUS = {"e3": E3}
DONE = CurrentGroup(G, "ready", (), "ProcessingComplete", True)
WHEN = datetime(2026, 11, 24, tzinfo=UTC)


def user(*states: LicenseAssignment, enabled: bool = True) -> User:
    return User("u1", "Ann", "ann@contoso.example", account_enabled=enabled, assignments=states)


def direct(*off: str) -> LicenseAssignment:
    return LicenseAssignment("e3", None, "Active", disabled_plans=off)


def inherited(*off: str, state: str = "Active", error: str = "None") -> LicenseAssignment:
    return LicenseAssignment("e3", G, state, error, last_updated=WHEN, disabled_plans=off)


def verdict(u: User, group: CurrentGroup = DONE, **kw: object) -> Verdict:
    r = classify(u, group, E3, SKUS, kept=bool(kw.get("kept")), accept_loss=False, group_changed=None)
    assert r is not None
    return r.verdict


def test_same_services_is_safe_and_more_is_would_lose_with_the_plan_named() -> None:
    assert verdict(user(direct("p-yam"), inherited("p-yam"))) is Verdict.SAFE
    r = classify(user(direct(), inherited("p-yam")), DONE, E3, SKUS, kept=False, accept_loss=False, group_changed=None)
    assert r is not None and r.verdict is Verdict.WOULD_LOSE and r.lost == ("YAMMER_ENTERPRISE",) and not r.remove
    r = classify(user(direct(), inherited("p-yam")), DONE, E3, SKUS, kept=False, accept_loss=True, group_changed=None)
    assert r is not None and r.remove


def test_missing_error_or_processing_is_not_yet_and_kept_wins() -> None:
    assert verdict(user(direct())) is Verdict.NOT_YET
    assert verdict(user(direct(), inherited(state="Error", error="CountViolation"))) is Verdict.NOT_YET
    busy = CurrentGroup(G, "ready", (), "ProcessingInProgress", True)
    assert verdict(user(direct(), inherited()), busy) is Verdict.NOT_YET
    assert verdict(user(direct(), inherited()), kept=True) is Verdict.KEPT
    assert classify(user(inherited()), DONE, E3, SKUS, kept=False, accept_loss=False, group_changed=None) is None


def test_warnings_disabled_account_stale_state_and_no_mailbox_left() -> None:
    later = datetime(2026, 11, 25, tzinfo=UTC)
    r = classify(user(direct(), inherited("p-exo"), enabled=False), DONE, E3, SKUS, kept=False, accept_loss=True,
                 group_changed=later)  # fmt: skip
    kinds = {k for k, _ in (r.warnings if r else ())}
    assert kinds == {"disabled_account", "stale_inherited_state", "exchange_data_hold"}


def test_waves_first_small_last_repeats_and_bad_values_exit_2() -> None:
    assert parse_waves("10,100,all") == (10, 100, None)
    assert parse_waves("2") == (2,)
    for bad in ("0", "all,3", "x", ""):
        with pytest.raises(BadRequestError, match="--waves"):
            parse_waves(bad)
    run = Migration("m", "t", DONE, WHEN, False, (1, 2), (), SKUS)
    assert run.wave_users() == []


def test_plans_lost_is_what_direct_adds_nothing_decides() -> None:
    assert plans_lost(direct(), [inherited("p-yam")]) == frozenset({"p-yam"})
    assert plans_lost(direct("p-yam"), [inherited("p-yam"), inherited()]) == frozenset()
    assert plans_lost(direct(), []) is None and not direct_adds_nothing(direct(), [])


def test_a_users_change_is_never_a_groups_last_applied_state() -> None:
    """license_drift compares groups with their last apply/rollback: a migration's removal, or its rollback (a user's
    direct assignment re-added, kind rollback with the user), must not count as the group's assignment."""
    from licensing.changes import ChangeKind, ChangeOutcome, LicenseChange, Product, last_applied

    group_change = LicenseChange("a", "t", G, "ready", (), (Product("e3"),), "me", WHEN, "d",
                                 outcome=ChangeOutcome.VERIFIED)  # fmt: skip
    later = WHEN.replace(hour=1)
    removal = LicenseChange("b", "t", G, "ready", (Product("e3"),), (), "me", later, "m",
                            outcome=ChangeOutcome.VERIFIED, kind=ChangeKind.MIGRATE, user_id="u1")  # fmt: skip
    restore = LicenseChange("c", "t", G, "ready", (), (Product("e3"),), "me", later, "m",
                            outcome=ChangeOutcome.VERIFIED, kind=ChangeKind.ROLLBACK, user_id="u1",
                            rollback_of="b")  # fmt: skip
    assert last_applied([group_change, removal, restore])[G].id == "a"
