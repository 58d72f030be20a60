"""Record builders the tests share (one place instead of a copy per test module): a valid record of each
kind with plain defaults; a test overrides only what it is about."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from licensing.model import Finding, GroupSummary, RunInfo, RunStatus, Scope, Severity, SkuSummary, Trigger

T0 = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
SKU_ID = "6fd2c87f-b296-42f0-b197-1e91e994b900"  # Office 365 E3 (ENTERPRISEPACK)


def run_info(**overrides: Any) -> RunInfo:
    """A tenant run of the queue, started at T0, still running (override ``status`` to finish it)."""
    fields: dict[str, Any] = {
        "id": f"run-{uuid.uuid4().hex[:8]}",
        "tenant_id": "11111111-2222-3333-4444-555555555555",
        "trigger": Trigger.QUEUE,
        "scope": Scope.TENANT,
        "started_at": T0,
        "status": RunStatus.RUNNING,
    }
    fields.update(overrides)
    return RunInfo(**fields)


def finding(**overrides: Any) -> Finding:
    """A warning about a B2B member of a licensed group."""
    fields: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "kind": "b2b_member",
        "severity": Severity.WARNING,
        "message": "a finding",
    }
    fields.update(overrides)
    return Finding(**fields)


def sku_summary(**overrides: Any) -> SkuSummary:
    """Office 365 E3 with 100 seats, 98 consumed, 3 users waiting."""
    fields: dict[str, Any] = {
        "sku_id": SKU_ID,
        "sku_part_number": "ENTERPRISEPACK",
        "product_name": "Office 365 E3",
        "enabled": 100,
        "consumed": 98,
        "available": 2,
        "warning": 0,
        "suspended": 0,
        "locked_out": 0,
        "group_assigned_users": 90,
        "waiting_users": 3,
        "assigned_by_groups": (),
    }
    fields.update(overrides)
    return SkuSummary(**fields)


def group_summary(**overrides: Any) -> GroupSummary:
    """A licensed group of ten user members assigning Office 365 E3, fully processed, nothing wrong."""
    fields: dict[str, Any] = {
        "id": "22222222-0000-0000-0000-000000000001",
        "display_name": "Licensing group",
        "sku_ids": (SKU_ID,),
        "processing_state": "ProcessingComplete",
        "members": 10,
        "users": 10,
        "b2b_users": 0,
        "nested_groups": 0,
        "license_errors": 0,
    }
    fields.update(overrides)
    return GroupSummary(**fields)
