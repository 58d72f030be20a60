"""The rule engine as a whole: stable ids, deterministic order, scopes, and the sandbox's ground truth."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from licensing.model import (
    GroupRef,
    LicenseAssignment,
    LicensedGroup,
    Sku,
    TenantSnapshot,
    User,
    finding_id,
)
from licensing.rules import Evaluation, RuleContext, evaluate, subject_of
from licensing.sandbox import TenantSpec, generate_tenant
from licensing.sandbox.inprocess import read_in_process
from licensing.settings import Settings

NOW = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
ERRORS = ("None", "None", "None", "CountViolation", "MutuallyExclusiveViolation", "DependencyViolation", "Other")


def random_snapshot(seed: int, users: int = 300, groups: int = 12, skus: int = 4) -> TenantSnapshot:
    """A messy tenant: guests, disabled users, nested groups, errors, direct assignments, odd counters."""
    rng = random.Random(seed)
    sku_list = [
        Sku(
            sku_id=f"{k:08x}-0000-4000-8000-{seed:012x}",
            sku_part_number=rng.choice(["ENTERPRISEPACK", "SPE_E5", "EMS", "POWER_BI_PRO", "CUSTOM"]) + f"_{k}",
            applies_to="Company" if k == skus - 1 else "User",
            enabled=rng.choice([0, 10, 100, 250]),
            consumed=rng.randrange(0, 260),
            warning=rng.choice([0, 0, 3]),
            suspended=rng.choice([0, 0, 0, 1]),
        )
        for k in range(skus)
    ]
    group_ids = [f"g{j:03d}-{seed}" for j in range(groups)]
    members: dict[str, list[str]] = {g: [] for g in group_ids}
    user_map: dict[str, User] = {}
    for i in range(users):
        uid = f"u{i:05d}-{seed}"
        mine = rng.sample(group_ids, rng.choice([1, 1, 1, 2, 3]))
        assignments = []
        for g in mine:
            members[g].append(uid)
            sku = sku_list[group_ids.index(g) % skus].sku_id
            error = rng.choice(ERRORS)
            state = "Active" if error == "None" else rng.choice(["Error", "ActiveWithError"])
            assignments.append(LicenseAssignment(sku, g, state, error))
        if rng.random() < 0.1:
            assignments.append(LicenseAssignment(rng.choice(sku_list).sku_id, None, "Active"))
        user_map[uid] = User(
            id=uid,
            display_name=f"User {i}",
            user_principal_name=f"user{i}{'#EXT#' if rng.random() < 0.05 else ''}@contoso.com",
            user_type=rng.choice(["Member"] * 9 + ["Guest"]),
            account_enabled=rng.random() > 0.1,
            assignments=tuple(assignments),
        )
    group_list = [
        LicensedGroup(
            id=g,
            display_name=f"Group {j}",
            sku_ids=(sku_list[j % skus].sku_id,),
            processing_state=rng.choice(["ProcessingComplete"] * 4 + ["ProcessingInProgress"]),
            user_ids=tuple(members[g]) if j != 0 else (),
            member_groups=tuple(GroupRef(f"n{j}-{n}", f"Nested {n}") for n in range(rng.choice([0, 0, 1, 2]))),
        )
        for j, g in enumerate(group_ids)
    ]
    return TenantSnapshot(tenant_id="t", skus=tuple(sku_list), groups=tuple(group_list), users=user_map)


def run(snap: TenantSnapshot, **ctx: object) -> Evaluation:
    return evaluate(snap, RuleContext(now=NOW, **ctx))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(8))
def test_ids_are_the_fingerprint_of_kind_and_subject_and_unique(seed: int) -> None:
    ev = run(random_snapshot(seed))
    assert ev.findings, "the generated tenant has problems"
    for f in ev.findings:
        assert f.id == finding_id(f.kind, *subject_of(f))
    assert len({f.id for f in ev.findings}) == len(ev.findings), "different problems never share an id"
    assert len({(f.kind, subject_of(f)) for f in ev.findings}) == len(ev.findings)


@pytest.mark.parametrize("seed", range(4))
def test_same_tenant_in_any_order_gives_the_same_findings_in_the_same_order(seed: int) -> None:
    snap = random_snapshot(seed)
    rng = random.Random(seed)
    users = list(snap.users.items())
    rng.shuffle(users)
    groups = list(snap.groups)
    rng.shuffle(groups)
    shuffled = replace(snap, users=dict(users), groups=tuple(groups), skus=tuple(reversed(snap.skus)))
    first, second = run(snap), run(shuffled)
    assert first.findings == second.findings
    assert first.skus == second.skus and first.groups == second.groups
    assert first.outcomes == second.outcomes


def test_findings_are_sorted_by_severity_kind_and_subject() -> None:
    ev = run(random_snapshot(3))
    ranks = [f.severity.rank for f in ev.findings]
    assert ranks == sorted(ranks, reverse=True)
    from licensing.model import FindingKind

    order = {k.value: i for i, k in enumerate(FindingKind)}
    keys = [(-f.severity.rank, order[f.kind], subject_of(f)) for f in ev.findings]
    assert keys == sorted(keys)


def test_the_same_problem_on_the_next_night_keeps_its_id() -> None:
    snap = random_snapshot(5)
    night1 = {f.id: f for f in run(snap).findings}
    # Next night one more user joins and the seat counters move: unrelated problems keep their ids.
    newcomer = User(id="new-user", display_name="New", user_principal_name="new@contoso.com", account_enabled=True)
    g0 = snap.groups[1]
    groups = (snap.groups[0], replace(g0, user_ids=(*g0.user_ids, "new-user")), *snap.groups[2:])
    skus = tuple(replace(s, consumed=s.consumed + 1) for s in snap.skus)
    night2 = {
        f.id: f
        for f in run(replace(snap, users={**snap.users, "new-user": newcomer}, groups=groups, skus=skus)).findings
    }
    group_kinds = {
        "b2b_member",
        "nested_group",
        "license_error",
        "disabled_user_licensed",
        "redundant_direct_assignment",
    }
    stable = {i for i, f in night1.items() if f.kind in group_kinds}
    assert stable and stable <= set(night2)


def test_every_rule_reports_an_outcome_and_a_clean_tenant_passes() -> None:
    # Microsoft 365 E3 includes Entra ID P1, which group-based licensing needs for every user it serves.
    sku = Sku(sku_id="s1", sku_part_number="SPE_E3", enabled=100, consumed=1)
    group = LicensedGroup(
        id="g1", display_name="E3", sku_ids=("s1",), user_ids=("u1",), processing_state="ProcessingComplete"
    )
    u = User(id="u1", account_enabled=True, user_type="Member", assignments=(LicenseAssignment("s1", "g1", "Active"),))
    # A store with nothing in it yet: no SKU history, no earlier run's member counts.
    ev = run(
        TenantSnapshot(
            tenant_id="t", skus=(sku,), groups=(group,), users={"u1": u}, subscriptions_read=True, sign_ins_read=True
        ),
        history={},
        previous_members={},
    )
    assert not ev.findings and not ev.errors
    statuses = {o.rule_id: o.status for o in ev.outcomes}
    assert statuses.pop("seat_forecast") == "not_evaluated"  # no history points for the SKU
    assert set(statuses.values()) == {"passed"}
    assert all(o.findings == 0 for o in ev.outcomes)


def test_outcome_counts_match_findings() -> None:
    ev = run(random_snapshot(1))
    for o in ev.outcomes:
        assert o.findings == sum(1 for f in ev.findings if f.kind == o.rule_id)
        assert (o.status == "failed") == (o.findings > 0)


def test_context_from_settings() -> None:
    settings = Settings(
        seat_min_free=7, seat_min_free_pct=2.5, forecast_days=14, processing_stuck_hours=6, expected_group_skus=("EMS",)
    )
    ctx = RuleContext.from_settings(settings, now=NOW, history={}, processing_since={"g": NOW})
    assert (ctx.seat_min_free, ctx.seat_min_free_pct, ctx.forecast_days, ctx.processing_stuck_hours) == (7, 2.5, 14, 6)
    assert ctx.expected_group_skus == ("EMS",) and ctx.history == {} and ctx.processing_since == {"g": NOW}
    assert RuleContext.from_settings(settings, now=NOW).history is None


def test_a_large_tenant_evaluates_in_one_pass() -> None:
    # 20k users / 200 groups: a smoke test of the indexed path (the 300k benchmark lives outside unit tests).
    ev = run(random_snapshot(11, users=20_000, groups=200, skus=6))
    assert len(ev.groups) == 200 and len(ev.findings) > 1000


# ---------------------------------------------------------------- the sandbox's independent ground truth


@pytest.mark.parametrize(
    ("seed", "as_of"),
    [(1, NOW), (2, NOW), (7, NOW), (1, datetime(2031, 2, 28, 12, tzinfo=UTC)), (7, datetime(2024, 2, 29, tzinfo=UTC))],
)
def test_rules_agree_with_the_sandbox_ground_truth(seed: int, as_of: datetime) -> None:
    # The tenant stands at as_of and the rules judge at as_of: the same answer whatever the wall clock says.
    tenant = generate_tenant(TenantSpec(seed=seed, users=400, groups=30), as_of=as_of)
    ev = evaluate(read_in_process(tenant), RuleContext.from_settings(Settings(), now=as_of))
    got = {(f.id, f.kind, f.severity.value) for f in ev.findings}
    want = {(e.id, e.kind, e.severity.value) for e in tenant.ground_truth}
    assert got - want == set(), "findings the ground truth does not expect"
    assert want - got == set(), "expected findings the rules missed"
    assert {e.kind for e in tenant.ground_truth} >= {"b2b_member", "nested_group", "license_error", "seat_shortage"}
