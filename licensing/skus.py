"""SKU product names: Microsoft's published table of product names and string ids, shipped as data.

The table is ``licensing/data/sku_names.csv`` (``String_Id,GUID,Product_Display_Name``, one row
per SKU), refreshed from the official download by ``scripts/refresh_sku_names.py``. It is read
lazily, once per process, and never needed for correctness: an unknown SKU shows its part number.

Beside it, ``licensing/data/group_licensing_skus.csv`` (``String_Id,GUID,Why``) lists the SKUs of the same
table that license a user for group-based licensing, derived from the service plans each SKU carries
(:func:`qualifies_by_plans`): Microsoft Entra ID P1 or P2, or the Office 365 E3-and-above service plans. The
``p1_coverage_short`` rule and ``plan`` count their seats, told by the plans Graph serves for the tenant's SKUs
when it serves them, else by that table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Final

__all__ = [
    "DATA_COLUMNS",
    "ENTRA_PREMIUM_PLANS",
    "EXCHANGE_PLAN_2",
    "OFFICE_WHY",
    "QUALIFYING_COLUMNS",
    "SHAREPOINT_PLAN_2",
    "SkuName",
    "load_table",
    "parse_official_csv",
    "parse_official_qualifying",
    "parse_table",
    "product_name",
    "qualifies_by_plans",
    "qualifies_for_group_licensing",
    "to_qualifying_csv",
    "to_table_csv",
]

DATA_COLUMNS: Final = ("String_Id", "GUID", "Product_Display_Name")
QUALIFYING_COLUMNS: Final = ("String_Id", "GUID", "Why")
# "You must have one of the following licenses for every user who benefits from group-based licensing: Paid or
# trial subscription for Microsoft Entra ID P1 and above; Paid or trial edition of Microsoft 365 Business Premium
# or Office 365 Enterprise E3 or Office 365 A3 or Office 365 GCC G3 or Office 365 E3 for GCCH or Office 365 E3 for
# DOD and above" (https://learn.microsoft.com/entra/fundamentals/concept-group-based-licensing).
# Entra ID P1 and P2 are these service plans of Microsoft's table ("AAD_PREMIUM", "AAD_PREMIUM_P2"); Business
# Premium carries AAD_PREMIUM. The Office 365 suites carry neither.
ENTRA_PREMIUM_PLANS: Final = frozenset({"41781fb2-bc02-4b7c-bd55-b576c07bb09d", "eec0eb4f-6444-4f95-aba0-50c24d67f998"})
# What Office 365 E3, A3, G3 and E3 for GCCH/DOD carry and the suites below them do not: Exchange Online (Plan 2)
# ("EXCHANGE_S_ENTERPRISE", "EXCHANGE_S_ENTERPRISE_GOV") together with SharePoint Online (Plan 2)
# ("SHAREPOINTENTERPRISE", "_EDU", "_GOV"), the plans of Microsoft's product table
# (https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference). Every suite "above" E3
# (E4, E5, A5, G5 and their variants without Teams, audio conferencing, Power BI or Phone System) carries both; E1,
# F3, A1, Business and developer editions, and the standalone Exchange or SharePoint plans do not carry both.
EXCHANGE_PLAN_2: Final = frozenset({"efb87545-963c-4e0d-99df-69c6916d9eb0", "8c3069c0-ccdb-44be-ab77-986203a67df2"})
SHAREPOINT_PLAN_2: Final = frozenset(
    {
        "5dbe027f-2339-4123-9542-606e4d348a72",  # SHAREPOINTENTERPRISE
        "63038b2c-28d0-45f6-bc36-33062963b498",  # SHAREPOINTENTERPRISE_EDU
        "153f85dd-d912-4762-af6c-d6e0fb4f6692",  # SHAREPOINTENTERPRISE_GOV
    }
)
OFFICE_WHY: Final = "Office 365 E3 and above"


def qualifies_by_plans(service_plan_ids: Iterable[str]) -> str | None:
    """Why a SKU with these service plans licenses group-based licensing ("AAD_PREMIUM_P2", "AAD_PREMIUM" or
    :data:`OFFICE_WHY`), or None when it does not."""
    plans = {p.strip().lower() for p in service_plan_ids}
    if "eec0eb4f-6444-4f95-aba0-50c24d67f998" in plans:
        return "AAD_PREMIUM_P2"
    if "41781fb2-bc02-4b7c-bd55-b576c07bb09d" in plans:
        return "AAD_PREMIUM"
    if plans & EXCHANGE_PLAN_2 and plans & SHAREPOINT_PLAN_2:
        return OFFICE_WHY
    return None


@dataclass(frozen=True, slots=True)
class SkuName:
    string_id: str  # skuPartNumber
    guid: str  # skuId, lowercase; "" when not known
    name: str


@dataclass(frozen=True, slots=True)
class _Table:
    by_part: Mapping[str, str]  # part number (casefolded) -> name
    by_guid: Mapping[str, str]  # skuId (lowercase) -> name


def _header_key(name: str) -> str:
    # The official file has had "String_ Id" (with a space) in some editions: match loosely.
    return "".join(name.split()).lower().lstrip("\ufeff")


def parse_official_csv(text: str) -> list[SkuName]:
    """Parse Microsoft's CSV (one row per service plan) into one row per SKU, sorted by string id.

    Columns used: ``Product_Display_Name``, ``String_Id`` (or ``String_ Id``), ``GUID``. The first
    display name seen for a SKU wins; rows without a string id or name are skipped.
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise ValueError("the product names CSV is empty")
    index = {_header_key(h): i for i, h in enumerate(header)}
    try:
        i_name, i_id, i_guid = index["product_display_name"], index["string_id"], index["guid"]
    except KeyError as exc:
        raise ValueError(f"the product names CSV has no {exc.args[0]!r} column (header: {header!r})") from None
    seen: dict[str, SkuName] = {}
    for row in reader:
        if len(row) <= max(i_name, i_id, i_guid):
            continue
        string_id, guid, name = row[i_id].strip(), row[i_guid].strip().lower(), row[i_name].strip()
        if not string_id or not name:
            continue
        key = string_id.casefold()
        if key not in seen:
            seen[key] = SkuName(string_id, guid, name)
    return sorted(seen.values(), key=lambda s: (s.string_id.casefold(), s.guid))


def parse_official_qualifying(text: str) -> list[SkuName]:
    """The SKUs of Microsoft's CSV that license group-based licensing, judged by the service plans each carries
    (:func:`qualifies_by_plans`); ``name`` says why (the P1/P2 plan, or "Office 365 E3 and above")."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        raise ValueError("the product names CSV is empty")
    index = {_header_key(h): i for i, h in enumerate(header)}
    try:
        i_id, i_guid, i_plan_id = index["string_id"], index["guid"], index["service_plan_id"]
    except KeyError as exc:
        raise ValueError(f"the product names CSV has no {exc.args[0]!r} column (header: {header!r})") from None
    plans: dict[str, set[str]] = {}
    names: dict[str, str] = {}
    for row in reader:
        if len(row) <= max(i_id, i_guid, i_plan_id):
            continue
        string_id, guid = row[i_id].strip(), row[i_guid].strip().lower()
        if string_id and guid:
            names.setdefault(guid, string_id)
            plans.setdefault(guid, set()).add(row[i_plan_id])
    out = [SkuName(names[g], g, why) for g, p in plans.items() if (why := qualifies_by_plans(p))]
    return sorted(out, key=lambda s: (s.string_id.casefold(), s.guid))


def to_qualifying_csv(rows: Iterable[SkuName]) -> str:
    """The text of ``group_licensing_skus.csv``: header ``String_Id,GUID,Why``."""
    return _csv_text(QUALIFYING_COLUMNS, rows)


def _csv_text(header: tuple[str, ...], rows: Iterable[SkuName]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow((row.string_id, row.guid, row.name))
    return out.getvalue()


@lru_cache(maxsize=1)
def _qualifying() -> frozenset[str]:
    text = resources.files("licensing").joinpath("data/group_licensing_skus.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None or tuple(reader.fieldnames) != QUALIFYING_COLUMNS:
        raise ValueError(f"group_licensing_skus.csv must have the header {','.join(QUALIFYING_COLUMNS)}")
    keys: set[str] = set()
    for r in reader:
        keys.add((r["GUID"] or "").strip().lower())
        keys.add((r["String_Id"] or "").strip().casefold())
    keys.discard("")
    return frozenset(keys)


def qualifies_for_group_licensing(
    sku_id: str, service_plan_ids: Iterable[str] | None = None, part_number: str | None = None
) -> bool:
    """Whether a seat of this SKU licenses a user for group-based licensing: told by the service plans Graph
    returned for it when it did (:func:`qualifies_by_plans`), else by Microsoft's table shipped as data (by skuId,
    then by skuPartNumber)."""
    if service_plan_ids is not None:
        plans = list(service_plan_ids)
        if plans:
            return qualifies_by_plans(plans) is not None
    table = _qualifying()
    return sku_id.lower() in table or bool(part_number and part_number.casefold() in table)


def to_table_csv(rows: Iterable[SkuName]) -> str:
    """The data file's text: header ``String_Id,GUID,Product_Display_Name`` and one row per SKU."""
    return _csv_text(DATA_COLUMNS, rows)


def parse_table(text: str) -> list[SkuName]:
    """Parse the shipped data file (the format :func:`to_table_csv` writes)."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    if reader.fieldnames is None or tuple(reader.fieldnames) != DATA_COLUMNS:
        raise ValueError(f"sku_names.csv must have the header {','.join(DATA_COLUMNS)}")
    return [
        SkuName(r["String_Id"].strip(), (r["GUID"] or "").strip().lower(), r["Product_Display_Name"].strip())
        for r in reader
        if r.get("String_Id") and r.get("Product_Display_Name")
    ]


@lru_cache(maxsize=1)
def _table() -> _Table:
    text = resources.files("licensing").joinpath("data/sku_names.csv").read_text(encoding="utf-8")
    rows = parse_table(text)
    return _Table(
        by_part={r.string_id.casefold(): r.name for r in rows},
        by_guid={r.guid: r.name for r in rows if r.guid},
    )


def load_table() -> list[SkuName]:
    """Every row of the shipped table (for tests and tooling)."""
    text = resources.files("licensing").joinpath("data/sku_names.csv").read_text(encoding="utf-8")
    return parse_table(text)


def product_name(part_number: str | None, sku_id: str | None = None) -> str:
    """The product name an admin knows ("Microsoft 365 E5"); falls back to the part number, then the id."""
    table = _table()
    if part_number:
        name = table.by_part.get(part_number.casefold())
        if name:
            return name
    if sku_id:
        name = table.by_guid.get(sku_id.lower())
        if name:
            return name
    return part_number or sku_id or "unknown SKU"
