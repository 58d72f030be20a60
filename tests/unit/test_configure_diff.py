"""licensing.configure.diff and writer.assign_body: the dry run's arithmetic, and the body Microsoft documents."""

from __future__ import annotations

import json
from pathlib import Path

from licensing.changes import Product
from licensing.configure.diff import EXCHANGE_HOLD, ChangeKind, changes_between, plan_group_change
from licensing.configure.tenant import TenantSku
from licensing.configure.writer import assign_body
from licensing.graph.candidates import GroupCandidate
from licensing.model import LicenseAssignment, LicensedGroup, Sku, User

FIXTURES = Path(__file__).resolve().parents[1] / "conformance" / "fixtures"
E3 = "05e9a617-0261-4cee-bb44-138d3ef5d965"
E5 = "06ebc4ee-1bb5-47dd-8120-11324bc54e06"
EXO, YAM, AADP2 = (
    "efb87545-963c-4e0d-99df-69c6916d9eb0",
    "7547a3fe-08ee-4ccb-b430-5077c5041653",
    "eec0eb4f-6444-4f95-aba0-50c24d67f998",
)
SKUS = {
    E3: TenantSku(E3, "SPE_E3", {EXO: "EXCHANGE_S_ENTERPRISE", YAM: "YAMMER_ENTERPRISE"}, 10, 2),
    E5: TenantSku(E5, "SPE_E5", {EXO: "EXCHANGE_S_ENTERPRISE", AADP2: "AAD_PREMIUM_P2"}, 10, 9),
}
GID = "g1"


def candidate(*users: User) -> GroupCandidate:
    group = LicensedGroup(id=GID, display_name="G", user_ids=tuple(u.id for u in users), security_enabled=True)
    tenant_skus = tuple(Sku(k, s.part_number, enabled=s.enabled, consumed=s.consumed) for k, s in SKUS.items())
    return GroupCandidate("t", group, {u.id: u for u in users}, (), tenant_skus, frozenset())


def member(uid: str, *states: LicenseAssignment) -> User:
    return User(id=uid, display_name=uid, user_principal_name=f"{uid}@x", account_enabled=True, user_type="Member",
                usage_location="US", assignments=states)  # fmt: skip


def test_a_swap_is_one_change_per_product_and_plan_changes_name_the_plans() -> None:
    changes = changes_between([Product(E3, (YAM,))], [Product(E5)], SKUS)
    assert [(c.kind, c.part_number) for c in changes] == [(ChangeKind.ADD, "SPE_E5"), (ChangeKind.REMOVE, "SPE_E3")]
    [plans] = changes_between([Product(E3, (YAM,))], [Product(E3, (EXO,))], SKUS)
    assert plans.kind is ChangeKind.PLANS and plans.enable == ("YAMMER_ENTERPRISE",)
    assert plans.disable == ("EXCHANGE_S_ENTERPRISE",)


def test_seats_count_members_without_the_product_elsewhere_and_losses_name_exchange_data_hold() -> None:
    a = member("a", LicenseAssignment(E3, GID, "Active"))
    b = member("b", LicenseAssignment(E3, GID, "Active"), LicenseAssignment(E5, None, "Active"))  # E5 direct
    plan = plan_group_change(GID, "G", (Product(E3),), (Product(E5, (EXO,)),), SKUS, candidate(a, b))
    [seats] = plan.seats
    assert (seats.part_number, seats.needed, seats.free) == ("SPE_E5", 1, 1)
    assert plan.losses == {"EXCHANGE_S_ENTERPRISE": ("a",), "YAMMER_ENTERPRISE": ("a", "b")}
    assert plan.gains == {"AAD_PREMIUM_P2": ("a",)}
    assert plan.users_losing == ("a", "b")
    hold = [w for w in plan.warnings if w.kind == "exchange_data_hold"]
    assert hold and EXCHANGE_HOLD in hold[0].message and "held for 30 days" in EXCHANGE_HOLD


def test_gaining_a_product_brings_the_plan_blockers() -> None:
    guest = User(id="x", display_name="x", user_principal_name="x#EXT#@t", user_type="Guest", account_enabled=True)
    plan = plan_group_change(GID, "G", (), (Product(E5), Product(E3)), SKUS, candidate(guest, member("a")))
    assert "b2b_member" in {b.kind for b in plan.blockers}
    assert "seats_short" in {b.kind for b in plan.blockers}  # E5: 2 needed, 1 free
    assert "all_or_nothing" in {w.kind for w in plan.warnings}


def test_the_body_has_the_shape_of_microsofts_examples() -> None:
    theirs = json.loads((FIXTURES / "group-assignlicense-add.json").read_text())
    ours = assign_body([], [Product(E3, (YAM,)), Product(E5)])
    assert list(ours) == list(theirs)
    assert [list(a) for a in ours["addLicenses"]] == [list(a) for a in theirs["addLicenses"]]
    assert ours["removeLicenses"] == []
    removal = json.loads((FIXTURES / "group-assignlicense-remove.json").read_text())
    ours = assign_body([Product(E3), Product(E5)], [])
    assert ours == {"addLicenses": [], "removeLicenses": sorted([E3, E5])}
    assert list(ours) == list(removal)
    # adds and removes together in one call; a changed disabled plan is an add of the same SKU
    assert assign_body([Product(E3), Product(E5, (EXO,))], [Product(E5)]) == {
        "addLicenses": [{"disabledPlans": [], "skuId": E5}],
        "removeLicenses": [E3],
    }
