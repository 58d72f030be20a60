"""Unit tests of the reader's JSON-to-record parsing: tolerant of missing and unknown fields, values shared."""

from __future__ import annotations

from licensing.graph.members import Members as _Members
from licensing.graph.parse import parse_group, parse_sku, parse_user
from licensing.model import LicensedGroup, User

STATES = [
    {"skuId": "s1", "assignedByGroup": "g1", "state": "Active", "error": "None", "futureField": 1},
    {"skuId": "s2", "assignedByGroup": None, "state": "Error", "error": "CountViolation"},
]


def test_parse_user_reads_every_rule_field_and_ignores_the_rest() -> None:
    user = parse_user(
        {
            "id": "u1",
            "displayName": "Ada",
            "userPrincipalName": "ada_contoso.com#EXT#@fabrikam.onmicrosoft.com",
            "userType": "Member",
            "externalUserState": "Accepted",
            "creationType": "Invitation",
            "accountEnabled": False,
            "usageLocation": "FR",
            "assignedLicenses": [{"skuId": "s1", "disabledPlans": []}, {"bogus": 1}],
            "licenseAssignmentStates": [*STATES, "not a dict"],
            "sandboxFutureField": {"nested": [1]},
        }
    )
    assert user.is_b2b and user.account_enabled is False and user.usage_location == "FR"
    assert user.assigned_sku_ids == ("s1",)
    assert [(a.sku_id, a.assigned_by_group, a.in_error) for a in user.assignments] == [
        ("s1", "g1", False),
        ("s2", None, True),
    ]
    bare = parse_user({"id": "u2"})
    assert bare == User(id="u2")


def test_parse_sku_and_group() -> None:
    sku = parse_sku(
        {
            "skuId": "s1",
            "skuPartNumber": "ENTERPRISEPACK",
            "consumedUnits": 12,
            "prepaidUnits": {"enabled": 10, "suspended": 1, "warning": 2, "lockedOut": 3},
        }
    )
    assert (sku.enabled, sku.consumed, sku.available, sku.suspended, sku.warning, sku.locked_out) == (
        10,
        12,
        -2,
        1,
        2,
        3,
    )
    group = parse_group(
        {"id": "g1", "displayName": "G", "assignedLicenses": [{"skuId": "s1"}], "licenseProcessingState": None}
    )
    assert group == LicensedGroup(id="g1", display_name="G", sku_ids=("s1",), processing_state=None)


def test_members_are_classified_deduplicated_and_share_their_assignments() -> None:
    users: dict[str, User] = {}
    acc = _Members(users)
    page = [
        {"@odata.type": "#microsoft.graph.user", "id": "u1", "licenseAssignmentStates": STATES},
        {"@odata.type": "#microsoft.graph.user", "id": "u2", "licenseAssignmentStates": STATES},
        {"@odata.type": "#microsoft.graph.group", "id": "n1", "displayName": "Nested"},
        {"@odata.type": "#microsoft.graph.device", "id": "d1"},
        {"@odata.type": "#microsoft.graph.somethingNew", "id": "x1"},
        {"@odata.type": "#microsoft.graph.user", "id": "u1", "licenseAssignmentStates": STATES},
    ]
    acc.add("g1", page)
    acc.add("g2", page[:1])
    g1 = acc.group(LicensedGroup(id="g1"))
    assert g1.user_ids == ("u1", "u2") and [m.id for m in g1.member_groups] == ["n1"] and g1.other_members == 2
    assert acc.group(LicensedGroup(id="g2")).user_ids == ("u1",)
    assert set(users) == {"u1", "u2"}
    assert users["u1"].assignments is users["u2"].assignments
    assert users["u1"].assignments == parse_user({"id": "u1", "licenseAssignmentStates": STATES}).assignments
