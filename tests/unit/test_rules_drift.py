"""licensing.rules.drift: license_drift against the last applied desired state (RuleContext.applied)."""

from __future__ import annotations

from datetime import UTC, datetime

from licensing.changes import Product
from licensing.model import LicenseAssignment, LicensedGroup, Scope, Sku, TenantSnapshot, User
from licensing.rules import RuleContext, evaluate

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
E3 = Sku("05e9a617-0261-4cee-bb44-138d3ef5d965", "SPE_E3", enabled=100, consumed=10)
EMS = Sku("efccb6f7-5641-4e0e-bd10-b4976e1bf68e", "EMS", enabled=100, consumed=10)
YAMMER = "7547a3fe-08ee-4ccb-b430-5077c5041653"
GID = "11111111-1111-4111-8111-111111111111"


def snapshot(sku_ids: tuple[str, ...], disabled: tuple[str, ...] = ()) -> TenantSnapshot:
    group = LicensedGroup(id=GID, display_name="SG-Lic-E3", sku_ids=sku_ids, processing_state="ProcessingComplete",
                          user_ids=("u1",))  # fmt: skip
    states = tuple(LicenseAssignment(s, GID, "Active", disabled_plans=disabled) for s in sku_ids)
    user = User(id="u1", account_enabled=True, user_type="Member", assignments=states)
    return TenantSnapshot(tenant_id="t", scope=Scope.TENANT, skus=(E3, EMS), groups=(group,), users={"u1": user})


def drift(snap: TenantSnapshot, applied: dict[str, tuple[Product, ...]] | None) -> tuple[list[str], str]:
    ev = evaluate(snap, RuleContext(now=NOW, applied=applied))
    [outcome] = [o for o in ev.outcomes if o.rule_id == "license_drift"]
    return [f.message for f in ev.findings if f.kind == "license_drift"], outcome.status


def test_no_journal_no_drift_no_noise() -> None:
    ev = evaluate(snapshot((E3.sku_id, EMS.sku_id)), RuleContext(now=NOW, applied=None))
    [outcome] = [o for o in ev.outcomes if o.rule_id == "license_drift"]
    assert [f for f in ev.findings if f.kind == "license_drift"] == []
    assert outcome.status == "passed" and outcome.reason is None  # nothing said: no noise in any report
    assert not any("license_drift" in e or "journal" in e for e in ev.errors)


def test_the_applied_state_held_is_quiet() -> None:
    assert drift(snapshot((E3.sku_id,), (YAMMER,)), {GID: (Product(E3.sku_id, (YAMMER,)),)})[0] == []


def test_a_product_added_outside_apply() -> None:
    [message], _ = drift(snapshot((E3.sku_id, EMS.sku_id), (YAMMER,)), {GID: (Product(E3.sku_id, (YAMMER,)),)})
    assert "SG-Lic-E3" in message and "added Enterprise Mobility + Security E3" in message


def test_disabled_plans_changed_outside_apply() -> None:
    [message], _ = drift(snapshot((E3.sku_id,), ()), {GID: (Product(E3.sku_id, (YAMMER,)),)})
    assert f"turned on {YAMMER}" in message


def test_a_managed_group_with_no_licence_now_is_all_removed() -> None:
    empty = TenantSnapshot(tenant_id="t", scope=Scope.TENANT, skus=(E3,), groups=(), users={})
    [message], _ = drift(empty, {GID: (Product(E3.sku_id),)})
    assert "removed" in message and "assigns no licence now" in message
