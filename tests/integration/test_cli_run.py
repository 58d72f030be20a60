"""`licensing-audit run` against the sandbox: the CLI contract (files, schema, exit codes, one-line errors)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from licensing.cli import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, main
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "licensing" / "data" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(generate_tenant(TenantSpec(seed=5, users=250, groups=14))) as running:
        yield running


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_MAIL_TO", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def base_args(server: SandboxServer) -> list[str]:
    return ["run", "--graph-url", server.base_url, "--credential", "none", "--store", "none", "--no-alerts"]


def test_run_writes_json_csv_html_that_validate(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*base_args(server), "--json", str(tmp_path / "r.json"), "--csv", str(tmp_path / "csv")]
    args += ["--html", str(tmp_path / "r.html")]
    assert main(args) == EXIT_OK
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    jsonschema.validate(report, SCHEMA)
    assert report["schema"] == "licensing-audit/1"
    assert report["run"]["trigger"] == "cli" and report["run"]["status"] == "succeeded"
    assert {p.name for p in (tmp_path / "csv").iterdir()} == {"skus.csv", "groups.csv", "findings.csv"}
    assert (tmp_path / "r.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html>")
    out = capsys.readouterr().out
    assert "critical" in out.lower()
    assert "\x1b[" not in out  # not a terminal: no colour codes


def test_fail_on_gives_exit_3(server: SandboxServer) -> None:
    assert main([*base_args(server), "--fail-on", "critical", "--quiet"]) == EXIT_FINDINGS


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--scope", "group"], "--group is required when --scope is group"),  # the flags, not the queue's fields
        (["--scope", "group", "--group", "nope"], "is not a GUID"),
        (["--scope", "planet"], "planet"),
        (["--fail-on", "sometimes"], "sometimes"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(
    server: SandboxServer, extra: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*base_args(server), *extra]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_credential_none_is_refused_for_a_real_graph_host(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["run", "--cloud", "global", "--credential", "none", "--store", "none", "--no-alerts"])
    err = capsys.readouterr().err.strip()
    assert code == EXIT_USAGE and len(err.splitlines()) == 1 and "loopback" in err


def test_bad_settings_are_one_line_and_exit_2(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEAT_MIN_FREE", "many")
    monkeypatch.setenv("ALERT_MIN_SEVERITY", "panic")
    assert main(base_args(server)) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert "SEAT_MIN_FREE" in err and "ALERT_MIN_SEVERITY" in err and len(err.splitlines()) == 1


def test_check_permissions_names_each_permission(server: SandboxServer, capsys: pytest.CaptureFixture[str]) -> None:
    from licensing.sandbox import FaultRule, Faults

    args = ["check-permissions", "--graph-url", server.base_url, "--credential", "none"]
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    for permission in ("Organization.Read.All", "GroupMember.Read.All", "User.Read.All", "Mail.Send"):
        assert permission in out
    server.set_faults(Faults(rules=(FaultRule("403", route="members"),)))
    try:
        assert main(args) == 1
    finally:
        server.set_faults(Faults())
    assert "MISSING  GroupMember.Read.All" in capsys.readouterr().out


def test_bare_command_prints_the_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_USAGE
    out = capsys.readouterr().out
    assert "Usage: licensing-audit" in out and "check-permissions" in out


def test_sandbox_help_is_the_sandbox_parsers(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["sandbox", "--help"])
    assert done.value.code == 0
    assert "--faults" in capsys.readouterr().out


def test_demo_refuses_a_tenant_smaller_than_the_sandbox_builds(capsys: pytest.CaptureFixture[str]) -> None:
    from licensing.cli import DEMO_MIN_GROUPS, DEMO_MIN_USERS
    from licensing.sandbox.tenant import MIN_GROUPS, MIN_USERS

    assert (DEMO_MIN_USERS, DEMO_MIN_GROUPS) == (MIN_USERS, MIN_GROUPS)
    assert main(["demo", "--users", str(MIN_USERS - 1)]) == EXIT_USAGE
    assert "--users" in capsys.readouterr().err


def test_run_ends_saying_where_alerts_went_and_what_was_stored(
    server: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 30, item 4: with no alert setting (e.g. a misspelled webhook name) the run says so at its end."""
    args = ["run", "--graph-url", server.base_url, "--credential", "none", "--store", "none"]
    assert main(args) == EXIT_OK
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2:] == [
        "alerts: none configured (set ALERT_TEAMS_WEBHOOK_URL, or ALERT_MAIL_FROM with ALERT_MAIL_TO)",
        "stored: nothing (--store none, or no LICENSING_STORAGE)",
    ]
    assert main([*base_args(server)]) == EXIT_OK
    assert "alerts: not sent (--no-alerts)" in capsys.readouterr().out


def test_check_permissions_exits_1_when_a_needed_permission_could_not_be_checked(
    server: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 30, item 3: "unknown" is not "granted": exit non-zero; an unset mailbox is skipped, not unknown."""
    from licensing.sandbox import FaultRule, Faults

    args = ["check-permissions", "--graph-url", server.base_url, "--credential", "none"]
    server.set_faults(Faults(rules=(FaultRule("404", route="users"),)))
    try:
        assert main(args) == 1
    finally:
        server.set_faults(Faults())
    out = capsys.readouterr().out
    assert "UNKNOWN  User.Read.All" in out
    assert "skipped  Mail.Send  not checked: ALERT_MAIL_FROM is not set" in out


def test_check_permissions_with_a_credential_that_does_not_work_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 30, item 3: no token: one line naming the credential, exit 1, no list of "unknown", no get_token noise.
    The Azure CLI credential fails locally when `az` is not on PATH: nothing leaves the machine."""
    monkeypatch.setenv("PATH", str(tmp_path))
    code = main(["check-permissions", "--cloud", "global", "--credential", "azure-cli"])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("licensing-audit: failed: --credential azure-cli: no Graph token")


def test_a_graph_url_without_the_version_is_a_usage_error(
    server: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 30, item 10: `--graph-url http://host:port` (no /v1.0) failed late as an audit failure; now exit 2."""
    root = server.base_url.removesuffix("/v1.0")
    assert main(["run", "--graph-url", root, "--credential", "none", "--store", "none", "--no-alerts"]) == EXIT_USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("licensing-audit: error: --graph-url (GRAPH_BASE_URL)=") and "ending in /v1.0" in line


def test_several_skus_in_one_flag_say_repeat_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    group = "0b5c8f6e-1d2a-4c3b-9e8f-7a6b5c4d3e2f"
    args = ["plan", "--group", group, "--sku", "SPE_E3,EMS", "--graph-url", "http://127.0.0.1:9/v1.0"]
    assert main([*args, "--credential", "none"]) == EXIT_USAGE
    assert "repeat it: --sku SPE_E3 --sku EMS" in capsys.readouterr().err
    assert main(["plan", "--help"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "--sku SKU" in out and "list[str]" not in out


def test_request_errors_name_the_flags_and_keep_the_values(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 30, item 10: errors name --group/--sku/--scope, not the queue's fields, and a value stays a value
    (it read "--sku is only allowed when --scope is --sku")."""
    args = ["run", "--sku", "SPE_E3", "--graph-url", "http://127.0.0.1:9/v1.0", "--credential", "none"]
    assert main(args) == EXIT_USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "licensing-audit: error: --sku is only allowed when --scope is sku (--scope is tenant)"


def test_a_users_scan_that_was_not_read_shows_no_waiting_count(
    server: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Reviewer of issue 30: a partial run whose users scan was unreadable printed `Waiting 0` for every product."""
    from licensing.sandbox import FaultRule, Faults

    server.set_faults(Faults(rules=(FaultRule("403", route="users"),)))
    try:
        main(base_args(server))
    finally:
        server.set_faults(Faults())
    out = capsys.readouterr().out
    table = out.split("Seats", 1)[1].split("\n\n", 1)[0]
    rows = [line for line in table.splitlines() if "%" in line or " over " in line]
    assert rows and all("not read" in row for row in rows)


@pytest.mark.parametrize("quiet", [False, True])
def test_a_group_that_assigns_no_licence_is_one_line(
    server: SandboxServer, capsys: pytest.CaptureFixture[str], quiet: bool
) -> None:
    """Reviewer of issue 30: ~18 identical "not evaluated: … assigns no license" lines, then "No findings"."""
    gid = server.tenant.plan_group("plan_ready").id
    args = [*base_args(server), "--scope", "group", "--group", gid] + (["--quiet"] if quiet else [])
    assert main(args) == EXIT_OK
    out = capsys.readouterr().out
    said = (
        f"group {gid} assigns no licence: nothing to audit; `licensing-audit plan --group {gid} --sku …` says "
        "whether it may be licensed"
    )
    assert out.count(said) == 1
    assert "not evaluated" not in out and "No findings" not in out


def test_kinds_not_evaluated_for_one_reason_are_one_line(
    server: SandboxServer, capsys: pytest.CaptureFixture[str]
) -> None:
    from licensing.sandbox import FaultRule, Faults

    server.set_faults(Faults(rules=(FaultRule("403", route="users"),)))
    try:
        main(base_args(server))
    finally:
        server.set_faults(Faults())
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("not evaluated: ")]
    assert any(line.startswith("not evaluated: seat_shortage, seat_low: ") for line in lines)
    reasons = [line.split(": ", 2)[2] for line in lines]
    assert len(reasons) == len(set(reasons))
