"""`licensing-audit plan` over HTTP against the sandbox's candidate groups: verdicts, counts, reasons, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from licensing.cli import EXIT_FAILED, EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, main
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.faults import FaultRule, Faults
from licensing.sandbox.tenant import G_E3, G_E5, G_GUESTS, U_DISABLED, U_ERRORS, U_NESTED_ONLY, U_NO_LOCATION
from licensing.sandbox.truth import is_b2b

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "licensing" / "data" / "plan.schema.json").read_text())
TENANT = generate_tenant(TenantSpec(seed=5, users=250, groups=14))


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(TENANT) as running:
        yield running


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def plan(server: SandboxServer, tmp_path: Path, group_id: str, *skus: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / f"plan-{group_id}.json"
    args = ["plan", "--graph-url", server.base_url, "--credential", "none", "--group", group_id, "--json", str(out)]
    for sku in skus:
        args += ["--sku", sku]
    code = main(args)
    document = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    return code, document


def kinds(document: dict[str, Any], part: str) -> list[str]:
    return sorted(r["kind"] for r in document[part])


def sku_row(document: dict[str, Any], part_number: str) -> dict[str, Any]:
    [row] = [s for s in document["skus"] if s["sku_part_number"] == part_number]
    return row


def seats(part_number: str) -> int:
    sku = TENANT.sku_by_part(part_number)
    return sku.enabled - sku.consumed


def test_a_ready_security_group_is_suitable_with_the_counts(server: SandboxServer, tmp_path: Path) -> None:
    group = TENANT.plan_group("plan_ready")
    code, doc = plan(server, tmp_path, group.id, "SPE_E3", TENANT.sku_by_part("EMS").sku_id)
    assert code == EXIT_OK and doc["verdict"] == "suitable"
    assert doc["schema"] == "licensing-audit-plan/1"
    assert doc["group"] == {
        "id": group.id,
        "display_name": "SG-Plan-Ready-Sales",
        "security_enabled": True,
        "dynamic": False,
        "membership_rule": None,
        "members": len(U_NESTED_ONLY),
        "users": len(U_NESTED_ONLY),
    }
    # Its members hold nothing yet: every one needs a seat of each SKU; free is enabled - consumed.
    assert sku_row(doc, "SPE_E3") == {
        "sku_id": TENANT.sku_by_part("SPE_E3").sku_id,
        "sku_part_number": "SPE_E3",
        "free": seats("SPE_E3"),
        "needed": 4,
        "already_licensed": 0,
    }
    assert sku_row(doc, "EMS")["needed"] == 4 and sku_row(doc, "EMS")["free"] == seats("EMS")
    assert doc["blockers"] == [] and doc["warnings"] == []


def test_each_blocker_on_the_group_built_for_it(server: SandboxServer, tmp_path: Path) -> None:
    code, doc = plan(server, tmp_path, TENANT.plan_group("plan_nested").id, "SPE_E3")
    assert code == EXIT_FINDINGS and doc["verdict"] == "unsuitable"
    assert kinds(doc, "blockers") == ["nested_group"]
    assert doc["blockers"][0]["member_group_id"] == TENANT.groups[8].id  # "Team Nested"
    assert doc["group"]["members"] == 3 and doc["group"]["users"] == 2

    code, doc = plan(server, tmp_path, TENANT.plan_group("plan_unified").id, "SPE_E3")
    assert code == EXIT_FINDINGS and kinds(doc, "blockers") == ["not_security_enabled"]
    assert doc["group"]["security_enabled"] is False

    code, doc = plan(server, tmp_path, TENANT.plan_group("plan_dynamic_open").id, "SPE_E3")
    assert code == EXIT_FINDINGS and kinds(doc, "blockers") == ["dynamic_rule_admits_guests"]
    assert doc["group"]["dynamic"] is True and doc["group"]["membership_rule"] == "(user.accountEnabled -eq true)"

    code, doc = plan(server, tmp_path, TENANT.plan_group("plan_dynamic_members").id, "SPE_E3")
    assert code == EXIT_OK and doc["blockers"] == [], "a rule restricted to members is fine"


def test_guests_and_seats_short(server: SandboxServer, tmp_path: Path) -> None:
    guests = TENANT.groups[G_GUESTS]
    b2b = {TENANT.user_id(u) for u in guests.users if is_b2b(TENANT, u)}
    code, doc = plan(server, tmp_path, guests.id, "SPE_E5")
    assert code == EXIT_FINDINGS
    assert {r["user_id"] for r in doc["blockers"] if r["kind"] == "b2b_member"} == b2b
    e5 = TENANT.sku_by_part("SPE_E5")
    holders = {TENANT.user_id(u) for u in TENANT.groups[G_E5].users}
    members = {TENANT.user_id(u) for u in guests.users}
    row = sku_row(doc, "SPE_E5")
    assert row["already_licensed"] == len(members & holders)
    assert row["needed"] == len(members - holders) and row["free"] == e5.enabled - e5.consumed
    [short] = [r for r in doc["blockers"] if r["kind"] == "seats_short"]
    assert short["sku_id"] == e5.sku_id and f"needs {row['needed']} seats" in short["message"]


def test_warnings_on_the_group_built_for_them(server: SandboxServer, tmp_path: Path) -> None:
    code, doc = plan(server, tmp_path, TENANT.plan_group("plan_warnings").id, "SPE_E3")
    assert code == EXIT_OK and doc["verdict"] == "suitable", "warnings never block"
    by_kind = {k: {r["user_id"] for r in doc["warnings"] if r["kind"] == k} for k in kinds(doc, "warnings")}
    assert by_kind["usage_location_missing"] == {TENANT.user_id(U_NO_LOCATION[0])}
    assert by_kind["disabled_members"] == {TENANT.user_id(U_DISABLED[2])}
    assert by_kind["mutually_exclusive"] == {TENANT.user_id(U_ERRORS[0])}
    assert "p1_not_covered" not in by_kind and "large_group" not in by_kind
    # U_DISABLED[2] holds Microsoft 365 E3 through SG-Lic-Microsoft365-E3; U_ERRORS[0] is in Error for it
    # (MutuallyExclusiveViolation), which holds no seat: it still needs one.
    assert TENANT.user_id(U_DISABLED[2]) in {TENANT.user_id(u) for u in TENANT.groups[G_E3].users}
    row = sku_row(doc, "SPE_E3")
    assert (row["needed"], row["already_licensed"]) == (3, 1)


@pytest.mark.parametrize(
    ("group", "sku", "needle"),
    [
        ("not-a-guid", "SPE_E3", "is not a GUID"),
        ("00000000-0000-4000-8000-000000000000", "SPE_E3", "the tenant has no group"),
        (None, "VISIO_NOT_OWNED", "the tenant has no subscribed SKU 'VISIO_NOT_OWNED'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str], group: str | None, sku: str, needle: str
) -> None:
    group_id = group or TENANT.plan_group("plan_ready").id
    out = tmp_path / "plan.json"
    args = ["plan", "--graph-url", server.base_url, "--credential", "none", "--group", group_id, "--sku", sku]
    assert main([*args, "--json", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists(), "no verdict file for a plan that was not made"


def test_a_deleted_group_is_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    group = TENANT.plan_group("plan_ready")
    with SandboxServer(TENANT) as own:  # a server of its own: the deletion must not leak into the other tests
        own.delete_group(group.id)
        args = ["plan", "--graph-url", own.base_url, "--credential", "none", "--group", group.id, "--sku", "SPE_E3"]
        assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"the tenant has no group {group.id} (deleted, or never existed" in err


def test_unreadable_users_give_no_verdict(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    group = TENANT.plan_group("plan_ready")
    out = tmp_path / "plan.json"
    server.set_faults(Faults(rules=(FaultRule("403", route="users"),)))
    try:
        args = ["plan", "--graph-url", server.base_url, "--credential", "none", "--group", group.id, "--sku", "SPE_E3"]
        assert main([*args, "--json", str(out)]) == EXIT_FAILED
    finally:
        server.set_faults(Faults())
    assert not out.exists(), "never 'suitable' on what could not be read"
    err = capsys.readouterr().err
    assert "cannot assess group" in err and "User.Read.All" in err


def test_p1_not_covered_where_the_tenant_lacks_seats_that_license_group_licensing(tmp_path: Path) -> None:
    short = generate_tenant(TenantSpec(seed=1, premium_spare=False))
    assert "p1_coverage_short" in {f.kind for f in short.ground_truth}
    with SandboxServer(short) as own:
        out = tmp_path / "p1.json"
        group = short.plan_group("plan_ready")
        args = ["plan", "--graph-url", own.base_url, "--credential", "none", "--group", group.id]
        assert main([*args, "--sku", "FLOW_FREE", "--json", str(out)]) == EXIT_OK
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert kinds(doc, "warnings") == ["p1_not_covered"] and doc["verdict"] == "suitable"


def test_run_candidates_ranks_unlicensed_security_groups_in_the_html(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from html.parser import HTMLParser

    html_file = tmp_path / "report.html"
    args = ["run", "--graph-url", server.base_url, "--credential", "none", "--store", "none", "--no-alerts", "-q"]
    assert main([*args, "--candidates"]) == EXIT_USAGE
    assert "--candidates adds a section to the HTML report" in capsys.readouterr().err
    assert main([*args, "--candidates", "--html", str(html_file)]) == EXIT_OK
    page = html_file.read_text(encoding="utf-8")
    section = page[page.index('id="candidates"') : page.index('id="run"')]

    class Rows(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[str]] = []
            self.cell: list[str] | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "tr":
                self.rows.append([])
            elif tag == "td":
                self.cell = []

        def handle_endtag(self, tag: str) -> None:
            if tag == "td" and self.cell is not None:
                self.rows[-1].append(" ".join("".join(self.cell).split()))
                self.cell = None

        def handle_data(self, data: str) -> None:
            if self.cell is not None:
                self.cell.append(data)

    parser = Rows()
    parser.feed(section)
    rows = {r[0].removesuffix(" dynamic"): r for r in parser.rows if r}
    unlicensed_security = [g for g in TENANT.groups if not g.licensed and g.security_enabled]
    assert len(rows) == len(unlicensed_security), "every unlicensed security group, and only those"
    assert "Project Falcon (Microsoft 365 group)" not in rows, "not security-enabled: not a candidate"
    order = list(rows)
    # A group with nothing but seats in the way comes before one with a nested group or guests.
    assert order.index("SG-Plan-Ready-Sales") < order.index("SG-Plan-Nested") < len(order)
    assert order.index("SG-Plan-Ready-Sales") < order.index("Partners and guests")
    ready = rows["SG-Plan-Ready-Sales"]
    # Products by name, as in the rest of the report (issue 30, item 9), not SPE_E3 / ENTERPRISEPACK.
    assert ready[1] == "4" and "Microsoft 365 E3" in ready[2] and "Office 365 E3" not in ready[2], "E3 has no free seat"
    assert "SPE_E3" not in ready[2]
    assert "its members would get nothing" in rows["SG-Plan-Nested"][4] and rows["SG-Plan-Nested"][2] == "none"
    assert "B2B account" in rows["Partners and guests"][4]


def test_the_sandbox_serves_the_group_properties_over_http(server: SandboxServer) -> None:
    import httpx

    paused = TENANT.plan_group("plan_dynamic_paused")
    fields = "id,securityEnabled,groupTypes,membershipRule,membershipRuleProcessingState"
    body = httpx.get(f"{server.base_url}/groups/{paused.id}", params={"$select": fields}).json()
    assert body["groupTypes"] == ["DynamicMembership"] and body["membershipRuleProcessingState"] == "Paused"
    assert body["securityEnabled"] is True and "userType" in body["membershipRule"]
    unified = TENANT.plan_group("plan_unified")
    body = httpx.get(f"{server.base_url}/groups/{unified.id}", params={"$select": fields}).json()
    assert body["securityEnabled"] is False and body["groupTypes"] == ["Unified"]
    listed = httpx.get(
        f"{server.base_url}/groups", params={"$filter": "securityEnabled eq true", "$select": "id", "$top": "999"}
    ).json()["value"]
    assert unified.id not in {g["id"] for g in listed} and paused.id in {g["id"] for g in listed}
    user = httpx.get(f"{server.base_url}/users/{TENANT.user_id(24)}", params={"$select": "id,usageLocation"}).json()
    assert user["usageLocation"] is None


def test_a_tenant_level_sku_is_a_blocker_and_a_suspended_one_has_no_free_seat(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """subscribedSku.appliesTo: "Only SKUs with target class User are assignable" (Office 365 Extra File Storage
    is Company); the suspended EMSPREMIUM (enabled 0, consumed > 0) has 0 free, the same count on every line."""
    ready = TENANT.plan_group("plan_ready").id
    code, doc = plan(server, tmp_path, ready, "SHAREPOINTSTORAGE")
    assert code == EXIT_FINDINGS and kinds(doc, "blockers") == ["sku_not_assignable"]
    # The terminal counts no seats for it (the reviewer saw "4 need a seat, 1 free"); the JSON keeps its row.
    out = capsys.readouterr().out
    assert "not assignable to a group, no seats counted" in out and "need a seat" not in out
    assert [r["sku_part_number"] for r in doc["skus"]] == ["SHAREPOINTSTORAGE"]
    code, doc = plan(server, tmp_path, ready, "EMSPREMIUM")
    [row] = doc["skus"]
    assert row["free"] == 0 and kinds(doc, "blockers") == ["seats_short"]
    assert "0 are free" in doc["blockers"][0]["message"]
