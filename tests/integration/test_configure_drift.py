"""The whole loop on the sandbox with a store: apply (journal in LicenseChanges), the nightly audit quiet, a change
outside apply, the next audit raises license_drift, apply restores it, rollback undoes the journalled change."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from licensing.cli import main
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
from licensing.sandbox.tenant import SandboxTenant
from licensing.settings import load_settings
from licensing.store import open_store

pytestmark = pytest.mark.azurite


@pytest.fixture
def tenant() -> SandboxTenant:
    return generate_tenant(TenantSpec(seed=2841, users=120, groups=12), as_of=datetime(2026, 11, 24, tzinfo=UTC))


@pytest.fixture
def server(tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(tenant) as running:
        yield running


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "NO_COLOR", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)


def drift(server: SandboxServer, store: str, out: Path) -> list[dict[str, Any]]:
    args = ["run", "--graph-url", server.base_url, "--credential", "none", "--store", store, "--no-alerts"]
    assert main([*args, "--json", str(out), "-q"]) == 0
    return [f for f in json.loads(out.read_text(encoding="utf-8"))["findings"] if f["kind"] == "license_drift"]


def test_apply_then_drift_outside_apply_then_restore_and_rollback(
    server: SandboxServer, tenant: SandboxTenant, storage_connection: str, tmp_path: Path
) -> None:
    conn = ["--graph-url", server.base_url, "--credential", "none"]
    path = tmp_path / "desired.yaml"
    assert drift(server, storage_connection, tmp_path / "r0.json") == []  # no journal: no drift, no noise
    ready = tenant.plan_group("plan_ready")
    path.write_text(
        yaml.safe_dump({"schema": "licensing-desired/1", "tenant": tenant.tenant_id,
                        "groups": [{"id": ready.id, "name": "ready", "licenses": [{"sku": "SPE_E3"}]}]}),
        encoding="utf-8",
    )  # fmt: skip
    out = tmp_path / "apply.json"
    assert (
        main(["apply", str(path), *conn, "--confirm", "--wait", "1", "--store", storage_connection, "--json", str(out)])
        == 0
    )
    change_id = json.loads(out.read_text())["groups"][0]["change_id"]
    store = open_store(load_settings({"LICENSING_STORAGE": storage_connection}).storage)
    [change] = store.license_changes(tenant.tenant_id)
    assert change.id == change_id and change.outcome == "verified"
    assert not path.with_name("desired.journal.jsonl").exists()  # the store is the journal
    server.app.settle()
    assert drift(server, storage_connection, tmp_path / "r1.json") == []

    # Someone adds EMS to the group in the admin center (outside apply).
    ems = tenant.sku_by_part("EMS").sku_id
    r = httpx.post(f"{server.base_url}/groups/{ready.id}/assignLicense",
                   json={"addLicenses": [{"skuId": ems, "disabledPlans": []}], "removeLicenses": []})  # fmt: skip
    assert r.status_code == 202
    server.app.settle()
    [finding] = drift(server, storage_connection, tmp_path / "r2.json")
    assert finding["group_id"] == ready.id and finding["severity"] == "warning"
    assert "added Enterprise Mobility + Security E3" in finding["message"]

    # The reviewed desired state restores it (removing EMS takes services away: --max-loss says how many may lose).
    args = ["apply", str(path), *conn, "--confirm", "--wait", "1", "--store", storage_connection, "--max-loss", "99"]
    assert main(args) == 0
    server.app.settle()
    assert drift(server, storage_connection, tmp_path / "r3.json") == []

    # And the first change can be rolled back from the journal in the store.
    back = ["rollback", change_id, *conn, "--store", storage_connection, "--wait", "1", "--max-loss", "99"]
    assert main(back) == 4
    assert main([*back, "--confirm"]) == 0
    assert not tenant.plan_group("plan_ready").sku_indices
    server.app.settle()
    assert drift(server, storage_connection, tmp_path / "r4.json") == []  # the rollback is the last applied state
