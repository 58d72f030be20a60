"""The sandbox's opt-in realistic licensing shape: a few large licensed groups next to many small ones."""

from __future__ import annotations

import pytest

from licensing.errors import ConfigurationError
from licensing.model import FindingKind
from licensing.sandbox import TenantSpec, generate_tenant


@pytest.fixture(scope="module")
def realistic():
    return generate_tenant(TenantSpec(seed=11, users=2_000, groups=60, shape="realistic", big_groups=6))


def test_a_few_big_groups_hold_most_users(realistic):
    licensed = sorted((g for g in realistic.groups if g.licensed), key=lambda g: g.member_count, reverse=True)
    all_staff = licensed[0]
    assert all_staff.display_name == "SG-Lic-All-Staff-M365-E3"
    # 70 % of the generic users, give or take the sampling.
    assert 0.6 * realistic.user_count < all_staff.member_count < 0.8 * realistic.user_count
    departments = [g for g in licensed if g.display_name.startswith("SG-Lic-Dept-")]
    assert len(departments) == 5
    assert sum(g.member_count for g in departments) > 0.4 * realistic.user_count
    # Many small groups remain beside them.
    assert sum(1 for g in licensed if g.member_count < 100) > 20


def test_no_user_is_listed_twice_in_a_group(realistic):
    for g in realistic.groups:
        assert len(set(g.users)) == len(g.users), g.display_name


def test_every_finding_kind_is_present_and_counters_hold(realistic):
    kinds = {f.kind for f in realistic.ground_truth}
    # No history for seat_forecast and licensed_group_shrank; the all-staff group's Microsoft 365 E3 includes
    # Entra ID P1 for most users, so P1 coverage is short only in the flat shape.
    assert kinds == set(FindingKind) - {
        FindingKind.SEAT_FORECAST,
        FindingKind.LICENSED_GROUP_SHRANK,
        FindingKind.P1_COVERAGE_SHORT,
        FindingKind.LICENSE_DRIFT,  # needs a journal of licensing-audit apply
    }
    holders: dict[int, set[int]] = {}
    for u in realistic.iter_users():
        for st in realistic.user_states(u):
            if st.holds_seat:  # Active, or ActiveWithError (a removal that failed)
                holders.setdefault(st.sku, set()).add(u)
    for s in realistic.skus:
        assert s.consumed == len(holders.get(s.index, ())), s.part_number


def test_same_spec_same_tenant_and_flat_differs():
    spec = TenantSpec(seed=5, users=600, groups=30, shape="realistic", big_groups=3)
    a, b = generate_tenant(spec), generate_tenant(spec)
    flat = generate_tenant(TenantSpec(seed=5, users=600, groups=30))
    assert [f.id for f in a.ground_truth] == [f.id for f in b.ground_truth]
    assert max(g.member_count for g in a.groups) > 5 * max(g.member_count for g in flat.groups)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"shape": "tall"}, "shape must be one of"),
        ({"shape": "realistic", "big_groups": 0}, "big_groups must be between 1 and"),
        ({"shape": "realistic", "big_groups": 500}, "big_groups must be between 1 and"),
        ({"big_group_share": 1.5}, "big_group_share must be between 0 and 1"),
    ],
)
def test_bad_shape_knobs_are_one_line_errors(extra, message):
    with pytest.raises(ConfigurationError, match=message):
        generate_tenant(TenantSpec(users=200, groups=40, **extra))
