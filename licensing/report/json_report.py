"""The JSON report ``licensing-audit/1`` (docs/design.md, "The JSON report"): write it, and read it back.

Key order follows docs/design.md, which is the field order of the records (licensing/convert.py
writes and reads them). Extra keys, after the documented ones: ``run.request_id``,
``run.requested_by``, ``run.scope_id``, ``run.resource_units``, ``run.tenant_name``;
``skus[].product_name``; ``findings[].group_name/user_name/member_group_name/product_name/since``;
and a top-level ``outcomes`` (one per rule). Readers of ``licensing-audit/1`` must ignore keys
they do not know; ``licensing/data/report.schema.json`` describes the whole document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import orjson

from licensing.convert import ConversionError, from_plain, to_plain
from licensing.errors import BadRequestError
from licensing.model import AuditReport
from licensing.skus import product_name

__all__ = ["SCHEMA", "report_from_json", "to_json_bytes", "to_json_dict"]

SCHEMA: Final = "licensing-audit/1"


def _sku(plain: dict[str, Any]) -> dict[str, Any]:
    # product_name came after the documented keys (an extra); the record keeps it next to the part number.
    plain["product_name"] = plain.pop("product_name")
    return plain


def to_json_dict(report: AuditReport) -> dict[str, Any]:
    """The report as plain JSON types, keys in docs/design.md order (extras last)."""
    return {
        "schema": SCHEMA,
        "run": to_plain(report.run),
        "skus": [_sku(to_plain(s)) for s in report.skus],
        "groups": to_plain(report.groups),
        "findings": to_plain(report.findings),
        "outcomes": to_plain(report.outcomes),
    }


def to_json_bytes(report: AuditReport) -> bytes:
    """UTF-8 JSON, indented for people and diffs, with a final newline."""
    return orjson.dumps(to_json_dict(report), option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


# ---------------------------------------------------------------- reading


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
    run = parsed.get("run")
    if not isinstance(run, Mapping):
        raise BadRequestError(f"not a {SCHEMA} report: $.run must be an object")
    document = dict(parsed)
    skus = document.get("skus")
    if isinstance(skus, list):
        # Reports written before product names were added name the product from the part number.
        document["skus"] = [_with_product_name(s) for s in skus]
    try:
        return from_plain(AuditReport, document)
    except ConversionError as exc:
        raise BadRequestError(f"not a {SCHEMA} report: {exc}") from None


def _with_product_name(sku: Any) -> Any:
    if not isinstance(sku, Mapping) or sku.get("product_name") is not None:
        return sku
    part, sku_id = sku.get("sku_part_number"), sku.get("sku_id")
    if not isinstance(part, str) or not isinstance(sku_id, str):
        return sku
    return {**sku, "product_name": product_name(part, sku_id)}
