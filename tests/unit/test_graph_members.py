"""Members: what a users scan that reads again keeps of its failed attempt (nothing), and what that makes of a member
the second read does not return."""

from __future__ import annotations

from licensing.graph.members import Members, resolve_members
from licensing.model import LicensedGroup, Part, User

USER = "#microsoft.graph.user"


def _user(ident: str) -> dict[str, object]:
    return {"@odata.type": USER, "id": ident, "userType": "Member", "accountEnabled": True, "assignedLicenses": []}


def test_a_scan_read_again_keeps_nothing_of_its_failed_attempt() -> None:
    users: dict[str, User] = {}
    acc = Members(users)
    acc.add_users([_user("kept"), _user("deleted-between"), _user("not-a-member")])
    acc.add("g1", [{"@odata.type": USER, "id": "kept"}, {"@odata.type": USER, "id": "deleted-between"}])
    acc.forget_scanned()  # the split read came back short of /users/$count: the users are read again
    assert users == {} and acc.scanned == set()
    acc.add_users([_user("kept"), _user("not-a-member")])  # the second read; one member was deleted meanwhile
    groups, unreadable = resolve_members([acc.group(LicensedGroup(id="g1"))], users, scanned=True)
    assert set(users) == {"kept", "not-a-member"}
    assert groups[0].user_ids == ("kept", "deleted-between")
    # The member the second read did not return is unknown now, not the record the first read brought: the run
    # says so (partial) instead of evaluating a user who no longer exists.
    assert [(u.what, u.subject_id) for u in unreadable] == [(Part.USER, "deleted-between")]


def test_a_member_stand_in_from_a_members_page_is_replaced_by_the_scan() -> None:
    users: dict[str, User] = {}
    acc = Members(users)
    acc.add("g1", [{"@odata.type": USER, "id": "u1"}])  # the members page first: a stand-in
    assert users["u1"].account_enabled is None
    acc.add_users([_user("u1")])
    assert users["u1"].account_enabled is True and acc.scanned == {"u1"}
