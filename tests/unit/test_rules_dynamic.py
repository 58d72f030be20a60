"""licensing.rules.dynamic: paused and guest-admitting dynamic groups, groups that shrank, Entra ID P1 coverage."""

from __future__ import annotations

from datetime import UTC, datetime

from licensing.model import LicensedGroup, Part, Scope, Sku, TenantSnapshot, Unreadable, User
from licensing.rules import RuleContext, evaluate

NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
# Power BI Pro licenses nothing for group-based licensing (no Entra ID P1 plan, not an Office 365 suite).
E3 = Sku("f8a1db68-be16-40ed-86d5-cb42ce701560", "POWER_BI_PRO", enabled=100, consumed=10)
M365_E3 = Sku("05e9a617-0261-4cee-bb44-138d3ef5d965", "SPE_E3", enabled=3, consumed=3)  # includes P1 (the table)


def group(gid: str, users: int, **fields: object) -> LicensedGroup:
    return LicensedGroup(
        id=gid,
        display_name=gid,
        sku_ids=(E3.sku_id,),
        processing_state="ProcessingComplete",
        user_ids=tuple(f"{gid}-u{i}" for i in range(users)),
        **fields,  # type: ignore[arg-type]
    )


def users_of(*groups: LicensedGroup) -> dict[str, User]:
    return {u: User(id=u, account_enabled=True, user_type="Member") for g in groups for u in g.user_ids}


def findings(snapshot: TenantSnapshot, **ctx: object) -> dict[str, list[str]]:
    ev = evaluate(snapshot, RuleContext(now=NOW, **ctx))  # type: ignore[arg-type]
    out: dict[str, list[str]] = {}
    for f in ev.findings:
        out.setdefault(f.kind, []).append(f.group_id or "tenant")
    return out


def outcome(snapshot: TenantSnapshot, rule: str, **ctx: object) -> tuple[str, str | None]:
    ev = evaluate(snapshot, RuleContext(now=NOW, **ctx))  # type: ignore[arg-type]
    [o] = [o for o in ev.outcomes if o.rule_id == rule]
    return o.status.value, o.reason


def snap(*groups: LicensedGroup, skus: tuple[Sku, ...] = (E3, M365_E3), **fields: object) -> TenantSnapshot:
    return TenantSnapshot(
        tenant_id="t",
        skus=skus,
        groups=groups,
        users=users_of(*groups),
        read_at=NOW,
        **fields,  # type: ignore[arg-type]
    )


def test_paused_and_open_dynamic_groups() -> None:
    paused = group(
        "paused",
        1,
        group_types=("DynamicMembership",),
        membership_rule='(user.userType -eq "Member")',
        rule_processing="Paused",
    )
    open_rule = group(
        "open", 1, group_types=("DynamicMembership",), membership_rule='(user.dept -eq "x")', rule_processing="On"
    )
    static = group("static", 1, membership_rule=None)  # assigned membership: neither rule applies
    got = findings(snap(paused, open_rule, static))
    assert got["dynamic_group_paused"] == ["paused"]
    assert got["dynamic_rule_admits_guests"] == ["open"]


def test_shrank_above_the_threshold_only() -> None:
    g20, g21, grew = group("g20", 80), group("g21", 79), group("grew", 5)
    previous = {"g20": 100, "g21": 100, "grew": 2, "gone-since": 50}
    got = findings(snap(g20, g21, grew), previous_members=previous, group_drop_pct=20.0)
    assert got["licensed_group_shrank"] == ["g21"], "exactly 20 % lost is not more than 20 %"
    assert "licensed_group_shrank" not in findings(snap(g20, g21, grew), previous_members=previous, group_drop_pct=25)


def test_shrank_needs_the_store_and_skips_unread_groups() -> None:
    assert outcome(snap(group("g", 1)), "licensed_group_shrank")[0] == "not_evaluated"
    status, reason = outcome(snap(group("g", 1)), "licensed_group_shrank", previous_members={})
    assert status == "passed" and reason and "no earlier tenant run" in reason
    unread = group("g", 0, members_read=False)
    s = snap(unread, unreadable=(Unreadable(Part.MEMBERS, "g", "403"),))
    got = findings(s, previous_members={"g": 40})
    assert "licensed_group_shrank" not in got, "members not read are never 'lost'"


def test_p1_coverage_counts_unique_direct_users_against_premium_seats() -> None:
    a, b = group("a", 2), group("b", 2)
    both = LicensedGroup(id="c", sku_ids=(E3.sku_id,), processing_state="ProcessingComplete", user_ids=a.user_ids)
    # 4 unique users (c repeats a's), 3 seats that count (Microsoft 365 E3 per the table; Power BI Pro does not).
    assert findings(snap(a, b, both))["p1_coverage_short"] == ["tenant"]
    assert "p1_coverage_short" not in findings(snap(a, group("b", 1)))  # 3 users, 3 seats


def test_p1_coverage_reads_the_service_plans_graph_returned() -> None:
    a = group("a", 2)
    # The same SKU id, but Graph says its plans: without the P1 plan it grants nothing, whatever the table says.
    no_p1 = Sku(M365_E3.sku_id, "SPE_E3", enabled=50, service_plans=("efb87545-963c-4e0d-99df-69c6916d9eb0",))
    assert findings(snap(a, skus=(E3, no_p1)))["p1_coverage_short"] == ["tenant"]
    with_p2 = Sku("x-sku", "CUSTOM", enabled=2, service_plans=("EEC0EB4F-6444-4F95-ABA0-50C24D67F998",))
    assert "p1_coverage_short" not in findings(snap(a, skus=(E3, with_p2)))
    company = Sku("y-sku", "AAD_PREMIUM", applies_to="Company", enabled=100)
    assert findings(snap(a, skus=(E3, company)))["p1_coverage_short"] == ["tenant"], "Company SKUs serve no users"


def test_office_365_e3_and_above_count_as_microsoft_says() -> None:
    a = group("a", 4)
    # Office 365 E3 has no Entra ID P1 plan, yet Microsoft names it (and above) as licensing group-based licensing:
    # told by the plans Graph serves (Exchange Online Plan 2 and SharePoint Online Plan 2, commercial or GCC).
    exo2, spo2 = "efb87545-963c-4e0d-99df-69c6916d9eb0", "5dbe027f-2339-4123-9542-606e4d348a72"
    o365 = Sku("6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK", enabled=1, service_plans=(exo2, spo2))
    assert "p1_coverage_short" not in findings(snap(a, skus=(E3, M365_E3, o365)))
    assert findings(snap(a, skus=(E3, M365_E3)))["p1_coverage_short"] == ["tenant"]
    gcc_g5 = ("8c3069c0-ccdb-44be-ab77-986203a67df2", "153f85dd-d912-4762-af6c-d6e0fb4f6692")
    g5 = Sku("1341559b-49df-443c-8e79-fa604fed2d82", "ENTERPRISEPREMIUM_NOPSTNCONF_NOPBI_GOV", enabled=1)
    assert "p1_coverage_short" not in findings(snap(a, skus=(E3, M365_E3, g5))), "GCC G5 by the shipped table"
    served = Sku(g5.sku_id, g5.sku_part_number, enabled=1, service_plans=gcc_g5)
    assert "p1_coverage_short" not in findings(snap(a, skus=(E3, M365_E3, served))), "and by its plans"
    e4 = Sku("1392051d-0cb9-4b7a-88d5-621fee5e8711", "ENTERPRISEWITHSCAL", enabled=1)
    assert "p1_coverage_short" not in findings(snap(a, skus=(E3, M365_E3, e4))), "Office 365 E4"


def test_p1_coverage_is_not_evaluated_on_what_was_not_read() -> None:
    a = group("a", 3)
    unread = snap(a, group("b", 0, members_read=False), unreadable=(Unreadable(Part.MEMBERS, "b", "403"),))
    assert outcome(unread, "p1_coverage_short")[0] == "not_evaluated"
    skus_unread = snap(a, skus=(), unreadable=(Unreadable(Part.SKUS, None, "403"),))
    assert outcome(skus_unread, "p1_coverage_short")[0] == "not_evaluated"
    scoped = snap(a, scope=Scope.GROUP, scope_id="a")
    assert outcome(scoped, "p1_coverage_short")[0] == "not_evaluated"
