"""Where changes are journalled: the ``LicenseChanges`` table when a store is configured, else a local file.

Every change is written twice under one id (``pending`` before the call, its outcome after); the later record
wins. The file is JSON Lines next to the desired state (``<name>.journal.jsonl``), appended and flushed to disk
before the call is made, so a crash between the two leaves a ``pending`` record for the re-read to settle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

import orjson

from licensing.changes import LicenseChange, change_from_plain, change_to_plain
from licensing.convert import ConversionError
from licensing.errors import AuditError, BadRequestError

__all__ = ["FileJournal", "Journal", "StoreJournal", "journal_beside"]


class Journal(Protocol):
    where: str

    def record(self, change: LicenseChange) -> None: ...

    def changes(self, tenant_id: str) -> list[LicenseChange]: ...

    def find(self, change_id: str) -> LicenseChange | None: ...


def journal_beside(desired: Path) -> Path:
    """``licensing.yaml`` -> ``licensing.journal.jsonl`` in the same folder."""
    return desired.with_name(f"{desired.stem}.journal.jsonl")


class FileJournal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    def record(self, change: LicenseChange) -> None:
        line = orjson.dumps(change_to_plain(change)) + b"\n"
        try:
            with self.path.open("ab") as fh:
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise AuditError(f"cannot write the journal {self.path}: {exc.strerror or type(exc).__name__}") from None

    def changes(self, tenant_id: str | None) -> list[LicenseChange]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise AuditError(f"cannot read the journal {self.path}: {exc.strerror or type(exc).__name__}") from None
        latest: dict[str, LicenseChange] = {}
        for n, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                change = change_from_plain(orjson.loads(line))
            except (orjson.JSONDecodeError, ConversionError, TypeError) as exc:
                raise BadRequestError(f"{self.path}:{n}: not a journal record ({exc})") from None
            if tenant_id is None or change.tenant_id == tenant_id:
                latest[change.id] = change
        return sorted(latest.values(), key=lambda c: (c.when, c.id))

    def find(self, change_id: str) -> LicenseChange | None:
        return next((c for c in self.changes(None) if c.id == change_id), None)


class StoreJournal:
    def __init__(self, store: Any) -> None:
        self.store = store
        self.where = "the LicenseChanges table"

    def record(self, change: LicenseChange) -> None:
        self.store.put_license_change(change)

    def changes(self, tenant_id: str) -> list[LicenseChange]:
        return list(self.store.license_changes(tenant_id))

    def find(self, change_id: str) -> LicenseChange | None:
        found: LicenseChange | None = self.store.license_change(change_id)
        return found
