"""The group-scoped read (licensing/graph/group_scope.py) on Microsoft's published example bodies (fixtures/SOURCES.md):
the error list of a group, and the plain-text answer of a ``/$count``."""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from licensing.graph.group_scope import error_ids, parse_count

FIXTURES = Path(__file__).parent / "fixtures"


def _error_list_page() -> dict[str, object]:
    """Microsoft's example, minus its status line and its "... # other …" placeholders (it is not JSON as published):
    what is left is exactly what the example says about each entry."""
    text = (FIXTURES / "group-list-memberswithlicenseerrors.txt").read_text()
    assert text.startswith("HTTP/1.1 200 OK\n")
    body = "\n".join(line for line in text.splitlines()[1:] if not line.strip().startswith("..."))
    body = re.sub(r",(\s*[}\]])", r"\1", body)  # the comma each removed placeholder leaves behind
    page = orjson.loads(body)
    assert isinstance(page, dict)
    return page


def test_the_users_of_microsofts_error_list_example_are_read_by_id() -> None:
    page = _error_list_page()
    items = page["value"]
    assert isinstance(items, list)
    # Typed the Azure AD Graph way ("odata.type", "objectType"), never "@odata.type": still a user.
    assert items[0]["odata.type"] == "Microsoft.DirectoryServices.User" and "@odata.type" not in items[0]
    assert error_ids(items) == ["11bb11bb-cc22-dd33-ee44-55ff55ff55ff"]
    # The example pages on: its next link names the same route (read by the client's paging like any collection).
    assert "/membersWithLicenseErrors?$skipToken=" in str(page["odata.nextLink"])


def test_an_error_list_entry_that_says_it_is_something_else_is_left_out() -> None:
    items = [
        {"@odata.type": "#microsoft.graph.user", "id": "AA11AA11-0000-0000-0000-000000000001"},
        {"@odata.type": "#microsoft.graph.device", "id": "aa11aa11-0000-0000-0000-000000000002"},
        {"id": None},
    ]
    assert error_ids(items) == ["aa11aa11-0000-0000-0000-000000000001"]


def test_microsofts_count_answer_is_a_plain_number() -> None:
    assert parse_count((FIXTURES / "user-list-count.txt").read_bytes()) == 893
    assert parse_count(b"\xef\xbb\xbf294") == 294  # a byte order mark before it is tolerated


@pytest.mark.parametrize("content", [b"", b"{}", b"-1", b"12.5"])
def test_anything_else_is_not_a_count(content: bytes) -> None:
    with pytest.raises(ValueError):
        parse_count(content)
