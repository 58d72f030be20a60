"""The reader's parsers and the rules on Microsoft's own published example bodies (fixtures/SOURCES.md)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson

from licensing.graph import GraphClient, RetryPolicy
from licensing.graph.members import Members, resolve_members
from licensing.graph.pacing import SMALLEST_QUOTA
from licensing.graph.parse import is_limited, parse_assignment, parse_group, parse_sku, parse_user, tenant_of_sku
from licensing.model import LicensedGroup, Scope, Severity, TenantSnapshot, User
from licensing.rules import RuleContext, evaluate
from licensing.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)


def body(name: str) -> Any:
    return orjson.loads((FIXTURES / name).read_bytes())


def test_the_suspended_sku_of_microsofts_example_is_a_lifecycle_problem_never_a_shortage() -> None:
    skus = [parse_sku(item) for item in body("subscribedskus-list.json")["value"]]
    active, suspended = skus
    assert (suspended.sku_part_number, suspended.capability_status) == ("CRMSTANDARD", "Suspended")
    assert (suspended.enabled, suspended.suspended, suspended.consumed) == (0, 25, 14)
    assert suspended.in_lifecycle_only and not active.in_lifecycle_only
    snapshot = TenantSnapshot(tenant_id="t", skus=tuple(skus), read_at=NOW)
    ev = evaluate(snapshot, RuleContext(now=NOW))
    kinds = {(f.kind, f.sku_part_number, f.severity) for f in ev.findings}
    assert ("units_expiring", "CRMSTANDARD", Severity.CRITICAL) in kinds
    assert not [f for f in ev.findings if f.kind in ("seat_shortage", "seat_low", "seat_forecast")]
    # The Enabled SKU (25 enabled, 14 consumed) has seats: its only finding is that no group assigns it (it is an
    # expected group-licensed product and the example tenant has no groups).
    assert [f.kind for f in ev.findings if f.sku_part_number == "ENTERPRISEPREMIUM"] == [
        "expected_sku_not_group_assigned"
    ]
    [expiring] = [f for f in ev.findings if f.kind == "units_expiring"]
    assert "no seat is active" in expiring.message


def test_the_tenant_is_the_prefix_of_the_sku_id_never_the_billing_account() -> None:
    items = body("subscribedskus-list.json")["value"]
    tenants = {tenant_of_sku(item) for item in items}
    assert tenants == {"48a80680-7326-48cd-9935-b556b81d3a4e"}
    # The two SKUs belong to two billing accounts, neither of which is the tenant.
    assert {item["accountId"] for item in items}.isdisjoint(tenants)


def test_groups_with_licenses_of_microsofts_example() -> None:
    groups = [parse_group(item) for item in body("group-list-with-licenses.json")["value"]]
    assert [(g.id, g.sku_ids, g.processing_state) for g in groups] == [
        ("5caf712c-8483-4b3d-8384-d8da988c0ca4", ("6fd2c87f-b296-42f0-b197-1e91e994b900",), None),
        ("aae8ec2a-5a08-4013-ae70-fafbb5c20de1", ("18181a46-0d4e-45cd-891e-60aabd171b4e",), None),
    ]
    # The expanded members there carry @odata.type: they are users.
    acc = Members({})
    acc.add(groups[0].id, body("group-list-with-licenses.json")["value"][0]["members"])
    assert acc.group(groups[0]).user_ids == (
        "0952e4c8-432f-4950-a65c-769c45993527",
        "49e373b6-4717-40c6-ad43-843c45a258f0",
    )


def test_members_without_odata_type_are_told_apart_by_the_users_scan() -> None:
    untyped = body("group-list-members.json")["value"] + body("group-list-members-cast-user.json")["value"]
    acc = Members({})
    acc.add("g1", untyped)
    group = acc.group(LicensedGroup(id="g1", sku_ids=("s1",)))
    assert group.user_ids == () and len(group.unknown_members) == 2  # duplicates count once
    known = {"11111111-2222-3333-4444-555555555555": User(id="11111111-2222-3333-4444-555555555555")}
    [resolved], _ = resolve_members([group], known, scanned=False)
    assert resolved.user_ids == ("11111111-2222-3333-4444-555555555555",)
    assert resolved.other_members == 1 and resolved.unknown_members == ()
    [unknown], _ = resolve_members([group], {}, scanned=False)
    assert unknown.user_ids == () and unknown.other_members == 2


def test_license_assignment_state_values_are_stripped_and_canonical() -> None:
    shape = body("licenseassignmentstate.json")
    parsed = parse_assignment(shape)
    assert parsed is not None
    # Microsoft's own JSON shows the error padded: " String ".
    assert parsed.error == "String" and parsed.sku_id == "string"
    odd = parse_assignment(
        {
            "skuId": " S1 ",
            "assignedByGroup": "G1",
            "state": " activewitherror",
            "error": " None",
            "lastUpdatedDateTime": 1,
        }
    )
    assert odd is not None
    assert (odd.sku_id, odd.assigned_by_group, odd.state, odd.error, odd.in_error) == (
        "s1",
        "g1",
        "ActiveWithError",
        "None",
        True,
    )
    assert odd.last_updated is None


def test_processing_state_as_object_or_bare_string_and_unknown_values_are_incomplete() -> None:
    as_object = parse_group({"id": "g", "licenseProcessingState": {"state": "processingcomplete"}})
    as_string = parse_group({"id": "g", "licenseProcessingState": " ProcessingComplete "})
    failed = parse_group(
        {"id": "g", "assignedLicenses": [{"skuId": "s"}], "licenseProcessingState": "ProcessingFailed"}
    )
    assert as_object.processing_state == as_string.processing_state == "ProcessingComplete"
    ev = evaluate(TenantSnapshot(tenant_id="t", groups=(failed,), read_at=NOW), RuleContext(now=NOW))
    assert [f.kind for f in ev.findings if f.group_id == "g"] == ["processing_incomplete", "empty_licensed_group"]


def test_limited_information_is_recognised() -> None:
    # group-list-members: "only the @odata.type property for the object type and the id is returned, while other
    # properties are indicated as null".
    limited = {"@odata.type": "#microsoft.graph.user", "id": "u1", "accountEnabled": None, "userType": None}
    full = {"id": "u2", "accountEnabled": True, "licenseAssignmentStates": []}
    assert is_limited(limited) and not is_limited(full)
    assert parse_user(limited).account_enabled is None


def test_batch_answers_are_matched_by_id_in_any_order() -> None:
    """Microsoft's example batch response, served in reverse order to a five-request batch."""
    example = body("json-batching-response.json")
    seen: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        ids = [r["id"] for r in orjson.loads(request.content)["requests"]]
        seen.append(ids)
        answers = [a for a in example["responses"] if a["id"] in {str(int(i) + 1) for i in ids}]
        # Our ids are 0-based, the example's 1-based.
        renumbered = [{**a, "id": str(int(a["id"]) - 1)} for a in answers]
        return httpx.Response(200, json={"responses": list(reversed(renumbered))})

    async def main() -> list[Any]:
        settings = Settings(graph_base_url="http://127.0.0.1:9/v1.0")
        client = GraphClient(
            settings,
            credential="none",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            retry=RetryPolicy(max_attempts=1),
        )
        try:
            subs = [(f"/x{i}", "/groups/{id}/members", {}) for i in range(5)]
            return await client.batch_get(subs)
        finally:
            await client.aclose()

    results = asyncio.run(main())
    assert results[0]["value"][0]["displayName"] == "User Administrator"
    assert results[4]["value"][0]["userPrincipalName"] == "LynneR@contoso.com"
    assert all(type(r).__name__ in ("GraphPermissionError", "GraphResponseError") for r in results[1:4])
    assert seen == [["0", "1", "2", "3", "4"]]


def test_microsofts_sample_429_is_waited_out_by_every_sender_and_starts_pacing() -> None:
    """throttling.md, "Sample response": 429 with ``Retry-After: 2.128`` (fractional seconds) and the TooManyRequests
    body. Every sender waits the 2.128 s (https://learn.microsoft.com/graph/throttling: "Wait the number of seconds
    specified in the Retry-After header"), and pacing starts: a 429 without x-ms-throttle-limit-percentage does not
    say the limit, so the smallest documented quota stands in (pacing.py)."""
    sample = (FIXTURES / "throttling-429-response.json").read_bytes()
    sleeps: list[float] = []
    answers = iter([429, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        if next(answers) == 429:
            headers = {"Content-Type": "application/json", "Retry-After": "2.128"}
            return httpx.Response(429, content=sample, headers=headers)
        return httpx.Response(200, json={"value": []}, headers={"x-ms-resource-unit": "1"})

    async def record(seconds: float) -> None:
        sleeps.append(round(seconds, 3))

    async def main() -> GraphClient:
        settings = Settings(graph_base_url="http://127.0.0.1:9/v1.0")
        client = GraphClient(
            settings,
            credential="none",
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
            retry=RetryPolicy(sleep=record),
        )
        try:
            await client.get_json("/groups", route="/groups")
            await client.get_json("/users", route="/users")  # another sender: the pause held it too
        finally:
            await client.aclose()
        return client

    client = asyncio.run(main())
    assert sleeps[0] == 2.128 and client.stats.throttled == 1 and client.stats.retried == 1
    assert client.pacer.throttled == 1 and client.pacer.limit == SMALLEST_QUOTA


def test_users_of_the_scan_shape_feed_every_user_rule() -> None:
    """A user shaped as the user-list $select returns it, with states in the documented value set."""
    item = {
        "id": "u1",
        "displayName": "Ada",
        "userPrincipalName": "ada@contoso.com",
        "accountEnabled": False,
        "userType": "Member",
        "licenseAssignmentStates": [
            {"skuId": "s1", "assignedByGroup": "g1", "state": "Active", "error": None, "disabledPlans": []}
        ],
    }
    acc = Members({})
    acc.add_users([item])
    users = acc.users
    group = LicensedGroup(id="g1", sku_ids=("s1",), user_ids=("u1",), processing_state="ProcessingComplete")
    snapshot = TenantSnapshot(tenant_id="t", scope=Scope.TENANT, groups=(group,), users=users, read_at=NOW)
    ev = evaluate(snapshot, RuleContext(now=NOW))
    assert [f.kind for f in ev.findings] == ["disabled_user_licensed"]


def test_group_kinds_of_microsofts_create_group_examples() -> None:
    """securityEnabled, groupTypes and the dynamic rule as Microsoft's own bodies carry them (docs/plan.md)."""
    from licensing.graph.candidates import GroupCandidate
    from licensing.plan.assess import Blocker, assess

    unified = parse_group(body("group-create-unified.json"))
    assert (unified.security_enabled, unified.group_types, unified.dynamic) == (False, ("Unified",), False)
    security = parse_group(body("group-create-security.json"))
    assert (security.security_enabled, security.group_types, security.membership_rule) == (True, (), None)
    assert security.rule_processing is None and not security.dynamic
    dynamic = parse_group(body("groups-overview-create-dynamic.json"))
    assert dynamic.dynamic and dynamic.rule_processing == "On"
    assert dynamic.membership_rule == 'user.department -eq "Marketing"'
    assert dynamic.security_enabled is None, "the shortened example does not say; never read as False"
    # The request of the same example sends "on": the value is matched without case.
    assert (
        parse_group(
            {**body("groups-overview-create-dynamic.json"), "membershipRuleProcessingState": "on"}
        ).rule_processing
        == "On"
    )

    def blockers(group: LicensedGroup) -> set[str]:
        sku = parse_sku(body("subscribedskus-list.json")["value"][1])
        plan = assess(GroupCandidate("t", group, {}, (sku,), (sku,), frozenset()))
        return {b.kind.value for b in plan.blockers}

    assert blockers(unified) == {Blocker.NOT_SECURITY_ENABLED.value}
    assert blockers(security) == set()
    assert blockers(dynamic) == {Blocker.DYNAMIC_RULE_ADMITS_GUESTS.value}


def test_service_plans_of_microsofts_subscribed_skus_example() -> None:
    skus = [parse_sku(item) for item in body("subscribedskus-list.json")["value"]]
    plans = {s.sku_part_number: s.service_plans for s in skus}
    assert plans["ENTERPRISEPREMIUM"] and all(len(p) == 36 for p in plans["ENTERPRISEPREMIUM"])
    # Without servicePlans in the answer the plans are unknown (None), not "none".
    assert parse_sku({"skuId": "x", "skuPartNumber": "Y"}).service_plans is None


def test_failed_attempts_and_the_placeholder_of_microsofts_list_users_example_are_no_sign_in() -> None:
    """user-list example 11: both users only *attempted* to sign in (lastSuccessfulSignInDateTime is ""), and one
    non-interactive date is the placeholder 0001-01-01: neither is activity (signInActivity resource)."""
    from licensing.graph.parse import SUCCESS_RECORDED_SINCE
    from licensing.model import LicenseAssignment
    from licensing.rules.reclaim import is_inactive

    users = [parse_user(u) for u in body("user-list-signinactivity.json")["value"]]
    assert [u.last_sign_in for u in users] == [None, None], "attempts are not successful sign-ins"
    assert all(u.sign_ins_since == SUCCESS_RECORDED_SINCE for u in users)
    # Accounts from 2021 that only receive failed attempts are inactive; one created 10 days ago is not.
    old = [replace(u, created=datetime(2021, 1, 4, tzinfo=UTC)) for u in users]
    assert all(is_inactive(u, NOW, 90) for u in old)
    assert not is_inactive(replace(users[0], created=NOW - timedelta(days=10)), NOW, 90)
    # Early in 2024 an empty value says only "none since 2023-12-01": not yet 90 days without one.
    assert not is_inactive(old[0], datetime(2024, 2, 1, tzinfo=UTC), 90)
    # The finding says what is known, never "last signed in 1-01-01".
    seat = (LicenseAssignment("s1", "g1", "Active"),)
    who = replace(old[0], account_enabled=True, user_type="Member", assignments=seat)
    group = LicensedGroup(id="g1", sku_ids=("s1",), user_ids=(who.id,), processing_state="ProcessingComplete")
    snapshot = TenantSnapshot(
        tenant_id="t", scope=Scope.TENANT, groups=(group,), users={who.id: who}, read_at=NOW, sign_ins_read=True
    )
    [finding] = [f for f in evaluate(snapshot, RuleContext(now=NOW)).findings if f.kind == "inactive_user_licensed"]
    assert "not signed in successfully since 2023-12-01" in finding.message and "1-01-01" not in finding.message


def test_attempt_dates_stand_in_only_when_the_successful_property_is_absent() -> None:
    from licensing.graph.parse import last_sign_in

    attempts = {
        "lastSignInDateTime": "2026-08-01T00:00:00Z",
        "lastNonInteractiveSignInDateTime": "0001-01-01T00:00:00Z",
    }
    assert last_sign_in(attempts) == datetime(2026, 8, 1, tzinfo=UTC), "an answer without the property: attempts"
    for empty in ("", None, "0001-01-01T00:00:00Z", "not a date"):
        assert last_sign_in({**attempts, "lastSuccessfulSignInDateTime": empty}) is None
    served = {**attempts, "lastSuccessfulSignInDateTime": "2026-07-01T08:00:00Z"}
    assert last_sign_in(served) == datetime(2026, 7, 1, 8, tzinfo=UTC), "the successful one alone decides"


def test_a_refused_sign_in_scan_names_the_licence_or_audit_log_never_user_read_all() -> None:
    """The sign-in scan's 403s: a tenant without P1/P2 (our body in Graph's error shape) needs a licence, not a
    permission; a missing permission there is AuditLog.Read.All (List users), never User.Read.All."""
    from licensing.graph.responses import SIGN_IN_ROUTE, graph_error

    error = body("ours-nonpremium-signinactivity-403.json")["error"]
    licence = graph_error(403, SIGN_IN_ROUTE, "GET /users", error["code"], error["message"])
    assert "P1 or P2" in licence.message and "Read.All" not in licence.message
    assert getattr(licence, "permission", "x") is None
    denied = graph_error(403, SIGN_IN_ROUTE, "GET /users", "Authorization_RequestDenied", "Insufficient privileges")
    assert denied.message.endswith("AuditLog.Read.All") and "User.Read.All" not in denied.message
    assert graph_error(403, "/users", "GET /users").message.endswith("User.Read.All"), "the plain scan is unchanged"


def _plan_for(sku_body: dict[str, Any]) -> Any:
    from licensing.graph.candidates import GroupCandidate
    from licensing.plan import assess

    sku = parse_sku(sku_body)
    members = {f"u{i}": User(id=f"u{i}", account_enabled=True, user_type="Member", usage_location="US") for i in "1234"}
    group = LicensedGroup(id="g", display_name="Sales", user_ids=tuple(members), security_enabled=True)
    return assess(
        GroupCandidate(
            tenant_id="t",
            group=group,
            members=members,
            skus=(sku,),
            tenant_skus=(sku,),
            group_licensed_users=frozenset(),
        )
    )


def test_plan_with_a_company_sku_is_a_blocker_never_seats_to_buy() -> None:
    """subscribedSku.appliesTo: "Only SKUs with target class User are assignable" (our Company body)."""
    from licensing.plan import Blocker, Verdict

    plan = _plan_for(body("ours-subscribedsku-company.json")["value"][0])
    assert plan.verdict is Verdict.UNSUITABLE
    assert [b.kind for b in plan.blockers] == [Blocker.SKU_NOT_ASSIGNABLE]
    assert "Company" in plan.blockers[0].message and "buy" not in plan.blockers[0].message


def test_plan_on_microsofts_suspended_sku_says_one_free_count_never_negative() -> None:
    """The Suspended SKU of List subscribedSkus: enabled 0, consumed 14: 0 free, the same in every line."""
    from licensing.plan import summary_lines

    plan = _plan_for(body("subscribedskus-list.json")["value"][1])
    [row] = plan.skus
    [short] = plan.blockers
    assert row.free == 0 and "0 are free" in short.message and "buy 4" in short.message
    lines = "\n".join(summary_lines(plan))
    assert "-14" not in lines and "4 need a seat, 0 free" in lines
