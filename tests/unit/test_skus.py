"""SKU product names: the shipped table, the lookup, and the refresh script's parser."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from licensing.skus import SkuName, load_table, parse_official_csv, parse_table, product_name, to_table_csv

ROOT = Path(__file__).resolve().parents[2]
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# A slice of Microsoft's file, as published: one row per service plan, BOM, "String_ Id" header variant,
# quoted names with commas, the same SKU repeated.
OFFICIAL_SAMPLE = (
    "\ufeffProduct_Display_Name,String_ Id,GUID,Service_Plan_Name,Service_Plan_Id,"
    "Service_Plans_Included_Friendly_Names\r\n"
    "Office 365 E3,ENTERPRISEPACK,6fd2c87f-b296-42f0-b197-1e91e994b900,EXCHANGE_S_ENTERPRISE,"
    "efb87545-963c-4e0d-99df-69c6916d9eb0,Exchange Online (Plan 2)\r\n"
    "Office 365 E3,ENTERPRISEPACK,6fd2c87f-b296-42f0-b197-1e91e994b900,TEAMS1,57ff2da0-773e-42df-b2af-ffb7a2317929,"
    "Microsoft Teams\r\n"
    '"Microsoft 365 E5 (no Teams), EEA",Microsoft_365_E5_(no_Teams),18A4BD3F-0B5B-4887-B04F-61DD0EE15F5E,X,'
    "00000000-0000-0000-0000-000000000000,X\r\n"
    "Microsoft Entra ID P1,AAD_PREMIUM,078d2b04-f1bd-4111-bbd4-b4b1b354cef4,AAD_PREMIUM,"
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d,Microsoft Entra ID P1\r\n"
    ",EMPTY_NAME,11111111-1111-1111-1111-111111111111,X,X,X\r\n"
    "short,row\r\n"
)


def test_parse_official_csv_one_row_per_sku_sorted() -> None:
    rows = parse_official_csv(OFFICIAL_SAMPLE)
    assert rows == [
        SkuName("AAD_PREMIUM", "078d2b04-f1bd-4111-bbd4-b4b1b354cef4", "Microsoft Entra ID P1"),
        SkuName("ENTERPRISEPACK", "6fd2c87f-b296-42f0-b197-1e91e994b900", "Office 365 E3"),
        SkuName(
            "Microsoft_365_E5_(no_Teams)", "18a4bd3f-0b5b-4887-b04f-61dd0ee15f5e", "Microsoft 365 E5 (no Teams), EEA"
        ),
    ]
    assert parse_table(to_table_csv(rows)) == rows, "what the script writes is what the app reads"


def test_parse_official_csv_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_official_csv("")
    with pytest.raises(ValueError, match="column"):
        parse_official_csv("Name,Id\nx,y\n")


def test_refresh_script_writes_the_data_file_from_a_local_copy(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("refresh_sku_names", ROOT / "scripts" / "refresh_sku_names.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.OFFICIAL_URL.startswith("https://download.microsoft.com/")
    lines = [OFFICIAL_SAMPLE.splitlines()[0]]
    lines += [f"Product {i},PART_{i:03d},{i:08x}-0000-4000-8000-000000000000,P,X,X" for i in range(60)]
    source = tmp_path / "official.csv"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8-sig")
    out = tmp_path / "sku_names.csv"
    assert script.main(["--source", str(source), "--output", str(out)]) == 0
    rows = parse_table(out.read_text(encoding="utf-8"))
    assert len(rows) == 60 and rows[0] == SkuName("PART_000", "00000000-0000-4000-8000-000000000000", "Product 0")
    tiny = tmp_path / "tiny.csv"
    tiny.write_text(OFFICIAL_SAMPLE, encoding="utf-8")
    with pytest.raises(SystemExit, match="refusing"):
        script.refresh(str(tiny), out)


def test_shipped_table_is_well_formed_and_covers_the_common_skus() -> None:
    rows = load_table()
    assert len(rows) >= 60
    assert len({r.string_id.casefold() for r in rows}) == len(rows), "one row per SKU"
    guids = [r.guid for r in rows if r.guid]
    assert len(set(guids)) == len(guids) and all(GUID.match(g) for g in guids)
    text = (ROOT / "licensing" / "data" / "sku_names.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "String_Id,GUID,Product_Display_Name"
    for part in (
        "ENTERPRISEPACK",
        "ENTERPRISEPREMIUM",
        "STANDARDPACK",
        "SPE_E3",
        "SPE_E5",
        "EMS",
        "EMSPREMIUM",
        "AAD_PREMIUM",
        "AAD_PREMIUM_P2",
        "POWER_BI_PRO",
        "SPB",
        "O365_BUSINESS_ESSENTIALS",
        "SPE_F1",
        "Microsoft_365_Copilot",
        "WIN10_VDA_E5",
        "VISIOCLIENT",
        "PROJECTPREMIUM",
        "FLOW_FREE",
        "INTUNE_A",
    ):
        assert product_name(part) != part, part


@pytest.mark.parametrize(
    ("part", "sku_id", "name"),
    [
        ("SPE_E5", None, "Microsoft 365 E5"),
        ("spe_e5", None, "Microsoft 365 E5"),
        ("ENTERPRISEPACK", "6fd2c87f-b296-42f0-b197-1e91e994b900", "Office 365 E3"),
        (None, "6FD2C87F-B296-42F0-B197-1E91E994B900", "Office 365 E3"),
        ("SOMETHING_NEW", "00000000-0000-0000-0000-000000000000", "SOMETHING_NEW"),
        (None, "00000000-0000-0000-0000-000000000001", "00000000-0000-0000-0000-000000000001"),
        ("EMS", None, "Enterprise Mobility + Security E3"),
        ("AAD_PREMIUM_P2", None, "Microsoft Entra ID P2"),
    ],
)
def test_product_name_falls_back_to_the_part_number(part: str | None, sku_id: str | None, name: str) -> None:
    assert product_name(part, sku_id) == name


def test_parse_table_rejects_a_wrong_header() -> None:
    with pytest.raises(ValueError, match="header"):
        parse_table("Id,Name\nx,y\n")


def test_every_sku_the_sandbox_serves_has_a_product_name() -> None:
    from licensing.sandbox.catalog import catalog_for

    names = {r.string_id: r for r in load_table()}
    for sku in {*catalog_for(True), *catalog_for(False)}:  # with and without Entra ID P1/P2
        row = names.get(sku.part_number)
        assert row is not None and row.guid == sku.sku_id, sku.part_number
        assert product_name(sku.part_number, sku.sku_id) == row.name != sku.part_number


def test_the_sandbox_skus_of_a_tenant_without_entra_premium_license_no_group_based_licensing_beyond_office() -> None:
    """The substitutes for the SKUs that carry P1/P2 carry neither P1/P2 nor Office 365 E3 and above: by their plans
    and by Microsoft's table alike (the sandbox truth counts only Office 365 E3/E5 in such a tenant)."""
    from licensing.sandbox.catalog import STANDARD_SUBSTITUTES, catalog_for
    from licensing.skus import qualifies_for_group_licensing

    qualifying = {
        s.part_number
        for s in catalog_for(False)
        if qualifies_for_group_licensing(s.sku_id, [p.id for p in s.plans], s.part_number)
        or qualifies_for_group_licensing(s.sku_id, None, s.part_number)
    }
    assert qualifying == {"ENTERPRISEPACK", "ENTERPRISEPREMIUM"}
    assert {s.part_number for s in catalog_for(False)} >= {part for _id, part, _plans in STANDARD_SUBSTITUTES.values()}


def test_the_whole_table_ships_and_the_group_licensing_skus_follow_microsofts_list() -> None:
    from licensing.skus import qualifies_for_group_licensing

    rows = load_table()
    assert len(rows) > 500, "Microsoft's table names several hundred SKUs"
    by_part = {r.string_id: r.guid for r in rows}
    # Entra ID P1/P2 themselves, the suites that carry them, and Office 365 E3 and above count; others do not.
    for part in (
        "AAD_PREMIUM",
        "AAD_PREMIUM_P2",
        "EMS",
        "SPE_E3",
        "SPE_E5",
        "SPB",
        "ENTERPRISEPACK",
        "ENTERPRISEPREMIUM",
    ):
        assert qualifies_for_group_licensing(by_part[part], None, part), part
    for part in ("POWER_BI_PRO", "FLOW_FREE", "O365_BUSINESS_ESSENTIALS", "STANDARDPACK", "VISIOCLIENT"):
        assert not qualifies_for_group_licensing(by_part[part], None, part), part


# Microsoft's names for "Office 365 Enterprise E3 or Office 365 A3 or Office 365 GCC G3 or Office 365 E3 for GCCH or
# Office 365 E3 for DOD and above" (concept-group-based-licensing): E3/E4/E5, A3/A5, G3/G5 and their variants.
OFFICE_E3_AND_ABOVE_NAME = re.compile(r"^Office 365 (?:GCC )?[EAG][345](?![0-9A-Za-z])(?! Developer)")
OFFICE_BELOW_E3_NAME = re.compile(r"^Office 365 (?:GCC )?(?:[EAFG][12]|E3 Developer|F3)(?![0-9A-Za-z])")


def test_every_office_365_e3_and_above_suite_of_the_whole_shipped_table_licenses_group_based_licensing() -> None:
    """Over the whole shipped product table: every Office 365 E3-and-above suite (E4 and the GCC G5 variants
    included) is in the derived qualifying table, nothing below E3 is, and every qualifying row is a SKU of the
    table with the same GUID and a reason derived from service plans."""
    import csv
    import io

    from licensing.skus import OFFICE_WHY, qualifies_for_group_licensing

    rows = load_table()
    suites = [r for r in rows if OFFICE_E3_AND_ABOVE_NAME.match(r.name)]
    assert {"ENTERPRISEWITHSCAL", "ENTERPRISEPREMIUM_NOPBIPBX_GOV", "ENTERPRISEPREMIUM_NOPSTNCONF_NOPBI_GOV"} <= {
        r.string_id for r in suites
    }
    missing = [r.string_id for r in suites if not qualifies_for_group_licensing(r.guid, None, r.string_id)]
    assert missing == [], "Office 365 E3-and-above suites that would raise a false p1_coverage_short"
    below = [r for r in rows if OFFICE_BELOW_E3_NAME.match(r.name)]
    assert below and not [r.string_id for r in below if qualifies_for_group_licensing(r.guid, None, r.string_id)]
    text = (ROOT / "licensing" / "data" / "group_licensing_skus.csv").read_text(encoding="utf-8")
    guids = {r.string_id: r.guid for r in rows}
    for q in csv.DictReader(io.StringIO(text)):
        assert guids.get(q["String_Id"]) == q["GUID"], q
        assert q["Why"] in ("AAD_PREMIUM", "AAD_PREMIUM_P2", OFFICE_WHY), q


# Rows in the format of Microsoft's CSV with the service plans the table lists for these SKUs (Exchange Online Plan 2
# efb87545/8c3069c0, SharePoint Online Plan 2 5dbe027f/153f85dd, Entra ID P1 41781fb2; E1: Plan 1 of both; the E3
# developer edition: Exchange Plan 2 and SharePoint for developers; standalone Exchange Online Plan 2).
PLANS_SAMPLE = (
    "Product_Display_Name,String_Id,GUID,Service_Plan_Name,Service_Plan_Id,Service_Plans_Included_Friendly_Names\n"
    "Office 365 E4,ENTERPRISEWITHSCAL,1392051d-0cb9-4b7a-88d5-621fee5e8711,EXCHANGE_S_ENTERPRISE,"
    "efb87545-963c-4e0d-99df-69c6916d9eb0,EXCHANGE ONLINE (PLAN 2)\n"
    "Office 365 E4,ENTERPRISEWITHSCAL,1392051d-0cb9-4b7a-88d5-621fee5e8711,SHAREPOINTENTERPRISE,"
    "5dbe027f-2339-4123-9542-606e4d348a72,SHAREPOINT ONLINE (PLAN 2)\n"
    "Office 365 GCC G5 without Audio Conferencing,ENTERPRISEPREMIUM_NOPSTNCONF_NOPBI_GOV,"
    "1341559b-49df-443c-8e79-fa604fed2d82,EXCHANGE_S_ENTERPRISE_GOV,8c3069c0-ccdb-44be-ab77-986203a67df2,"
    "Exchange Online (Plan 2) for Government\n"
    "Office 365 GCC G5 without Audio Conferencing,ENTERPRISEPREMIUM_NOPSTNCONF_NOPBI_GOV,"
    "1341559b-49df-443c-8e79-fa604fed2d82,SHAREPOINTENTERPRISE_GOV,153f85dd-d912-4762-af6c-d6e0fb4f6692,"
    "SharePoint Plan 2G\n"
    "Office 365 E1,STANDARDPACK,18181a46-0d4e-45cd-891e-60aabd171b4e,EXCHANGE_S_STANDARD,"
    "9aaf7827-d63c-4b61-89c3-182f06f82e5c,EXCHANGE ONLINE (PLAN 1)\n"
    "Office 365 E1,STANDARDPACK,18181a46-0d4e-45cd-891e-60aabd171b4e,SHAREPOINTSTANDARD,"
    "c7699d2e-19aa-44de-8edf-1736da088ca1,SHAREPOINT ONLINE (PLAN 1)\n"
    "Office 365 E3 Developer,DEVELOPERPACK,189a915c-fe4f-4ffa-bde4-85b9628d07a0,EXCHANGE_S_ENTERPRISE,"
    "efb87545-963c-4e0d-99df-69c6916d9eb0,EXCHANGE ONLINE (PLAN 2)\n"
    "Exchange Online (Plan 2),EXCHANGEENTERPRISE,19ec0d23-8335-4cbd-94ac-6050e30712fa,EXCHANGE_S_ENTERPRISE,"
    "efb87545-963c-4e0d-99df-69c6916d9eb0,EXCHANGE ONLINE (PLAN 2)\n"
    "Microsoft Entra ID P1,AAD_PREMIUM,078d2b04-f1bd-4111-bbd4-b4b1b354cef4,AAD_PREMIUM,"
    "41781fb2-bc02-4b7c-bd55-b576c07bb09d,Microsoft Entra ID P1\n"
)


def test_the_refresh_derives_the_qualifying_skus_from_their_service_plans() -> None:
    from licensing.skus import OFFICE_WHY, parse_official_qualifying, qualifies_by_plans

    rows = parse_official_qualifying(PLANS_SAMPLE)
    assert [(r.string_id, r.name) for r in rows] == [
        ("AAD_PREMIUM", "AAD_PREMIUM"),
        ("ENTERPRISEPREMIUM_NOPSTNCONF_NOPBI_GOV", OFFICE_WHY),
        ("ENTERPRISEWITHSCAL", OFFICE_WHY),
    ]
    assert qualifies_by_plans(["EFB87545-963C-4E0D-99DF-69C6916D9EB0"]) is None, "Exchange Plan 2 alone is not E3"


def test_the_plans_graph_serves_decide_before_the_table() -> None:
    """A subscribedSku's servicePlans (as Graph serves them) decide: E4's plans qualify even for an id the shipped
    table does not know; Office 365 E1's plans do not, whatever its part number."""
    from licensing.skus import qualifies_for_group_licensing

    e4 = ["efb87545-963c-4e0d-99df-69c6916d9eb0", "5dbe027f-2339-4123-9542-606e4d348a72"]
    assert qualifies_for_group_licensing("00000000-0000-4000-8000-00000000e400", e4, "SOMETHING_NEW")
    e1 = ["9aaf7827-d63c-4b61-89c3-182f06f82e5c", "c7699d2e-19aa-44de-8edf-1736da088ca1"]
    assert not qualifies_for_group_licensing("18181a46-0d4e-45cd-891e-60aabd171b4e", e1, "STANDARDPACK")
