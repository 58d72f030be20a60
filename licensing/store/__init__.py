"""Azure Table Storage for the audit: runs, findings, SKU history, alert state, outbox and leases."""

from __future__ import annotations

from licensing.store.connection import RetryPolicy
from licensing.store.store import AuditStore, TableNames, open_store

__all__ = ["AuditStore", "RetryPolicy", "TableNames", "open_store"]
