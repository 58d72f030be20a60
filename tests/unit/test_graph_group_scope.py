"""The cost rule and the requests of a group-scoped read (licensing/graph/group_scope.py), without a server."""

from __future__ import annotations

from urllib.parse import unquote

from licensing.graph import group_scope
from licensing.graph.group_scope import IDS_PER_REQUEST, TARGETED_WITHOUT_COUNT, targeted_costs_less


def test_users_by_id_cost_a_request_per_15_and_the_scan_a_page_per_500() -> None:
    assert IDS_PER_REQUEST == 15
    # 100,000 users are 200 scan pages: up to 3,000 users by id cost no more.
    assert targeted_costs_less(3_000, 100_000) and not targeted_costs_less(3_001, 100_000)
    assert targeted_costs_less(50, 100_000)
    # A tiny tenant is one scan page: more than 15 users by id cost more.
    assert targeted_costs_less(15, 60) and not targeted_costs_less(16, 60)
    assert targeted_costs_less(1, 0)  # an empty count never makes a zero-page scan look free


def test_up_to_a_full_batch_of_requests_the_tenant_is_not_counted() -> None:
    assert TARGETED_WITHOUT_COUNT == 15 * 20  # 20 requests: one $batch (json-batching's limit)


def test_a_request_names_at_most_15_ids_and_the_properties_the_scan_reads() -> None:
    ids = [f"{k:08x}-0000-0000-0000-000000000000" for k in range(IDS_PER_REQUEST)]
    req = group_scope._ids_request("k", ids, sign_ins=True)
    path = unquote(req.path)
    assert path.startswith("/users?$filter=id in (") and path.count("'") == 2 * IDS_PER_REQUEST
    assert "licenseAssignmentStates" in path and "signInActivity" in path and "$top" not in path
    plain = group_scope._ids_request("k", ids[:1], sign_ins=False)
    assert "signInActivity" not in unquote(plain.path) and plain.route == "/users"
