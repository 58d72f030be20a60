"""The deployment (infra/, azure.yaml) stays parseable, pinned, least-privilege, and in step with the settings code.

The Bicep CLI cannot be installed here (it downloads a binary), so the files are parsed with
pycep-parser, the parser checkov itself uses, and scanned with checkov's Bicep framework.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

from licensing.model import Severity
from licensing.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

# pycep-parser 0.5 predates the `extension` keyword (Bicep 0.30+). Such a line only names an
# extension declared in bicepconfig.json: it is checked against that file, then blanked (line
# numbers kept) so that the rest of the file is parsed and scanned in full.
_EXTENSION_LINE = re.compile(r"^extension\s+(\w+)\s*$", re.MULTILINE)
# Azure Verified Modules from the public registry, pinned to an exact version.
_PINNED_AVM = re.compile(r"^public:avm/(res|ptn|utl)/[a-z0-9-]+(/[a-z0-9-]+)+:\d+\.\d+\.\d+$")
_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _declared_extensions() -> set[str]:
    config = json.loads((INFRA / "bicepconfig.json").read_text(encoding="utf-8"))
    return set(config.get("extensions", {}))


def _parseable_text(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    for name in _EXTENSION_LINE.findall(text):
        assert name in _declared_extensions(), f"{path.name}: extension {name} is not declared in bicepconfig.json"
    return _EXTENSION_LINE.sub("", text)


def _parse(path: Path) -> dict[str, Any]:
    tree = BicepParser().parse(text=_parseable_text(path))
    assert isinstance(tree, dict)
    return tree


@pytest.fixture(scope="module")
def trees() -> dict[str, dict[str, Any]]:
    return {path.relative_to(INFRA).as_posix(): _parse(path) for path in BICEP_FILES}


def test_there_is_something_to_check() -> None:
    names = {path.relative_to(INFRA).as_posix() for path in BICEP_FILES}
    assert {"main.bicep", "app/function.bicep", "app/rbac.bicep", "app/graph-permissions.bicep"} <= names


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: p.relative_to(INFRA).as_posix())
def test_every_bicep_file_parses(path: Path) -> None:
    try:
        tree = _parse(path)
    except Exception as exc:  # pycep raises lark's errors; show them as a test failure, not an error
        pytest.fail(f"{path.relative_to(ROOT)} does not parse: {exc}")
    assert tree.get("parameters") or tree.get("resources") or tree.get("modules")


def test_modules_exist_and_registry_modules_are_pinned(trees: dict[str, dict[str, Any]]) -> None:
    seen_registry = 0
    for name, tree in trees.items():
        for module_name, module in tree.get("modules", {}).items():
            where = f"{name}: module {module_name}"
            if module["type"] == "local":
                target = (INFRA / name).parent / module["detail"]["path"]
                assert target.is_file(), f"{where}: {module['detail']['path']} does not exist"
            else:
                seen_registry += 1
                assert module["type"] == "bicep_registry_alias", f"{where}: unexpected module source {module['type']}"
                assert _PINNED_AVM.match(module["detail"]["full"]), f"{where}: not a pinned AVM: {module['detail']}"
    assert seen_registry >= 7  # identity, workspace, insights, storage, key vault, plan, site


def test_azure_yaml_deploys_the_tagged_function_app(trees: dict[str, dict[str, Any]]) -> None:
    azure = yaml.safe_load((ROOT / "azure.yaml").read_text(encoding="utf-8"))
    assert azure["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    [(service_name, service)] = azure["services"].items()
    assert service == {"project": ".", "language": "python", "host": "function"}
    main = trees["main.bicep"]
    # azd finds the target by the azd-service-name tag, set by app/function.bicep from serviceName.
    assert main["modules"]["functionApp"]["config"]["params"]["serviceName"] == service_name
    assert f"SERVICE_{service_name.upper()}_NAME" in main["outputs"]
    function_text = (INFRA / "app" / "function.bicep").read_text(encoding="utf-8")
    assert "'azd-service-name': serviceName" in function_text
    # pycep keeps the quotes of quoted object keys.
    assert main["variables"]["tags"]["value"] == {"'azd-env-name'": "environmentName"}


def test_parameters_file_matches_main(trees: dict[str, dict[str, Any]]) -> None:
    declared = trees["main.bicep"]["parameters"]
    supplied = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))["parameters"]
    assert set(supplied) <= set(declared), f"unknown parameters: {set(supplied) - set(declared)}"
    required = {name for name, p in declared.items() if p.get("default") is None}
    assert required <= set(supplied), f"azd would prompt for: {required - set(supplied)}"


# --- app settings vs. licensing/settings/__init__.py -------------------------------------------------


class _RecordingEnv(Mapping[str, str]):
    """An environment that remembers every name asked for (get / [] / in)."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.asked.add(key)
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _names_the_code_reads(app_settings: Mapping[str, Any]) -> set[str]:
    """Every setting name load_settings asks for, with no settings and with the deployed shape."""
    asked: set[str] = set()
    empty = _RecordingEnv({})
    load_settings(empty)
    asked |= empty.asked
    # The deployed shape: identity-based storage, so the __* branch is taken and read to the end.
    deployed = _RecordingEnv(
        {
            "AzureWebJobsStorage__accountName": "stexample",
            "AzureWebJobsStorage__credential": "managedidentity",
            "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
            "WEBSITE_SITE_NAME": "func-audit-example",
        }
    )
    settings = load_settings(deployed)
    asked |= deployed.asked
    assert settings.storage is not None and settings.storage.credential == "managedidentity"
    # The other branches: an identity-based LICENSING_STORAGE, and the host's other "in Azure" signal.
    other = _RecordingEnv({"LICENSING_STORAGE__accountName": "stother", "FUNCTIONS_WORKER_RUNTIME": "python"})
    load_settings(other)
    asked |= other.asked
    assert set(app_settings) & {"AzureWebJobsStorage__accountName", "AzureWebJobsStorage__clientId"}
    return asked


# Settings the code reads that the deployment deliberately leaves unset (each with why).
OPTIONAL_SETTINGS = {
    # The identity-based AzureWebJobsStorage__* connection is the one store; LICENSING_STORAGE
    # exists to point the audit at another account (or a connection string) when wanted.
    "LICENSING_STORAGE",
    "LICENSING_STORAGE__accountName",
    "LICENSING_STORAGE__tableServiceUri",
    "LICENSING_STORAGE__queueServiceUri",
    "LICENSING_STORAGE__blobServiceUri",
    "LICENSING_STORAGE__credential",
    "LICENSING_STORAGE__clientId",
    # A connection string with a key would defeat allowSharedKeyAccess=false.
    "AzureWebJobsStorage",
    # An admin's watch list: empty unless set (like ALERT_EXCLUDE_SKUS it could be a parameter; not one yet).
    "RENEWAL_WATCH_SKUS",
    # How long a suppression may last: validated defaults (issue 27), changed only by an admin who means it.
    "SUPPRESS_MAX_DAYS",
    "SUPPRESS_MAX_DAYS_CRITICAL",
    # Queued plans per hour (issue 27): a validated default.
    "PLAN_MAX_PER_HOUR",
    # Prices are the admin's (Graph has none): set in the app settings when wanted, never defaulted.
    "SKU_PRICES",
    "SKU_PRICE_CURRENCY",
    # Round one's single re-notification period: read when the per-severity ones are unset (docs/alerts.md).
    "ALERT_RENOTIFY_HOURS",
    # In Azure the Functions host exports telemetry to Application Insights; OTLP is for the CLI.
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    # Set by the platform itself on every instance (how the code knows it runs in Azure).
    "WEBSITE_SITE_NAME",
    "WEBSITE_INSTANCE_ID",
    "FUNCTIONS_WORKER_RUNTIME",
    # Injected by App Service: whether its authentication is on, and the app's host name (the report link).
    "WEBSITE_AUTH_ENABLED",
    "WEBSITE_HOSTNAME",
}

# App settings the Bicep sets that the Python code never reads: they are for the host/platform.
HOST_SETTINGS = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",  # Entra ID auth of the host's exporter
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY",  # Functions OpenTelemetry for the Python worker
    "PYTHON_ENABLE_OPENTELEMETRY",
}


def _app_settings(trees: dict[str, dict[str, Any]]) -> dict[str, Any]:
    settings = trees["app/function.bicep"]["variables"]["appSettings"]["value"]
    assert isinstance(settings, dict)
    params = trees["app/function.bicep"]["modules"]["functionApp"]["config"]["params"]
    assert params["appSettingsKeyValuePairs"] == "appSettings"
    return settings


def test_every_setting_the_code_reads_is_deployed_or_optional(trees: dict[str, dict[str, Any]]) -> None:
    app_settings = _app_settings(trees)
    read = _names_the_code_reads(app_settings)
    missing = read - set(app_settings) - OPTIONAL_SETTINGS
    assert not missing, f"read by licensing/settings/ but not set by infra/app/function.bicep: {sorted(missing)}"
    stale = OPTIONAL_SETTINGS - read
    assert not stale, f"OPTIONAL_SETTINGS lists names the code no longer reads: {sorted(stale)}"


def test_every_deployed_setting_is_read_by_someone(trees: dict[str, dict[str, Any]]) -> None:
    app_settings = _app_settings(trees)
    read = _names_the_code_reads(app_settings)
    unknown = set(app_settings) - read - HOST_SETTINGS
    assert not unknown, f"set by the Bicep but read by nobody: {sorted(unknown)}"


def test_operator_settings_are_parameters(trees: dict[str, dict[str, Any]]) -> None:
    """Every threshold and alert channel an operator chooses is a main.bicep parameter passed through."""
    app_settings = _app_settings(trees)
    main_params = trees["main.bicep"]["parameters"]
    function_params = trees["app/function.bicep"]["parameters"]
    passed = trees["main.bicep"]["modules"]["functionApp"]["config"]["params"]
    chosen = {
        "AUDIT_SCHEDULE": "auditSchedule",
        "SEAT_MIN_FREE": "seatMinFree",
        "SEAT_MIN_FREE_PCT": "seatMinFreePct",
        "FORECAST_DAYS": "forecastDays",
        "GROUP_DROP_PCT": "groupDropPct",
        "RENEWAL_WARN_DAYS": "renewalWarnDays",
        "INACTIVE_DAYS": "inactiveDays",
        "PROCESSING_STUCK_HOURS": "processingStuckHours",
        "EXPECTED_GROUP_SKUS": "expectedGroupSkus",
        "ALERT_MAIL_FROM": "alertMailFrom",
        "ALERT_MAIL_TO": "alertMailTo",
        "ALERT_MAIL_TO_CRITICAL": "alertMailToCritical",
        "ALERT_MIN_SEVERITY": "alertMinSeverity",
        "ALERT_RENOTIFY_HOURS_CRITICAL": "alertRenotifyHoursCritical",
        "ALERT_RENOTIFY_HOURS_WARNING": "alertRenotifyHoursWarning",
        "ALERT_EXCLUDE_SKUS": "alertExcludeSkus",
        "ALERT_REPORT_URL": "alertReportUrl",
        "REPORT_READERS": "reportReaders",
        "GRAPH_CLOUD": "graphCloud",
        "GRAPH_MAX_CONCURRENCY": "graphMaxConcurrency",
        "FANOUT_GROUPS": "fanoutGroups",
        "RETENTION_DAYS": "retentionDays",
    }
    for setting, param in chosen.items():
        assert param in main_params, f"main.bicep has no parameter {param} for {setting}"
        assert passed.get(param) == param, f"main.bicep does not pass {param} to the function app"
        assert param in function_params
        assert param in json.dumps(app_settings[setting]), f"{setting} is not set from {param}"
    # Defaults agree with the code's (a parameter default that differs would silently change behaviour).
    defaults = load_settings({})
    assert main_params["auditSchedule"]["default"] == defaults.audit_schedule
    assert main_params["seatMinFree"]["default"] == defaults.seat_min_free
    assert float(main_params["seatMinFreePct"]["default"]) == defaults.seat_min_free_pct
    assert main_params["forecastDays"]["default"] == defaults.forecast_days
    assert main_params["groupDropPct"]["default"] == defaults.group_drop_pct
    assert main_params["processingStuckHours"]["default"] == defaults.processing_stuck_hours
    assert main_params["alertRenotifyHoursCritical"]["default"] == defaults.renotify_hours(Severity.CRITICAL)
    assert main_params["alertRenotifyHoursWarning"]["default"] == defaults.renotify_hours(Severity.WARNING)
    assert main_params["alertMinSeverity"]["default"] == defaults.alert_min_severity.value
    assert main_params["graphMaxConcurrency"]["default"] == defaults.graph_max_concurrency
    assert main_params["fanoutGroups"]["default"] == defaults.fanout_groups
    assert main_params["retentionDays"]["default"] == defaults.retention_days
    assert main_params["graphCloud"]["default"] == defaults.graph_cloud


def test_fixed_values_of_the_deployed_settings(trees: dict[str, dict[str, Any]]) -> None:
    app_settings = _app_settings(trees)
    assert app_settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert app_settings["PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"] == "true"
    assert app_settings["PYTHON_ENABLE_OPENTELEMETRY"] == "true"
    assert app_settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    defaults = load_settings({})
    main_vars = trees["main.bicep"]["variables"]
    assert main_vars["auditQueue"]["value"] == defaults.audit_queue
    assert main_vars["auditChunkQueue"]["value"] == defaults.audit_chunk_queue


def test_teams_webhook_is_a_secure_key_vault_reference(trees: dict[str, dict[str, Any]]) -> None:
    main = trees["main.bicep"]
    webhook = main["parameters"]["alertTeamsWebhookUrl"]
    assert {"type": "secure"} in webhook["decorators"]
    # It reaches the app only as a Key Vault reference, and no output of any file mentions it.
    function_text = (INFRA / "app" / "function.bicep").read_text(encoding="utf-8")
    assert "'@Microsoft.KeyVault(SecretUri=${teamsWebhookSecretUri})'" in function_text
    for name, tree in trees.items():
        for output_name, output in tree.get("outputs", {}).items():
            shown = json.dumps(output).lower()
            assert "webhook" not in shown and "secret" not in output_name.lower(), f"{name}: output {output_name}"
    secret_module = main["modules"]["teamsWebhookSecret"]["config"]["config"]  # conditional: config nested
    assert secret_module["params"]["secretValue"] == "alertTeamsWebhookUrl"
    assert {"type": "secure"} in trees["app/secret.bicep"]["parameters"]["secretValue"]["decorators"]
    site = trees["app/function.bicep"]["modules"]["functionApp"]["config"]["params"]
    assert site["keyVaultAccessIdentityResourceId"] == "identityId"  # the user-assigned identity resolves it


def test_registry_modules_are_configured_securely(trees: dict[str, dict[str, Any]]) -> None:
    """checkov cannot look inside registry modules, so their security-relevant inputs are checked here."""
    main = trees["main.bicep"]["modules"]
    storage = main["storage"]["config"]["params"]
    assert storage["allowSharedKeyAccess"] is False
    assert storage["allowBlobPublicAccess"] is False
    assert storage["defaultToOAuthAuthentication"] is True
    assert storage["minimumTlsVersion"] == "TLS1_2"
    assert storage["supportsHttpsTrafficOnly"] is True
    assert storage["blobServices"]["containers"][0]["publicAccess"] == "None"
    assert main["appInsights"]["config"]["params"]["disableLocalAuth"] is True
    vault = main["keyVault"]["config"]["params"]
    assert vault["enableRbacAuthorization"] is True
    assert vault["enableSoftDelete"] is True
    plan = main["appServicePlan"]["config"]["params"]
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["reserved"] is True
    site = trees["app/function.bicep"]["modules"]["functionApp"]["config"]["params"]
    assert site["kind"] == "functionapp,linux"
    assert site["httpsOnly"] is True
    assert site["siteConfig"]["ftpsState"] == "Disabled"
    assert site["siteConfig"]["minTlsVersion"] == "1.2"
    assert {p["name"]: p["allow"] for p in site["basicPublishingCredentialsPolicies"]} == {"ftp": False, "scm": False}
    assert site["managedIdentities"] == {"userAssignedResourceIds": ["identityId"]}
    config = site["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"


def test_queues_and_tables_are_created(trees: dict[str, dict[str, Any]]) -> None:
    main_vars = trees["main.bicep"]["variables"]
    text = (INFRA / "main.bicep").read_text(encoding="utf-8")
    assert main_vars["queueNames"]["value"] == [
        "auditQueue",
        "${auditQueue}-poison",
        "auditChunkQueue",
        "${auditChunkQueue}-poison",
    ]
    from licensing.store.tables import TableNames

    # Every table the store uses (AlertSuppressions joined in round two), and nothing else.
    assert set(main_vars["tableNames"]["value"]) == set(TableNames.with_prefix("").all())
    assert "AlertSuppressions" in main_vars["tableNames"]["value"]
    assert "LicenseChanges" in main_vars["tableNames"]["value"]  # issue 28: the journal of licensing-audit apply
    assert "queues: [for queueName in queueNames" in text
    assert "tables: [for tableName in tableNames" in text


# Built-in roles the app and the operator may get, by id (learn.microsoft.com built-in roles).
LEAST_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a": "Storage Queue Data Message Sender",
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
}


def test_role_assignments_are_the_least_roles_each_commented() -> None:
    lines = (INFRA / "app" / "rbac.bicep").read_text(encoding="utf-8").splitlines()
    found: dict[str, str] = {}
    for number, line in enumerate(lines):
        for role_id in _GUID.findall(line):
            if "roleDefinitions" in line or "guid(" in line:
                continue
            found[role_id] = line
            # The comment right above the id names the role.
            comment = lines[number - 1] if number else ""
            j = number - 1
            while j >= 0 and lines[j].startswith("//"):
                comment = lines[j]
                j -= 1
            assert comment.startswith(f"// {LEAST_ROLES.get(role_id, '?')}:"), f"role {role_id} lacks its comment"
    assert set(found) == set(LEAST_ROLES)
    # Nothing else in infra/ hands out roles (AVM roleAssignments inputs, Owner/Contributor...).
    for path in BICEP_FILES:
        if path.name != "rbac.bicep":
            text = path.read_text(encoding="utf-8")
            assert "roleAssignments" not in text and "roleDefinitions" not in text, path.name


def test_graph_permissions_module_grants_read_only(trees: dict[str, dict[str, Any]]) -> None:
    tree = trees["app/graph-permissions.bicep"]
    # union(): the SKU-reading permission, and always Organization.Read.All (/directory/subscriptions needs it).
    assert tree["variables"]["permissions"]["value"] == {
        "function": {
            "type": "union",
            "parameters": {
                "arg_1": ["licenseReadPermission"],
                "arg_2": ["Organization.Read.All", "GroupMember.Read.All", "User.Read.All"],
            },
        }
    }
    assert set(tree["parameters"]["licenseReadPermission"]["decorators"][0]["argument"]) == {
        "LicenseAssignment.Read.All",
        "Organization.Read.All",
    }
    main = trees["main.bicep"]
    assert main["parameters"]["grantGraphPermissions"]["default"] is False
    assert main["modules"]["graphPermissions"]["config"]["condition"] == "grantGraphPermissions"


# --- the grant script, run against a fake az -------------------------------------------------

_FAKE_AZ = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_AZ_LOG"
case "$1 $2" in
  "cloud show") echo "https://graph.microsoft.com/" ;;
  "ad sp")
    case "$*" in
      *"--query id"*) echo "graph-sp-object-id" ;;
      *LicenseAssignment.Read.All*) echo "11111111-1111-1111-1111-111111111111" ;;
      *GroupMember.Read.All*) echo "22222222-2222-2222-2222-222222222222" ;;
      *Organization.Read.All*) echo "44444444-4444-4444-4444-444444444444" ;;
      *User.Read.All*) echo "33333333-3333-3333-3333-333333333333" ;;
      *) echo "" ;;
    esac ;;
  "rest --method")
    if [ "$3" = "GET" ]; then echo "22222222-2222-2222-2222-222222222222"; fi ;;
esac
"""


@pytest.mark.skipif(sys.platform == "win32" or shutil.which("bash") is None, reason="needs bash")
def test_grant_script_is_idempotent_and_read_only_by_default(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    az = fake_bin / "az"
    az.write_text(_FAKE_AZ, encoding="utf-8")
    az.chmod(0o755)
    log = tmp_path / "az.log"
    env = {
        "PATH": f"{fake_bin}{os.pathsep}/usr/bin:/bin",
        "FAKE_AZ_LOG": str(log),
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
    }
    script = INFRA / "scripts" / "grant-graph-permissions.sh"
    done = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert "already granted: GroupMember.Read.All" in done.stdout
    assert "granted: LicenseAssignment.Read.All" in done.stdout
    assert "granted: User.Read.All" in done.stdout
    assert "granted: Organization.Read.All" in done.stdout  # tenant id, renewal dates: granted by default
    posts = [line for line in log.read_text(encoding="utf-8").splitlines() if "--method POST" in line]
    assert len(posts) == 3  # the existing grant is skipped
    assert all("servicePrincipals/aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa/appRoleAssignments" in p for p in posts)
    assert not any("Mail.Send" in line for line in log.read_text(encoding="utf-8").splitlines())

    bad = subprocess.run(
        ["bash", str(script), "--license-permission", "Directory.Read.All"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: --license-permission")


# --- checkov ----------------------------------------------------------------------------------


def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    """checkov's Bicep checks over infra/: zero failures, every skip carries its reason."""
    scanned = tmp_path / "infra"
    shutil.copytree(INFRA, scanned)
    for path in scanned.rglob("*.bicep"):
        path.write_text(_parseable_text(path), encoding="utf-8")
    checkov = Path(sys.executable).with_name("checkov")
    if not checkov.exists():
        pytest.skip("checkov is not installed in this environment (requirements-dev.txt)")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    done = subprocess.run(
        [str(checkov), "--directory", str(scanned), "--framework", "bicep", "--output", "json", "--skip-download"],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    report = json.loads(done.stdout)
    results = report["results"]
    failed = [(c["check_id"], c["file_path"], c["resource"]) for c in results["failed_checks"]]
    assert not failed, f"checkov failed checks: {failed}"
    assert not results["parsing_errors"], f"checkov could not parse: {results['parsing_errors']}"
    assert report["summary"]["resource_count"] > 0
    assert report["summary"]["passed"] > 0
    for skipped in results["skipped_checks"]:
        reason = (skipped.get("check_result") or {}).get("suppress_comment") or ""
        assert len(reason.strip()) > 20, f"skip of {skipped['check_id']} has no reason"
    assert done.returncode == 0, done.stderr[-2000:]


def test_deploy_doc_covers_every_azd_setting_and_the_queue_encoding() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    supplied = (INFRA / "main.parameters.json").read_text(encoding="utf-8")
    names = set(re.findall(r"\$\{([A-Z_]+)", supplied)) - {
        "AZURE_ENV_NAME",
        "AZURE_PRINCIPAL_ID",
        "AZURE_PRINCIPAL_TYPE",
    }
    undocumented = sorted(name for name in names if f"`{name}`" not in doc)
    assert not undocumented, f"docs/deploy.md does not mention: {undocumented}"
    # The doc tells operators to put plain JSON on the queue: that is only right while the host
    # reads messages unencoded.
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    assert host["extensions"]["queues"]["messageEncoding"] == "none"
    assert '"messageEncoding": "none"' in doc


def test_bicep_creates_every_table_the_store_uses() -> None:
    from licensing.store.store import TableNames

    text = (INFRA / "main.bicep").read_text(encoding="utf-8")
    for name in TableNames.with_prefix("").all():
        assert f"'{name}'" in text, name


def test_the_app_identity_may_never_write_licences(trees: dict[str, dict[str, Any]]) -> None:
    """Issue 28: apply runs from an admin's terminal; nothing in infra/ grants the app a write permission. (The
    deployer's own AppRoleAssignment.ReadWrite.All, which grants the read permissions, is not the app's.)"""
    granted = trees["app/graph-permissions.bicep"]["variables"]["permissions"]["value"]
    assert "Write" not in str(granted)
    for path in sorted(INFRA.rglob("*")):
        if path.is_file() and path.suffix in (".bicep", ".json", ".sh", ".ps1"):
            text = path.read_text(encoding="utf-8")
            for write in ("LicenseAssignment.ReadWrite", "Directory.ReadWrite", "Group.ReadWrite", "User.ReadWrite"):
                assert write not in text, (path, write)


def test_reports_container_is_private_kept_like_the_runs_and_readable_by_the_operator(
    trees: dict[str, dict[str, Any]],
) -> None:
    """Issue 30, item 1: REPORT_CONTAINER exists, private, its blobs deleted after RETENTION_DAYS; the app is told its
    name and the blob endpoint; an operator gets read access on that container only."""
    main = trees["main.bicep"]
    defaults = load_settings({})
    assert main["variables"]["reportContainer"]["value"] == defaults.report_container
    storage = main["modules"]["storage"]["config"]["params"]
    containers = {c["name"]: c for c in storage["blobServices"]["containers"]}
    assert containers["reportContainer"]["publicAccess"] == "None"
    assert storage["allowBlobPublicAccess"] is False
    (rule,) = storage["managementPolicyRules"]
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    assert rule["definition"]["actions"]["baseBlob"]["delete"]["daysAfterModificationGreaterThan"] == "retentionDays"
    assert rule["definition"]["filters"]["prefixMatch"] == ["${reportContainer}/"]
    app_settings = _app_settings(trees)
    assert app_settings["REPORT_CONTAINER"] == "reportContainer"
    assert "AzureWebJobsStorage__blobServiceUri" in app_settings
    deployed = load_settings(
        {"AzureWebJobsStorage__accountName": "stexample", "AzureWebJobsStorage__credential": "managedidentity"}
    )
    assert deployed.storage is not None and deployed.storage.blob_uri == "https://stexample.blob.core.windows.net"
    rbac = (INFRA / "app" / "rbac.bicep").read_text(encoding="utf-8")
    assert "scope: reportContainer" in rbac and "storageBlobDataReader" in rbac


def test_report_sign_in_is_entra_for_every_request_and_only_when_asked(trees: dict[str, dict[str, Any]]) -> None:
    # The alerts' Full report link (licensing/pipeline/viewer.py) is served only behind App Service authentication.
    function = trees["app/function.bicep"]
    assert function["modules"]["functionApp"]["config"]["params"]["authSettingV2Configuration"] == "reportSignIn"
    conditional = function["variables"]["reportSignIn"]["value"]["operator"]
    assert conditional["operands"]["condition"] == {
        "function": {"type": "empty", "parameters": {"item_to_test": "reportSignInClientId"}}
    }
    assert conditional["operands"]["true_value"] is None  # no client id: no sign-in, the route answers 404
    auth = conditional["operands"]["false_value"]
    assert auth["globalValidation"]["requireAuthentication"] is True
    assert auth["globalValidation"]["unauthenticatedClientAction"] == "RedirectToLoginPage"
    entra = auth["identityProviders"]["azureActiveDirectory"]
    assert entra["registration"]["clientId"] == "reportSignInClientId"
    assert entra["registration"]["openIdIssuer"].endswith("${tenant().tenantId}/v2.0")  # this tenant only
    assert auth["login"]["tokenStore"]["enabled"] is False  # no tokens kept: the app reads with its own identity
    passed = trees["main.bicep"]["modules"]["functionApp"]["config"]["params"]
    assert passed["reportSignInClientId"] == "reportSignInClientId"
    assert trees["main.bicep"]["parameters"]["reportSignInClientId"]["default"] == ""
