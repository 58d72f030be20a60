"""`licensing-audit reprocess` over HTTP: users waiting for seats are reprocessed once seats are bought, journalled."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from licensing.cli import main
from licensing.configure.commands import EXIT_BLOCKED, EXIT_PENDING
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.tenant import SandboxTenant


@pytest.fixture
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=5, users=250, groups=14), as_of=datetime(2026, 11, 24, tzinfo=UTC))


@pytest.fixture
def server(tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(tenant) as running:
        yield running


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "NO_COLOR", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)


def _free(tenant: SandboxTenant, part: str, free: int) -> None:
    skus = list(tenant.skus)
    k = tenant.sku_by_part(part).index
    skus[k] = dataclasses.replace(skus[k], enabled=skus[k].consumed + free, warning=0, suspended=0, locked_out=0)
    tenant.skus = tuple(skus)


def _waiting(server: SandboxServer, tenant: SandboxTenant, tmp_path: Path) -> tuple[str, list[str]]:
    """The fit group licensed with EMS while one seat is free: every member but one waits (CountViolation)."""
    group = tenant.plan_group("plan_ready")
    _free(tenant, "EMS", 1)
    ems = tenant.sku_by_part("EMS").sku_id
    r = httpx.post(f"{server.base_url}/groups/{group.id}/assignLicense",
                   json={"addLicenses": [{"skuId": ems, "disabledPlans": []}], "removeLicenses": []})  # fmt: skip
    assert r.status_code == 202
    server.app.settle()
    return group.id, [tenant.user_id(u) for u in group.users]


def cli(server: SandboxServer, *args: str) -> int:
    return main([*args, "--graph-url", server.base_url, "--credential", "none"])


def test_reprocess_clears_count_violations_after_seats_are_bought(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gid, _ = _waiting(server, tenant, tmp_path)
    book = tmp_path / "journal.jsonl"
    assert cli(server, "reprocess", "--group", gid) == EXIT_PENDING
    assert "3 user(s) to reprocess; nothing was sent" in capsys.readouterr().out
    assert server.stats["by_route"].get("reprocessLicenseAssignment", 0) == 0  # a dry run sends nothing
    # No seat yet: reprocessing changes nothing, and says so per user (exit 3: still waiting).
    assert cli(server, "reprocess", "--group", gid, "--confirm", "--wait", "1", "--journal", str(book)) == EXIT_BLOCKED
    assert capsys.readouterr().out.count("CountViolation -> ") == 3
    _free(tenant, "EMS", 3)  # seats bought
    args = [
        "reprocess",
        "--group",
        gid,
        "--error",
        "countviolation",
        "--confirm",
        "--wait",
        "1",
        "--journal",
        str(book),
    ]
    assert cli(server, *args) == 0
    assert capsys.readouterr().out.count("-> no error") == 3
    assert cli(server, "reprocess", "--group", gid) == 0  # nobody waits any more
    records = [json.loads(line) for line in book.read_text(encoding="utf-8").splitlines()]
    assert {r["kind"] for r in records} == {"reprocess"}
    last = {r["id"]: r for r in records}
    assert sorted(r["outcome"] for r in last.values()) == ["failed"] * 3 + ["verified"] * 3
    assert all(r["user_id"] and r["who"].startswith("anonymous") for r in last.values())


def test_reprocess_refuses_bad_input_with_exit_2(server: SandboxServer, tenant: SandboxTenant) -> None:
    gid = tenant.plan_group("plan_ready").id
    assert cli(server, "reprocess") == 2  # neither --group nor --user
    assert cli(server, "reprocess", "--group", gid, "--error", "NoSuchError") == 2
    assert cli(server, "reprocess", "--user", "00000000-0000-0000-0000-000000000001") == 2
    assert cli(server, "reprocess", "--group", gid, "--confirm") == 2  # every call is journalled: where?


def test_reprocess_named_users_and_403_without_the_permission(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path
) -> None:
    from licensing.sandbox import Faults

    _gid, users = _waiting(server, tenant, tmp_path)
    book = tmp_path / "journal.jsonl"
    server.set_faults(Faults(permissions=frozenset({"User.Read.All", "GroupMember.Read.All", "Organization.Read.All"})))
    args = ["reprocess", *(a for u in users for a in ("--user", u)), "--confirm", "--wait", "1", "--journal", str(book)]
    assert cli(server, *args) == 1
    records = [json.loads(line) for line in book.read_text(encoding="utf-8").splitlines()]
    assert [r["outcome"] for r in records] == ["pending", "refused"]  # stopped at the first refusal
