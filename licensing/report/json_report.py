"""The JSON report ``licensing-audit/1`` (docs/design.md, "The JSON report"): write it, and read it back.

Key order follows docs/design.md. Extra keys, after the documented ones: ``run.request_id``,
``run.requested_by``, ``run.scope_id``, ``run.resource_units``, ``run.tenant_name``;
``skus[].product_name``; ``findings[].group_name/user_name/member_group_name/product_name``;
and a top-level ``outcomes`` (one per rule). Readers of ``licensing-audit/1`` must ignore keys
they do not know; ``licensing/data/report.schema.json`` describes the whole document.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import orjson

from licensing.errors import BadRequestError
from licensing.model import (
    AuditReport,
    Finding,
    GroupSummary,
    OutcomeStatus,
    RuleOutcome,
    RunInfo,
    RunStatus,
    Scope,
    Severity,
    SkuSummary,
    Trigger,
)

__all__ = ["SCHEMA", "report_from_json", "to_json_bytes", "to_json_dict"]

SCHEMA: Final = "licensing-audit/1"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _run(run: RunInfo) -> dict[str, Any]:
    return {
        "id": run.id,
        "tenant_id": run.tenant_id,
        "trigger": run.trigger.value,
        "scope": run.scope.value,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "status": run.status.value,
        "graph_requests": run.graph_requests,
        "graph_throttled": run.graph_throttled,
        "errors": list(run.errors),
        # extras
        "request_id": run.request_id,
        "requested_by": run.requested_by,
        "scope_id": run.scope_id,
        "resource_units": run.resource_units,
        "tenant_name": run.tenant_name,
    }


def _sku(s: SkuSummary) -> dict[str, Any]:
    return {
        "sku_id": s.sku_id,
        "sku_part_number": s.sku_part_number,
        "enabled": s.enabled,
        "consumed": s.consumed,
        "available": s.available,
        "warning": s.warning,
        "suspended": s.suspended,
        "locked_out": s.locked_out,
        "group_assigned_users": s.group_assigned_users,
        "waiting_users": s.waiting_users,
        "assigned_by_groups": list(s.assigned_by_groups),
        "product_name": s.product_name,
    }


def _group(g: GroupSummary) -> dict[str, Any]:
    return {
        "id": g.id,
        "display_name": g.display_name,
        "sku_ids": list(g.sku_ids),
        "processing_state": g.processing_state,
        "members": g.members,
        "users": g.users,
        "b2b_users": g.b2b_users,
        "nested_groups": g.nested_groups,
        "license_errors": g.license_errors,
    }


def _finding(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "kind": f.kind,
        "severity": Severity(f.severity).value,
        "message": f.message,
        "sku_id": f.sku_id,
        "sku_part_number": f.sku_part_number,
        "group_id": f.group_id,
        "user_id": f.user_id,
        "member_group_id": f.member_group_id,
        "error": f.error,
        "group_name": f.group_name,
        "user_name": f.user_name,
        "member_group_name": f.member_group_name,
        "product_name": f.product_name,
    }


def _outcome(o: RuleOutcome) -> dict[str, Any]:
    return {"rule_id": o.rule_id, "status": o.status, "findings": o.findings, "reason": o.reason}


def to_json_dict(report: AuditReport) -> dict[str, Any]:
    """The report as plain JSON types, keys in docs/design.md order (extras last)."""
    return {
        "schema": SCHEMA,
        "run": _run(report.run),
        "skus": [_sku(s) for s in report.skus],
        "groups": [_group(g) for g in report.groups],
        "findings": [_finding(f) for f in report.findings],
        "outcomes": [_outcome(o) for o in report.outcomes],
    }


def to_json_bytes(report: AuditReport) -> bytes:
    """UTF-8 JSON, indented for people and diffs, with a final newline."""
    return orjson.dumps(to_json_dict(report), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


# ---------------------------------------------------------------- reading


class _Reader:
    """Typed access to a JSON object that names the exact path of anything wrong."""

    def __init__(self, data: Mapping[str, Any], path: str) -> None:
        self.data = data
        self.path = path

    def _fail(self, key: str, expected: str) -> BadRequestError:
        return BadRequestError(f"not a {SCHEMA} report: {self.path}.{key} must be {expected}")

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string or null")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.data.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "an integer")
        return value

    def number(self, key: str, default: float = 0.0) -> float:
        value = self.data.get(key, default)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise self._fail(key, "a number")
        return float(value)

    def texts(self, key: str) -> tuple[str, ...]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings")
        return tuple(value)

    def when(self, key: str, *, optional: bool = False) -> datetime | None:
        value = self.opt_text(key) if optional else self.text(key)
        if value is None:
            return None
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            raise self._fail(key, "an ISO-8601 date and time") from None

    def enum(self, key: str, values: Sequence[str]) -> str:
        value = self.text(key)
        if value not in values:
            raise self._fail(key, "one of " + ", ".join(values))
        return value

    def objects(self, key: str) -> list[_Reader]:
        value = self.data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self._fail(key, "a list of objects")
        return [_Reader(v, f"{self.path}.{key}[{i}]") for i, v in enumerate(value)]


def _read_run(r: _Reader) -> RunInfo:
    started = r.when("started_at")
    assert started is not None
    return RunInfo(
        id=r.text("id"),
        tenant_id=r.text("tenant_id"),
        trigger=Trigger(r.enum("trigger", [t.value for t in Trigger])),
        scope=Scope(r.enum("scope", [s.value for s in Scope])),
        started_at=started,
        finished_at=r.when("finished_at", optional=True),
        status=RunStatus(r.enum("status", [s.value for s in RunStatus])),
        graph_requests=r.integer("graph_requests", 0),
        graph_throttled=r.integer("graph_throttled", 0),
        errors=r.texts("errors"),
        request_id=r.opt_text("request_id"),
        requested_by=r.opt_text("requested_by"),
        scope_id=r.opt_text("scope_id"),
        resource_units=r.number("resource_units"),
        tenant_name=r.opt_text("tenant_name") or "",
    )


def _read_sku(r: _Reader) -> SkuSummary:
    from licensing.skus import product_name

    part = r.text("sku_part_number")
    return SkuSummary(
        sku_id=r.text("sku_id"),
        sku_part_number=part,
        product_name=r.opt_text("product_name") or product_name(part, r.text("sku_id")),
        enabled=r.integer("enabled"),
        consumed=r.integer("consumed"),
        available=r.integer("available"),
        warning=r.integer("warning", 0),
        suspended=r.integer("suspended", 0),
        locked_out=r.integer("locked_out", 0),
        group_assigned_users=r.integer("group_assigned_users", 0),
        waiting_users=r.integer("waiting_users", 0),
        assigned_by_groups=r.texts("assigned_by_groups"),
    )


def _read_group(r: _Reader) -> GroupSummary:
    return GroupSummary(
        id=r.text("id"),
        display_name=r.opt_text("display_name") or "",
        sku_ids=r.texts("sku_ids"),
        processing_state=r.opt_text("processing_state"),
        members=r.integer("members", 0),
        users=r.integer("users", 0),
        b2b_users=r.integer("b2b_users", 0),
        nested_groups=r.integer("nested_groups", 0),
        license_errors=r.integer("license_errors", 0),
    )


def _read_finding(r: _Reader) -> Finding:
    return Finding(
        id=r.text("id"),
        kind=r.text("kind"),
        severity=Severity(r.enum("severity", [s.value for s in Severity])),
        message=r.text("message"),
        sku_id=r.opt_text("sku_id"),
        sku_part_number=r.opt_text("sku_part_number"),
        group_id=r.opt_text("group_id"),
        user_id=r.opt_text("user_id"),
        member_group_id=r.opt_text("member_group_id"),
        error=r.opt_text("error"),
        group_name=r.opt_text("group_name"),
        user_name=r.opt_text("user_name"),
        member_group_name=r.opt_text("member_group_name"),
        product_name=r.opt_text("product_name"),
    )


def _read_outcome(r: _Reader) -> RuleOutcome:
    return RuleOutcome(
        rule_id=r.text("rule_id"),
        status=OutcomeStatus(r.enum("status", [s.value for s in OutcomeStatus])),
        findings=r.integer("findings", 0),
        reason=r.opt_text("reason"),
    )


def report_from_json(data: bytes | str | Mapping[str, Any]) -> AuditReport:
    """Read a stored or archived report (bytes, text or an already-parsed dict).

    Raises BadRequestError (one line, naming the offending key) for anything that is not a
    ``licensing-audit/1`` report. Unknown keys are ignored, so later additions stay readable.
    """
    if isinstance(data, bytes | str):
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"not a {SCHEMA} report: invalid JSON ({exc})") from None
    else:
        parsed = data
    if not isinstance(parsed, Mapping):
        raise BadRequestError(f"not a {SCHEMA} report: the document must be a JSON object")
    if parsed.get("schema") != SCHEMA:
        raise BadRequestError(f"not a {SCHEMA} report: schema is {parsed.get('schema')!r}")
    root = _Reader(parsed, "$")
    run = parsed.get("run")
    if not isinstance(run, Mapping):
        raise BadRequestError(f"not a {SCHEMA} report: $.run must be an object")
    return AuditReport(
        run=_read_run(_Reader(run, "$.run")),
        skus=tuple(_read_sku(r) for r in root.objects("skus")),
        groups=tuple(_read_group(r) for r in root.objects("groups")),
        findings=tuple(_read_finding(r) for r in root.objects("findings")),
        outcomes=tuple(_read_outcome(r) for r in root.objects("outcomes")),
    )
