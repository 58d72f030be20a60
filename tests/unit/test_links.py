"""licensing/links.py: admin-center links per cloud; a tenant id can never change the shape of a URL."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from licensing.links import group_url, licenses_url, user_url
from licensing.settings import CLOUDS


@pytest.mark.parametrize("cloud", list(CLOUDS))
def test_links_point_at_the_clouds_portals(cloud: str) -> None:
    assert group_url("0f8fad5b-d9cb-469f-a165-70867728950e", cloud).startswith(CLOUDS[cloud].portal + "/#view/")
    assert user_url("u1", cloud).startswith(CLOUDS[cloud].portal + "/#view/")
    assert licenses_url(cloud) == f"{CLOUDS[cloud].m365_admin}/Adminportal/Home#/licenses"


def test_an_unknown_cloud_falls_back_to_global() -> None:
    assert licenses_url("mars") == licenses_url("global")


@pytest.mark.parametrize("hostile", ["../../x", "a/b?c#d", "https://evil.example", "x y", "\u202eabc"])
def test_ids_are_percent_encoded_so_the_url_keeps_its_shape(hostile: str) -> None:
    url = group_url(hostile)
    parts = urlsplit(url)
    assert parts.netloc == urlsplit(CLOUDS["global"].portal).netloc
    tail = url.rsplit("/groupId/", 1)[1]
    assert "/" not in tail and "?" not in tail and "#" not in tail and " " not in tail
