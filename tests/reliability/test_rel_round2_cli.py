"""Round two, the command line and start-up (issue 16 items 14 and 16): every bad input ends in one line and
exit 2, output paths are checked before the audit (and its alerts), the connection string can stay out of
shell history, and `enqueue` prints one unwrapped line. Each test failed before its fix."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest

from licensing.cli import EXIT_OK, EXIT_USAGE, main
from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(generate_tenant(TenantSpec(seed=5, users=60, groups=12))) as running:
        yield running


@pytest.fixture(autouse=True)
def no_ambient_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "ALERT_TEAMS_WEBHOOK_URL", "ALERT_MAIL_TO", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def run_args(server: SandboxServer, *extra: str) -> list[str]:
    return ["run", "--graph-url", server.base_url, "--credential", "none", "--store", "none", "--no-alerts", *extra]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_json_to_an_unwritable_path_fails_before_the_audit(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    before = server.stats["requests"]
    try:
        assert main(run_args(server, "--json", str(locked / "sub" / "r.json"))) == EXIT_USAGE
    finally:
        locked.chmod(0o700)
    assert "--json" in one_line_error(capsys)
    assert server.stats["requests"] == before, "the outputs are checked before Graph is read (and alerts sent)"


def test_json_under_a_file_fails_before_the_audit(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unwritable --json failed with a traceback, and only after the audit had sent its alerts."""
    (tmp_path / "plain").write_text("x", encoding="utf-8")
    before = server.stats["requests"]
    assert main(run_args(server, "--json", str(tmp_path / "plain" / "r.json"))) == EXIT_USAGE
    assert "--json" in one_line_error(capsys)
    assert server.stats["requests"] == before


def test_csv_naming_a_file_fails_before_the_audit(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "findings.csv"
    target.write_text("keep me", encoding="utf-8")
    before = server.stats["requests"]
    assert main(run_args(server, "--csv", str(target))) == EXIT_USAGE
    assert "--csv" in one_line_error(capsys) and target.read_text(encoding="utf-8") == "keep me"
    assert server.stats["requests"] == before


def test_json_naming_a_directory_fails_in_one_line(
    server: SandboxServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(run_args(server, "--json", str(tmp_path))) == EXIT_USAGE
    assert "--json" in one_line_error(capsys)


def test_a_graph_url_with_port_99999_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--graph-url", "http://127.0.0.1:99999/v1.0", "--credential", "none", "--store", "none"]) == 2
    assert "GRAPH_BASE_URL" in one_line_error(capsys)


@pytest.mark.parametrize(
    "connection", ["nonsense", "AccountName=x", "AccountName=x;AccountKey=not base64!", "Foo=bar;AccountKey=abcd"]
)
def test_enqueue_with_a_malformed_connection_string_is_one_line_without_the_value(
    connection: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["enqueue", "--store", connection]) == EXIT_USAGE
    line = one_line_error(capsys)
    assert "LICENSING_STORAGE" in line and "not base64!" not in line and "abcd" not in line


@pytest.mark.azurite
def test_the_connection_string_can_come_from_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], storage_connection: str
) -> None:
    """Item 16: on the command line it lands in shell history; ``--store @FILE`` (or LICENSING_STORAGE) does not."""
    secret = tmp_path / "storage.txt"
    secret.write_text(storage_connection + "\n", encoding="utf-8")
    assert main(["enqueue", "--store", f"@{secret}", "--requested-by", "x" * 60]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("enqueued tenant audit on ")
    assert out.count("\n") == 1, "one line"
    assert "AccountKey" not in out


def test_a_missing_store_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["enqueue", "--store", f"@{tmp_path / 'nope.txt'}"]) == EXIT_USAGE
    assert "--store" in one_line_error(capsys)


@pytest.mark.azurite
def test_enqueue_prints_one_line_off_a_terminal(
    storage_connection: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LICENSING_STORAGE", storage_connection)
    monkeypatch.setenv("AUDIT_QUEUE", "a-rather-long-queue-name-for-wrapping-tests")
    assert main(["enqueue", "--scope", "tenant"]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and len(out) > 80, repr(out)


def test_function_start_up_with_bad_settings_is_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The host showed the traceback of settings.py; now one CRITICAL line and an exception with no inner frames."""
    import importlib

    from licensing.errors import ConfigurationError
    from licensing.settings import get_settings

    monkeypatch.setenv("SEAT_MIN_FREE", "lots")
    monkeypatch.setenv("AUDIT_SCHEDULE", "0 0 0 30 2 *")
    get_settings.cache_clear()
    sys.modules.pop("function_app", None)
    try:
        with caplog.at_level(logging.CRITICAL), pytest.raises(ConfigurationError) as caught:
            importlib.import_module("function_app")
    finally:
        get_settings.cache_clear()
        sys.modules.pop("function_app", None)
    [record] = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    line = record.getMessage()
    assert "\n" not in line and "SEAT_MIN_FREE" in line and "AUDIT_SCHEDULE" in line
    frames = traceback.extract_tb(caught.value.__traceback__)
    assert not [f.filename for f in frames if "licensing" in Path(f.filename).parts], "inner frames shown"
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
