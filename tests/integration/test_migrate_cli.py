"""`licensing-audit migrate` over HTTP: direct E3 users moved to a group by apply, then off their direct assignments
in waves with nobody ever without E3; a user who would lose a service kept and named; a failing wave stops the rest;
rollback restores the migration."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from licensing.cli import main
from licensing.configure.commands import EXIT_BLOCKED, EXIT_PENDING
from licensing.sandbox import FaultRule, Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.tenant import SandboxTenant

AS_OF = datetime(2026, 11, 24, tzinfo=UTC)
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "licensing" / "data" / "migrate.schema.json").read_text())


@pytest.fixture
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=5, users=250, groups=14), as_of=AS_OF)


@pytest.fixture
def server(tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(tenant) as running:
        yield running


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The journal's clock an hour before the tenant's now: the group's change precedes its processing."""
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "NO_COLOR", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("licensing.clock.utcnow", lambda: AS_OF - timedelta(hours=1))


def cli(server: SandboxServer, *args: str) -> int:
    return main([*args, "--graph-url", server.base_url, "--credential", "none"])


def _e3(tenant: SandboxTenant) -> tuple[int, str]:
    k = tenant.sku_by_part("SPE_E3").index
    return k, next(p.id for p in tenant.skus[k].plans if p.name == "YAMMER_ENTERPRISE")


def direct_e3_group(tenant: SandboxTenant, server: SandboxServer, tmp_path: Path) -> tuple[Path, str, list[int], int]:
    """Every member of the fit group holds Microsoft 365 E3 directly (Yammer off, as the group will have it), but
    one with nothing disabled (who would lose Yammer); then apply gives the group E3 without Yammer."""
    group = tenant.plan_group("plan_ready")
    users = list(group.users)
    k, yammer = _e3(tenant)
    loser = users[-1]
    added = 0
    for u in users:
        if not any(st.sku == k and st.holds_seat for st in tenant.user_states(u)):
            added += 1
        tenant.direct[u] = tuple(sorted({*tenant.direct.get(u, ()), k}))
        tenant.direct_disabled[(u, k)] = () if u == loser else (yammer,)
    skus = list(tenant.skus)
    skus[k] = dataclasses.replace(skus[k], consumed=skus[k].consumed + added)
    skus[k] = dataclasses.replace(skus[k], enabled=skus[k].consumed + 5, warning=0, suspended=0, locked_out=0)
    tenant.skus = tuple(skus)
    path = tmp_path / "d.yaml"
    assert cli(server, "export", "--output", str(path), "--group", tenant.groups[0].id) == 0
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["groups"] = [{"id": group.id, "name": "ready", "licenses": [
        {"sku": "SPE_E3", "disabled_plans": ["YAMMER_ENTERPRISE"]}]}]  # fmt: skip
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    assert cli(server, "apply", str(path), "--confirm", "--wait", "1") == 0
    return path, group.id, users, loser


def holds_e3(tenant: SandboxTenant, users: list[int]) -> None:
    k, _ = _e3(tenant)
    without = [u for u in users if not any(st.sku == k and st.holds_seat for st in tenant.user_states(u))]
    assert not without, f"users without E3: {without}"


def migrate_json(server: SandboxServer, path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = path.with_suffix(".migrate.json")
    code = cli(server, "migrate", *args, "--json", str(out))
    doc = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(doc, SCHEMA)
    return code, doc


def test_apply_then_migrate_in_waves_nobody_ever_without_e3(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from licensing.configure import migrate_confirm

    path, gid, users, loser = direct_e3_group(tenant, server, tmp_path)
    k, _ = _e3(tenant)
    capsys.readouterr()
    code, doc = migrate_json(server, path, "--group", gid, "--desired", str(path), "--waves", "1,2,all")
    assert code == EXIT_PENDING and doc["status"] == "removals_pending" and not doc["confirmed"]
    verdicts = {r["user_id"]: r for r in doc["users"]}
    loser_id = tenant.user_id(loser)
    assert verdicts[loser_id]["verdict"] == "would_lose" and verdicts[loser_id]["lost_plans"] == ["YAMMER_ENTERPRISE"]
    assert not verdicts[loser_id]["remove"]
    assert all(r["verdict"] == "safe_to_remove" for u, r in verdicts.items() if u != loser_id)
    assert not any(w["kind"] == "stale_inherited_state" for r in doc["users"] for w in r["warnings"])
    printed = capsys.readouterr().out
    assert "WOULD LOSE: 1" in printed and "would lose YAMMER_ENTERPRISE: kept (--accept-loss)" in printed
    assert all(k in tenant.direct.get(u, ()) for u in users)  # the dry run wrote nothing

    waves_checked: list[int] = []
    real = migrate_confirm.check_inherited

    def checked(*args: Any) -> str:
        holds_e3(tenant, users)  # before each user's removal and after each wave: nobody without E3
        waves_checked.append(1)
        return real(*args)

    monkeypatch.setattr(migrate_confirm, "check_inherited", checked)
    code, doc = migrate_json(server, path, "--group", gid, "--desired", str(path), "--waves", "1,2,all", "--confirm")
    assert code == 0 and doc["confirmed"] and doc["stopped"] is None
    removed = [r for r in doc["users"] if r["remove"]]
    assert {r["outcome"] for r in removed} == {"verified"} and doc["waves"][0] == 1
    holds_e3(tenant, users)
    assert waves_checked
    assert [u for u in users if k in tenant.direct.get(u, ())] == [loser]  # the loser keeps the direct one
    records = [json.loads(line) for line in path.with_name("d.journal.jsonl").read_text().splitlines()]
    mig = [r for r in records if r["kind"] == "migrate"]
    assert len(mig) == 2 * len(removed) and {r["user_id"] for r in mig} == {r["user_id"] for r in removed}
    assert cli(server, "migrate", "--group", gid, "--desired", str(path)) == EXIT_BLOCKED  # only the loser is left

    # Rollback of the migration (its id) re-adds every removed direct assignment with its disabled plans.
    journal = str(path.with_name("d.journal.jsonl"))
    assert cli(server, "rollback", doc["migration_id"], "--journal", journal) == EXIT_PENDING
    assert cli(server, "rollback", doc["migration_id"], "--journal", journal, "--confirm", "--wait", "1") == 0
    _, yammer = _e3(tenant)
    assert all(k in tenant.direct.get(u, ()) for u in users)
    assert all(tenant.direct_disabled[(u, k)] == (yammer,) for u in users if u != loser)


def test_accept_loss_and_kept_on_purpose(server: SandboxServer, tenant: SandboxTenant, tmp_path: Path) -> None:
    path, gid, users, loser = direct_e3_group(tenant, server, tmp_path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["direct_assignments"] = [{"user": tenant.user_id(users[0]), "sku": "SPE_E3", "reason": "on purpose"}]
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    code, out = migrate_json(server, path, "--group", gid, "--desired", str(path), "--accept-loss")
    by = {r["user_id"]: r for r in out["users"]}
    assert code == EXIT_PENDING
    assert by[tenant.user_id(users[0])]["verdict"] == "kept_on_purpose" and not by[tenant.user_id(users[0])]["remove"]
    assert by[tenant.user_id(loser)]["remove"]  # --accept-loss
    args = ["--group", gid, "--desired", str(path)]
    assert cli(server, "migrate", *args, "--accept-loss", "--confirm", "--waves", "10") == 0
    holds_e3(tenant, users)
    code, out = migrate_json(server, path, *args)
    assert code == 0 and out["status"] == "nothing_to_do"  # only the one kept on purpose is left
    assert [r["verdict"] for r in out["users"]] == ["kept_on_purpose"]


def test_a_wave_that_goes_wrong_stops_the_rest(server: SandboxServer, tenant: SandboxTenant, tmp_path: Path) -> None:
    path, gid, users, _loser = direct_e3_group(tenant, server, tmp_path)
    k, _ = _e3(tenant)
    server.set_faults(Faults(rules=(FaultRule("403", route="userAssignLicense", after=1),)))
    code, doc = migrate_json(server, path, "--group", gid, "--desired", str(path), "--waves", "1,1,all", "--confirm")
    assert code == 1 and doc["stopped"] and "refused" in doc["stopped"]
    still = [u for u in users if k in tenant.direct.get(u, ())]
    assert len(still) == len(users) - 1  # the first wave only; the second refused; the rest untouched
    holds_e3(tenant, users)


def test_stale_state_warning_and_bad_input(server: SandboxServer, tenant: SandboxTenant, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path, gid, _users, _loser = direct_e3_group(tenant, server, tmp_path)
    journal = path.with_name("d.journal.jsonl")
    later = [json.loads(line) for line in journal.read_text().splitlines()]
    for r in later:  # the group changed again after its members were processed
        r["finished"] = r["when"] = (AS_OF + timedelta(hours=2)).isoformat()
    journal.write_text("".join(json.dumps(r) + "\n" for r in later))
    _, doc = migrate_json(server, path, "--group", gid, "--desired", str(path))
    assert all(any(w["kind"] == "stale_inherited_state" for w in r["warnings"]) for r in doc["users"] if r["remove"])
    assert cli(server, "migrate", "--group", "not-a-guid") == 2
    assert cli(server, "migrate", "--group", gid, "--waves", "all,3") == 2
    assert cli(server, "migrate", "--group", gid, "--sku", "EMS") == 2  # the group does not assign it
    assert cli(server, "migrate", "--group", gid, "--confirm") == 2  # no journal


def test_a_wave_whose_check_fails_stops_before_the_next_wave(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The removal is accepted, but the user's group assignment is in error when the wave is read again: the wave's
    check names it, the journal says failed, and the later waves are not started."""
    from licensing.configure import migrate_confirm

    path, gid, users, _loser = direct_e3_group(tenant, server, tmp_path)
    k, _ = _e3(tenant)
    g = tenant.group_by_id(gid)
    assert g is not None
    real = migrate_confirm._post

    async def post_then_break(graph: Any, user_id: str, body: dict[str, object], label: str) -> None:
        await real(graph, user_id, body, label)
        u = tenant.user_index(user_id)
        assert u is not None
        tenant.errors[(u, g.index, k)] = "MutuallyExclusiveViolation"  # Entra re-evaluated it, badly
        server.app._fragments.clear()

    monkeypatch.setattr(migrate_confirm, "_post", post_then_break)
    code, doc = migrate_json(server, path, "--group", gid, "--desired", str(path), "--waves", "1,all", "--confirm")
    assert code == 1 and doc["stopped"].startswith("wave 1:") and "MutuallyExclusiveViolation" in doc["stopped"]
    assert [r["outcome"] for r in doc["users"] if r["outcome"]] == ["failed"]
    assert len([u for u in users if k in tenant.direct.get(u, ())]) == len(users) - 1  # wave 2 never started
