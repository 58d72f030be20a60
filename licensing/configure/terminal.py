"""What the writing commands share at the terminal: exit codes, the console, the journal's place, the write
policy (bounded waits, progress lines) and writing --json files."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any, Final

from licensing.errors import AuditError, ConfigurationError

__all__ = ["EXIT_BLOCKED", "EXIT_FAILED", "EXIT_OK", "EXIT_PENDING", "MAX_WAIT_S", "new_console", "open_journal", "say",
           "write_json", "write_policy"]  # fmt: skip

EXIT_OK, EXIT_FAILED, EXIT_BLOCKED, EXIT_PENDING = 0, 1, 3, 4
MAX_WAIT_S: Final = 24 * 3600


def new_console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def say(console: Any, line: str) -> None:
    console.print(line, markup=False, soft_wrap=True)


def open_journal(settings: Any, beside: Path | None, journal_file: Path | None) -> Any:
    """The LicenseChanges table when a store is configured, else the file next to the desired state (or given)."""
    from licensing.configure.journal import FileJournal, StoreJournal, journal_beside

    if settings.storage is not None:
        from licensing.store import open_store

        store = open_store(settings.storage)
        store.ensure_tables()
        return StoreJournal(store)
    if journal_file is not None:
        return FileJournal(journal_file)
    if beside is not None:
        return FileJournal(journal_beside(beside))
    raise ConfigurationError("no journal: give --journal FILE (the journal next to your desired state) or --store")


def write_policy(console: Any, who: str, wait: int, **extra: Any) -> Any:
    from licensing.clock import utcnow
    from licensing.configure.writer import WritePolicy

    poll_s = min(5.0, max(0.05, wait / 10))
    return WritePolicy(
        who=who,
        polls=math.ceil(wait / poll_s) + 1,
        poll_s=poll_s,
        sleep=asyncio.sleep,
        now=utcnow,
        progress=lambda line: say(console, f"  {line}"),
        **extra,
    )


def write_json(path: Path | None, data: bytes) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise AuditError(f"could not write {path}: {exc.strerror or type(exc).__name__}") from None
