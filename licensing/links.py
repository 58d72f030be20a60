"""Admin-center links: users and groups in the Entra admin center, licenses in the Microsoft 365 admin center.

License assignment and reprocessing left the Entra admin center in September 2024 for the Microsoft 365 admin
center, Billing > Licenses (https://learn.microsoft.com/entra/identity/users/licensing-admin-center); the
Entra group page still shows a group's members and its licensing errors.
"""

from __future__ import annotations

from urllib.parse import quote

from licensing.settings import CLOUDS

__all__ = ["group_url", "licenses_url", "user_url"]


def _portal(cloud: str) -> str:
    return CLOUDS.get(cloud, CLOUDS["global"]).portal


def _id(value: str) -> str:
    # Ids come from the tenant: never let one change the shape of the URL.
    return quote(value, safe="-")


def group_url(group_id: str, cloud: str = "global") -> str:
    """The group's Licenses page (where group-based licensing errors are shown and reprocessed)."""
    return f"{_portal(cloud)}/#view/Microsoft_AAD_IAM/GroupDetailsMenuBlade/~/Licenses/groupId/{_id(group_id)}"


def user_url(user_id: str, cloud: str = "global") -> str:
    return f"{_portal(cloud)}/#view/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/overview/userId/{_id(user_id)}"


def licenses_url(cloud: str = "global") -> str:
    """Billing > Licenses in the Microsoft 365 admin center: products, their users and their groups."""
    return f"{CLOUDS.get(cloud, CLOUDS['global']).m365_admin}/Adminportal/Home#/licenses"
