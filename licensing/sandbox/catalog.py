"""Static data of the simulated tenant: real SKU ids and part numbers, service plans, name pools.

SKU ids and part numbers come from Microsoft's "Product names and service plan identifiers for
licensing" table (https://learn.microsoft.com/entra/identity/users/licensing-service-plan-reference),
so a reader's product-name lookup works on sandbox data exactly as on a real tenant.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

__all__ = [
    "ENTRA_PREMIUM_PLAN_NAMES",
    "ERROR_KINDS",
    "FIRST_NAMES",
    "LAST_NAMES",
    "ODD_GROUP_NAMES",
    "ODD_USER_NAMES",
    "SKU_CATALOG",
    "STANDARD_GROUP_NAMES",
    "STANDARD_SUBSTITUTES",
    "USAGE_LOCATIONS",
    "CatalogSku",
    "ServicePlan",
    "catalog_for",
    "is_entra_premium",
]


@dataclass(frozen=True, slots=True)
class ServicePlan:
    id: str
    name: str


@dataclass(frozen=True, slots=True)
class CatalogSku:
    """One product the tenant owns, and the seat situation (``plan``) the generator gives it."""

    sku_id: str
    part_number: str
    plans: tuple[ServicePlan, ...]
    # shortage | low | warning | suspended | plenty | free | over | locked | company
    plan: str
    applies_to: str = "User"


_EXO2 = ServicePlan("efb87545-963c-4e0d-99df-69c6916d9eb0", "EXCHANGE_S_ENTERPRISE")
_SPO2 = ServicePlan("5dbe027f-2339-4123-9542-606e4d348a72", "SHAREPOINTENTERPRISE")
_OFFICE = ServicePlan("43de0ff5-c92c-492b-9116-175376d08c38", "OFFICESUBSCRIPTION")
_TEAMS = ServicePlan("57ff2da0-773e-42df-b2af-ffb7a2317929", "TEAMS1")
_YAMMER = ServicePlan("7547a3fe-08ee-4ccb-b430-5077c5041653", "YAMMER_ENTERPRISE")
_AADP1 = ServicePlan("41781fb2-bc02-4b7c-bd55-b576c07bb09d", "AAD_PREMIUM")
_AADP2 = ServicePlan("eec0eb4f-6444-4f95-aba0-50c24d67f998", "AAD_PREMIUM_P2")
_INTUNE = ServicePlan("c1ec4a95-1f05-45b3-a911-aa3fa01094f5", "INTUNE_A")
_RMS = ServicePlan("bea4c11e-220a-4e6d-8eb8-8ea15d019f90", "RMS_S_ENTERPRISE")
_BI = ServicePlan("70d33638-9c74-4d01-bfd3-562de28bd4ba", "BI_AZURE_P2")
_FLOW = ServicePlan("50e68c76-46c6-4674-81f9-75456511b170", "FLOW_P2_VIRAL")
_VISIO = ServicePlan("663a804f-1c30-4ff0-9915-9db84f0d1cea", "VISIO_CLIENT_SUBSCRIPTION")
_SPO_STORAGE = ServicePlan("be5a7ed5-c598-4fcd-a061-5e6724c68a58", "SHAREPOINTSTORAGE")
_EXO1 = ServicePlan("9aaf7827-d63c-4b61-89c3-182f06f82e5c", "EXCHANGE_S_STANDARD")
_SPO1 = ServicePlan("c7699d2e-19aa-44de-8edf-1736da088ca1", "SHAREPOINTSTANDARD")
# The service plans of Microsoft Entra ID P1 and P2: a tenant holding a SKU that carries one is a premium tenant.
ENTRA_PREMIUM_PLAN_NAMES: Final = frozenset({_AADP1.name, _AADP2.name})

# Order matters: the generator refers to SKUs by these part numbers, the server lists them in this order.
SKU_CATALOG: Final[tuple[CatalogSku, ...]] = (
    CatalogSku(
        "6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK", (_EXO2, _SPO2, _OFFICE, _TEAMS, _YAMMER), "shortage"
    ),
    CatalogSku(
        "06ebc4ee-1bb5-47dd-8120-11324bc54e06", "SPE_E5", (_EXO2, _SPO2, _OFFICE, _TEAMS, _AADP2, _INTUNE), "low"
    ),
    CatalogSku(
        "05e9a617-0261-4cee-bb44-138d3ef5d965", "SPE_E3", (_EXO2, _SPO2, _OFFICE, _TEAMS, _YAMMER, _AADP1), "plenty"
    ),
    CatalogSku("efccb6f7-5641-4e0e-bd10-b4976e1bf68e", "EMS", (_AADP1, _INTUNE, _RMS), "warning"),
    CatalogSku("b05e124f-c7cc-45a0-a6aa-8cf78c946968", "EMSPREMIUM", (_AADP1, _AADP2, _INTUNE, _RMS), "suspended"),
    CatalogSku("c7df2760-2c81-4ef7-b578-5b5392b571df", "ENTERPRISEPREMIUM", (_EXO2, _SPO2, _OFFICE, _TEAMS), "plenty"),
    CatalogSku("f8a1db68-be16-40ed-86d5-cb42ce701560", "POWER_BI_PRO", (_BI,), "over"),
    CatalogSku("f30db892-07e9-47e9-837c-80727f46fd3d", "FLOW_FREE", (_FLOW,), "free"),
    CatalogSku("c5928f49-12ba-48f7-ada3-0d743a3601d5", "VISIOCLIENT", (_VISIO,), "locked"),
    CatalogSku("99049c9c-6011-4908-bf17-15f496e6519d", "SHAREPOINTSTORAGE", (_SPO_STORAGE,), "company", "Company"),
)


def is_entra_premium(sku: CatalogSku) -> bool:
    """Whether the SKU carries an Entra ID P1 or P2 service plan (AAD_PREMIUM, AAD_PREMIUM_P2)."""
    return any(p.name in ENTRA_PREMIUM_PLAN_NAMES for p in sku.plans)


# A tenant without Entra ID P1/P2 cannot hold a SKU that carries it: there, each catalogue SKU that does is replaced,
# at the same index and with the same seat situation, by a real product of the same table without P1/P2 (and without
# Exchange Online Plan 2 + SharePoint Online Plan 2, so none of them licenses group-based licensing either). Office
# 365 E1 keeps YAMMER_ENTERPRISE, the plan a group leaves off on the Microsoft 365 E3 slot. Service plans are listed
# in part, as for the SKUs above.
STANDARD_SUBSTITUTES: Final[dict[str, tuple[str, str, tuple[ServicePlan, ...]]]] = {
    # Microsoft 365 E5 -> Microsoft 365 Apps for enterprise
    "SPE_E5": ("c2273bd0-dff7-4215-9ef5-2c7bcfb06425", "OFFICESUBSCRIPTION", (_OFFICE,)),
    # Microsoft 365 E3 -> Office 365 E1
    "SPE_E3": ("18181a46-0d4e-45cd-891e-60aabd171b4e", "STANDARDPACK", (_EXO1, _SPO1, _TEAMS, _YAMMER)),
    # Enterprise Mobility + Security E3 -> Intune (Plan 1)
    "EMS": ("061f9ace-7d42-4136-88ac-31dc755f143f", "INTUNE_A", (_INTUNE,)),
    # Enterprise Mobility + Security E5 -> Azure Information Protection Plan 1
    "EMSPREMIUM": ("c52ea49f-fe5d-4e95-93ba-1de91d380f89", "RIGHTSMANAGEMENT", (_RMS,)),
}


def catalog_for(entra_premium: bool) -> tuple[CatalogSku, ...]:
    """The tenant's SKUs: :data:`SKU_CATALOG` itself, or without Entra ID P1/P2 the same with
    :data:`STANDARD_SUBSTITUTES` in place of the SKUs that carry it (same indices, same seat situations)."""
    if entra_premium:
        return SKU_CATALOG
    out = []
    for sku in SKU_CATALOG:
        sub = STANDARD_SUBSTITUTES.get(sku.part_number)
        out.append(sku if sub is None else replace(sku, sku_id=sub[0], part_number=sub[1], plans=sub[2]))
    return tuple(out)


# The licensed groups named after a product (generate.py) in a tenant without P1/P2: named after its substitute.
STANDARD_GROUP_NAMES: Final = {
    "SG-Lic-Office365-E3": ("SG-Lic-Office365-E3", "Office 365 E3 + Intune for all staff"),
    "SG-Lic-Microsoft365-E5": ("SG-Lic-Microsoft365-Apps", "Microsoft 365 Apps for enterprise for executives"),
    "SG-Lic-Microsoft365-E3": ("SG-Lic-Office365-E1", "Office 365 E1 (Yammer disabled)"),
    "SG-Lic-EMS-E5": ("SG-Lic-AIP-P1", "Azure Information Protection Plan 1 for admins"),
    "SG-Lic-All-Staff-M365-E3": ("SG-Lic-All-Staff-O365-E1", "Office 365 E1 for every employee"),
}

ERROR_KINDS: Final = (
    "MutuallyExclusiveViolation",
    "DependencyViolation",
    "ProhibitedInUsageLocationViolation",
    "UniquenessViolation",
    "Other",
)

USAGE_LOCATIONS: Final = ("US", "GB", "DE", "FR", "NL", "JP", "IN", "BR", "KP")  # KP: prohibited-location case

FIRST_NAMES: Final = (
    "Adele", "Alex", "Allan", "Bianca", "Carlos", "Chen", "Diego", "Emily", "Fatima", "Grady", "Hana", "Isaiah",
    "Johanna", "Joni", "Lee", "Lidia", "Lynne", "Megan", "Miriam", "Nestor", "Olga", "Patti", "Pradeep", "Raul",
    "Sakura", "Sven", "Tariq", "Ursula", "Wei", "Yuki", "Zoe", "Amara",
)  # fmt: skip
LAST_NAMES: Final = (
    "Vance", "Wilber", "Deyoung", "Pinto", "Gonzalez", "Li", "Ramos", "Braun", "Haddad", "Archie", "Sato", "Okafor",
    "Lindqvist", "Sherman", "Gu", "Holloway", "Robbins", "Bowen", "Rosen", "Wilke", "Ivanova", "Fernandez", "Gupta",
    "Nakamura", "Eriksson", "Khan", "Meyer", "Zhang", "Tanaka", "Moreau", "Nwosu", "Silva",
)  # fmt: skip

# Names that break naive renderers: markup, Markdown, CSV formulas, key-forbidden characters,
# control characters, bidirectional text, emoji, and Graph's 256-character maximum.
ODD_USER_NAMES: Final = (
    "<b>x</b>",
    "Bob | partner *bold*",
    "=1+1",
    "Zoë Ångström-Łukasz 🦄",
    "\u202eevil\u202c name",
    "مريم الحداد",
    "#hash /slash \\back ?query",
    "ctrl\x01\x07\x1b\x1f\x7f chars",
    "@SUM(A1) +cmd -2+3",
    "山田 太郎",
    "[link](https://example.invalid) <script>alert(1)</script>",
    ("Very long name " * 20)[:256],
)
ODD_GROUP_NAMES: Final = (
    "<b>Licensed</b> & <i>markup</i>",
    '=HYPERLINK("https://example.invalid","click")',
    "Sales | EMEA *bold* _it_",
    "קבוצת רישוי RTL",
    "R&D #1 /eng \\ops ?",
    "tab\tnew\nline\x0bvt",
    ("Long group name " * 20)[:256],
    "Équipe 🚀 ünïcödé",
)
