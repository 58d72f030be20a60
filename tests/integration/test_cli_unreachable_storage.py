"""Issue 30, item 5: every storage wait is bounded: with an account nobody answers for, each storage command fails
within seconds, in one line, exit 1 (enqueue used to retry for about 85 s and print dozens of lines)."""

from __future__ import annotations

import socket
import time

import pytest

from licensing.cli import EXIT_FAILED, main
from licensing.emulator import AZURITE_ACCOUNT, AZURITE_KEY

TENANT = "3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed on exit: connections are refused


@pytest.fixture
def dead_store(monkeypatch: pytest.MonkeyPatch) -> str:
    for name in ("LICENSING_STORAGE", "AzureWebJobsStorage", "AZURE_TENANT_ID"):
        monkeypatch.delenv(name, raising=False)
    port = _closed_port()
    base = f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}"
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={base};QueueEndpoint={base};TableEndpoint={base};"
    )


@pytest.mark.parametrize(
    "command",
    [
        ["enqueue"],
        ["history", "--tenant-id", TENANT],
        ["report", "--tenant-id", TENANT],
        ["suppress", "--list", "--tenant-id", TENANT],
    ],
    ids=lambda c: c[0],
)
def test_unreachable_storage_fails_fast_in_one_line(
    dead_store: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = main([*command, "--store", dead_store])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err.strip()
    assert code == EXIT_FAILED, err
    assert len(err.splitlines()) == 1 and err.startswith("licensing-audit: failed:")
    assert AZURITE_KEY not in err
    assert elapsed < 15, f"{command[0]} waited {elapsed:.1f}s"


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--reason", "partners"], "--until"),
        (["--until", "2026-12-31"], "--reason"),
        (["--reason", "partners", "--until", "9999-12-31"], "days ahead"),
    ],
    ids=["no-until", "no-reason", "too-far"],
)
def test_suppress_names_a_missing_or_bad_flag_before_any_storage_or_sign_in(
    dead_store: str, flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An admin who forgot --until is told so, not "cannot reach table storage" or a sign-in failure."""
    code = main(["suppress", "--kind", "b2b_member", "--sku", "SPE_E3", *flags, "--store", dead_store])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and named in err, err
