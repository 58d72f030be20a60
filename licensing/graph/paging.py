"""The checks on the pages of a collection: a page is a JSON object with a ``value`` list, and its next link stays on
our host, is not a page read before, and does not go on for ever (moved out of client.py unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from licensing.errors import GraphResponseError

__all__ = ["MAX_EMPTY_PAGES", "MAX_PAGES", "NextLinks", "page_items"]

MAX_EMPTY_PAGES: Final = 100  # consecutive empty pages with a next link before we call the server broken
# Pages of one collection before it is called endless: 2,000,000 users in pages of 999 are ~2,000 pages.
MAX_PAGES: Final = 20_000


def page_items(page: Any, route: str) -> list[dict[str, Any]]:
    """The items of one page (non-objects in ``value`` are dropped); a page of another shape is an error."""
    if not isinstance(page, dict):
        raise GraphResponseError(f"Graph returned a page of {route} that is not a JSON object")
    value = page.get("value", [])
    if not isinstance(value, list):
        raise GraphResponseError(f"Graph returned a page of {route} without a 'value' list")
    return [v for v in value if isinstance(v, dict)]


class NextLinks:
    """The next links of the collections of one read, each collection under its own key."""

    def __init__(self, check_host: Callable[[str], None]) -> None:
        self._check_host = check_host
        self._empties: dict[str, int] = {}
        self._seen: dict[str, set[str]] = {}

    def follow(self, page: Any, key: str, route: str) -> str | None:
        """The checked next link of a page. Empty pages with a next link are normal (they do not end the
        collection, and may repeat the same link); only a long run of them is treated as a broken server.
        A page *with items* whose next link was followed before would be read for ever, as would a collection
        past MAX_PAGES pages: both are refused."""
        link = page.get("@odata.nextLink") if isinstance(page, dict) else None
        if not link:
            return None
        if not isinstance(link, str):
            raise GraphResponseError(f"Graph returned a malformed next link for {route}")
        self._check_host(link)
        value = page.get("value")
        empties = self._empties[key] = self._empties.get(key, 0) + 1 if not value else 0
        if empties > MAX_EMPTY_PAGES:
            raise GraphResponseError(f"Graph returned {empties} empty pages in a row for {route}")
        links = self._seen.setdefault(key, set())
        if value and link in links:
            raise GraphResponseError(f"Graph returned a next link of {route} that was already read (endless paging)")
        links.add(link)
        if len(links) > MAX_PAGES:
            raise GraphResponseError(f"Graph returned more than {MAX_PAGES} pages of {route}; stopped reading")
        return link
