"""What telemetry may carry: text scrubbed of credentials and addresses, and Graph routes without ids.

Both are total functions (they run inside log filters and span recording): any input gives a string.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final
from urllib.parse import urlsplit

from licensing.errors import redact_text

__all__ = ["route_template", "scrub"]

_ADDRESS = re.compile(r"[\w.%+'#!$&*=?^`{|}~-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MAX_TEXT: Final = 1000


def scrub(text: str, *, mask_addresses: bool = True) -> str:
    """Text safe for telemetry: credentials redacted, e-mail-like addresses (UPNs) masked, length bounded."""
    text = redact_text(text)
    if mask_addresses:
        text = _ADDRESS.sub("<address>", text)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


_GUID_IN = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_VERSION = re.compile(r"^(v\d+(\.\d+)?|beta)$", re.IGNORECASE)
_IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_QUALIFIED = re.compile(r"^microsoft\.graph\.[A-Za-z][A-Za-z0-9.]*$")
_CALL = re.compile(r"^([A-Za-z][A-Za-z0-9.]*)\((.*)\)$")
# Collections whose next segment is a key (an id, a UPN, a mail address) rather than a navigation.
_KEYED: Final = frozenset(
    {
        "administrativeunits",
        "applications",
        "contacts",
        "devices",
        "directoryobjects",
        "directoryroles",
        "groups",
        "licensedetails",
        "mailfolders",
        "memberof",
        "members",
        "messages",
        "organization",
        "owners",
        "serviceprincipals",
        "subscribedskus",
        "subscriptions",
        "transitivememberof",
        "transitivemembers",
        "users",
    }
)


def _template_segment(segment: str, previous: str | None) -> str:
    if not segment:
        return segment
    if segment.startswith("$") and _IDENTIFIER.match(segment[1:]):  # $batch, $count, $ref, $value
        return segment
    if _QUALIFIED.match(segment):  # casts and bound actions: microsoft.graph.user
        return segment
    call = _CALL.match(segment)
    if call:  # users(userPrincipalName='…') or delta(token='…'): keep the name, drop the arguments
        name, args = call.groups()
        return f"{name}({{key}})" if args else segment
    if _GUID_IN.search(segment) or "@" in segment or "%" in segment or "'" in segment:
        return "{id}"
    if previous is not None and previous.lower() in _KEYED:
        # After a keyed collection anything but a keyword is a key (an alternate id, a nickname).
        return "{id}"
    if not _IDENTIFIER.match(segment) or sum(c.isdigit() for c in segment) >= 4:
        return "{id}"
    return segment


@lru_cache(maxsize=1024)
def route_template(path: str) -> str:
    """``/v1.0/groups/0b5c…/members/microsoft.graph.user?$select=…`` -> ``/groups/{id}/members/microsoft.graph.user``.

    Accepts a path, a path with query, or an absolute URL (a nextLink). Version prefix, query and
    fragment are dropped; GUIDs, UPNs, mail addresses, key segments and function arguments are
    replaced, so the result can be an attribute of every Graph span and metric point.
    """
    try:
        parts = urlsplit(path.strip())
        raw = parts.path
    except ValueError:
        return "{invalid}"
    segments = [s for s in raw.split("/") if s]
    if segments and _VERSION.match(segments[0]):
        segments = segments[1:]
    out: list[str] = []
    previous: str | None = None
    for segment in segments:
        templated = _template_segment(segment, previous)
        out.append(templated)
        previous = segment if templated == segment else None
    return "/" + "/".join(out)
