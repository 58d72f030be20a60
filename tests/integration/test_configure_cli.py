"""`licensing-audit export / apply / rollback` over HTTP against the sandbox: every refusal, the journal, rollback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from licensing.cli import main
from licensing.configure.commands import EXIT_BLOCKED, EXIT_PENDING
from licensing.sandbox import FaultRule, Faults, SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.tenant import G_E3, SandboxTenant

DATA = Path(__file__).resolve().parents[2] / "licensing" / "data"
APPLY_SCHEMA = json.loads((DATA / "apply.schema.json").read_text())
DESIRED_SCHEMA = json.loads((DATA / "desired.schema.json").read_text())


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


def cli(server: SandboxServer, *args: str) -> int:
    return main([*args, "--graph-url", server.base_url, "--credential", "none"])


def export(server: SandboxServer, path: Path, *groups: str) -> dict[str, Any]:
    extra = [a for g in groups for a in ("--group", g)]
    assert cli(server, "export", "--output", str(path), *extra) == 0
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def apply_json(server: SandboxServer, path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    out = path.with_suffix(".apply.json")
    code = cli(server, "apply", str(path), "--json", str(out), *args)
    doc = json.loads(out.read_text(encoding="utf-8"))
    jsonschema.validate(doc, APPLY_SCHEMA)
    return code, doc


def journal(path: Path) -> list[dict[str, Any]]:
    beside = path.with_name(f"{path.stem}.journal.jsonl")
    return [json.loads(line) for line in beside.read_text(encoding="utf-8").splitlines()] if beside.exists() else []


def add_ready_group(tenant: SandboxTenant, doc: dict[str, Any], *licenses: dict[str, Any]) -> str:
    ready = tenant.plan_group("plan_ready")
    doc["groups"].append({"id": ready.id, "name": "ready", "licenses": list(licenses)})
    return ready.id


def test_an_unedited_export_is_a_faithful_baseline(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path
) -> None:
    doc = export(server, tmp_path / "d.yaml")
    jsonschema.validate(doc, DESIRED_SCHEMA)
    assert doc["tenant"] == tenant.tenant_id
    assert {g["id"] for g in doc["groups"]} == set(tenant.licensed_group_ids)
    e3 = next(g for g in doc["groups"] if g["id"] == tenant.groups[G_E3].id)
    assert e3["licenses"] == [{"sku": "SPE_E3", "disabled_plans": ["YAMMER_ENTERPRISE"]}]  # plan names resolved
    code, out = apply_json(server, tmp_path / "d.yaml")
    assert code == 0 and out["status"] == "nothing_to_change"
    assert all(g["status"] == "unchanged" for g in out["groups"])
    assert journal(tmp_path / "d.yaml") == []


def test_dry_run_then_confirm_verifies_and_journals_before_and_after(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path
) -> None:
    doc = export(server, tmp_path / "d.yaml")
    gid = add_ready_group(tenant, doc, {"sku": "SPE_E3", "disabled_plans": ["YAMMER_ENTERPRISE"]})
    path = write(tmp_path / "d.yaml", doc)
    code, out = apply_json(server, path)
    assert code == EXIT_PENDING
    [group] = [g for g in out["groups"] if g["id"] == gid]
    assert group["changes"][0]["kind"] == "add" and group["seats"][0]["needed"] == len(
        tenant.plan_group("plan_ready").users
    )
    assert {g["plan"] for g in group["gains"]} >= {"EXCHANGE_S_ENTERPRISE", "AAD_PREMIUM"}
    assert "YAMMER_ENTERPRISE" not in {g["plan"] for g in group["gains"]}  # disabled plans are not gained
    assert not tenant.plan_group("plan_ready").sku_indices  # a dry run writes nothing
    code, out = apply_json(server, path, "--confirm", "--wait", "1")
    assert code == 0
    [group] = [g for g in out["groups"] if g["id"] == gid]
    assert group["outcome"] == "verified" and group["change_id"]
    records = journal(path)
    assert [r["outcome"] for r in records] == ["pending", "verified"]
    assert records[0]["id"] == records[1]["id"] == group["change_id"]
    assert records[0]["who"].startswith("anonymous") and records[0]["before"] == []
    assert cli(server, "apply", str(path)) == 0  # applied: nothing pending any more


def test_unknown_sku_plan_group_and_tenant_are_each_one_line_exit_2(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = f"""schema: licensing-desired/1
tenant: 00000000-0000-0000-0000-0000000000aa
groups:
  - id: {tenant.plan_group("plan_ready").id}
    licenses:
      - sku: NO_SUCH_SKU
      - sku: SPE_E3
        disabled_plans: [NO_SUCH_PLAN]
  - id: 00000000-0000-0000-0000-0000000000bb
    licenses: []
"""
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert cli(server, "apply", str(path)) == 2
    err = capsys.readouterr().err
    assert f"{path}:2: tenant 00000000-0000-0000-0000-0000000000aa is not the tenant" in err
    assert f"{path}:6: unknown SKU 'NO_SUCH_SKU'" in err
    assert f"{path}:7: unknown plan 'NO_SUCH_PLAN'" in err
    assert f"{path}:9: the tenant has no group 00000000-0000-0000-0000-0000000000bb" in err
    assert "Traceback" not in err


def test_blocked_nothing_applied_exit_3(server: SandboxServer, tenant: SandboxTenant, tmp_path: Path) -> None:
    doc = export(server, tmp_path / "d.yaml")
    nested = tenant.plan_group("plan_nested")
    doc["groups"].append({"id": nested.id, "licenses": [{"sku": "SPE_E3"}]})
    path = write(tmp_path / "d.yaml", doc)
    code, out = apply_json(server, path, "--confirm")
    assert code == EXIT_BLOCKED and out["status"] == "blocked"
    [group] = [g for g in out["groups"] if g["id"] == nested.id]
    assert "nested_group" in {b["kind"] for b in group["blockers"]}
    assert not tenant.plan_group("plan_nested").sku_indices and journal(path) == []


def test_max_loss_guards_removals_and_names_the_exchange_hold(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    e3 = tenant.groups[G_E3]
    doc = export(server, tmp_path / "d.yaml", e3.id)
    doc["groups"][0]["licenses"] = []  # the explicit form: remove every licence
    path = write(tmp_path / "d.yaml", doc)
    code, out = apply_json(server, path, "--confirm")
    assert code == EXIT_BLOCKED
    [group] = out["groups"]
    assert group["users_losing_service"] > 0
    assert [b["kind"] for b in group["blockers"]] == ["max_loss"]
    assert any(w["kind"] == "exchange_data_hold" and "held for 30 days" in w["message"] for w in group["warnings"])
    printed = capsys.readouterr().out
    assert "LOSE EXCHANGE_S_ENTERPRISE" in printed
    losing = group["users_losing_service"]
    assert (losing > 5) == ("more (--show-users)" in printed)
    assert cli(server, "apply", str(path), "--show-users") == EXIT_BLOCKED
    shown = capsys.readouterr().out
    assert "--show-users)" not in shown
    assert all(tenant.user_names(tenant.user_index(u))[3] in shown for u in group["losses"][0]["user_ids"])
    assert tenant.groups[G_E3].sku_indices  # untouched
    code, out = apply_json(server, path, "--confirm", "--wait", "1", "--max-loss", str(group["users_losing_service"]))
    assert code == 0 and out["groups"][0]["outcome"] == "verified"
    assert not tenant.groups[G_E3].sku_indices


def test_omitting_licenses_is_an_error_never_a_removal(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path
) -> None:
    e3 = tenant.groups[G_E3]
    doc = export(server, tmp_path / "d.yaml", e3.id)
    del doc["groups"][0]["licenses"]
    assert cli(server, "apply", str(write(tmp_path / "d.yaml", doc)), "--confirm", "--max-loss", "999") == 2
    assert tenant.groups[G_E3].sku_indices


def test_the_tenant_changed_since_the_dry_run_stops_before_writing(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from licensing.configure import dryrun, writer

    doc = export(server, tmp_path / "d.yaml")
    gid = add_ready_group(tenant, doc, {"sku": "SPE_E3"})
    path = write(tmp_path / "d.yaml", doc)
    real = dryrun.dry_run

    async def then_someone_else_writes(*args: Any, **kwargs: Any) -> Any:
        run = await real(*args, **kwargs)
        import httpx

        async with httpx.AsyncClient(base_url=server.base_url) as c:  # another admin, between dry run and write
            r = await c.post(
                f"/groups/{gid}/assignLicense",
                json={"addLicenses": [{"skuId": tenant.sku_by_part("EMS").sku_id}], "removeLicenses": []},
            )
            assert r.status_code == 202
        return run

    monkeypatch.setattr("licensing.configure.dryrun.dry_run", then_someone_else_writes)
    code, out = apply_json(server, path, "--confirm", "--wait", "1")
    assert code == 1
    [group] = [g for g in out["groups"] if g["id"] == gid]
    assert group["outcome"] is None and journal(path) == []
    assert writer.COMPLETE == "ProcessingComplete"


def test_a_403_without_the_write_permission_is_journalled_refused(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = export(server, tmp_path / "d.yaml")
    add_ready_group(tenant, doc, {"sku": "SPE_E3"})
    path = write(tmp_path / "d.yaml", doc)
    readers = "GroupMember.Read.All+User.Read.All+Organization.Read.All+LicenseAssignment.Read.All"
    server.set_faults(Faults(permissions=frozenset(readers.split("+"))))
    assert cli(server, "check-permissions", "--write") == 1
    assert "MISSING  LicenseAssignment.ReadWrite.All" in capsys.readouterr().out
    code, _ = apply_json(server, path, "--confirm", "--wait", "1")
    assert code == 1
    assert [r["outcome"] for r in journal(path)] == ["pending", "refused"]
    assert "LicenseAssignment.ReadWrite.All" in journal(path)[1]["detail"]
    server.set_faults(Faults())
    assert cli(server, "check-permissions", "--write") == 0


def test_a_write_whose_answer_is_lost_is_settled_by_reading_never_retried(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import licensing.graph.client as client_module

    doc = export(server, tmp_path / "d.yaml")
    gid = add_ready_group(tenant, doc, {"sku": "SPE_E3"})
    path = write(tmp_path / "d.yaml", doc)
    original = client_module.GraphClient.__init__

    def short_timeout(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **{**kwargs, "timeout_s": 0.5})

    monkeypatch.setattr(client_module.GraphClient, "__init__", short_timeout)
    server.set_faults(Faults(rules=(FaultRule("accepted_timeout", route="assignLicense", first=1, hold_s=2.0),)))
    code, out = apply_json(server, path, "--confirm", "--wait", "1")
    assert code == 0, out
    [group] = [g for g in out["groups"] if g["id"] == gid]
    assert group["outcome"] == "verified"
    assert server.stats["by_route"]["assignLicense"] == 1  # one call: never sent again


def test_new_errors_stop_at_that_group_and_name_the_users(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    doc = export(server, tmp_path / "d.yaml")
    gid = add_ready_group(tenant, doc, {"sku": "EMS"})
    later = tenant.plan_group("plan_dynamic_members")  # fit, and after the failing group: must stay untouched
    doc["groups"].append({"id": later.id, "licenses": [{"sku": "SPE_E3"}]})
    path = write(tmp_path / "d.yaml", doc)
    skus = list(tenant.skus)
    k = tenant.sku_by_part("EMS").index
    n = len(tenant.plan_group("plan_ready").users)
    code, _ = apply_json(server, path)  # the dry run sees enough seats
    assert code == EXIT_PENDING
    # seats are taken between the re-read and processing: processing finds one seat for n members
    skus[k] = dataclasses.replace(skus[k], enabled=skus[k].consumed + n, warning=0, suspended=0, locked_out=0)
    tenant.skus = tuple(skus)
    server.app.processing_reads = 2
    original = server.app._complete

    def others_take_seats(grp: Any, job: Any) -> None:
        s = list(tenant.skus)
        s[k] = dataclasses.replace(s[k], consumed=s[k].enabled - 1)
        tenant.skus = tuple(s)
        original(grp, job)

    server.app._complete = others_take_seats  # type: ignore[method-assign]
    code, out = apply_json(server, path, "--confirm", "--wait", "1")
    assert code == 1
    [group] = [g for g in out["groups"] if g["id"] == gid]
    assert group["outcome"] == "failed" and len(group["error_users"]) == n - 1
    assert all("CountViolation" in e for e in group["error_users"])
    printed = capsys.readouterr().out
    assert "CountViolation" in printed
    named = tenant.user_names(tenant.plan_group("plan_ready").users[-1])[3]
    assert named in printed  # which users, by name
    [untouched] = [g for g in out["groups"] if g["id"] == later.id]
    assert untouched["outcome"] is None and not tenant.plan_group("plan_dynamic_members").sku_indices


def test_rollback_dry_run_then_confirm_restores_the_group(
    server: SandboxServer, tenant: SandboxTenant, tmp_path: Path
) -> None:
    e3 = tenant.groups[G_E3]
    doc = export(server, tmp_path / "d.yaml", e3.id)
    doc["groups"][0]["licenses"][0]["disabled_plans"] = ["YAMMER_ENTERPRISE", "TEAMS1"]  # turn Teams off too
    path = write(tmp_path / "d.yaml", doc)
    code, out = apply_json(server, path, "--confirm", "--wait", "1", "--max-loss", "999")
    assert code == 0
    change = out["groups"][0]["change_id"]
    book = path.with_name("d.journal.jsonl")
    assert cli(server, "rollback", change, "--journal", str(book)) == EXIT_PENDING
    assert cli(server, "rollback", change, "--journal", str(book), "--confirm", "--wait", "1") == 0
    yammer = next(p.id for p in tenant.sku_by_part("SPE_E3").plans if p.name == "YAMMER_ENTERPRISE")
    assert tenant.groups[G_E3].disabled_plans == ((yammer,),)  # Teams back on, Yammer still off
    last = journal(path)[-1]
    assert last["kind"] == "rollback" and last["rollback_of"] == change and last["outcome"] == "verified"
    assert cli(server, "rollback", "no-such-change", "--journal", str(book)) == 2
