"""Who is writing, from the token (``upn``/``oid`` claims, never a typed name), and whether they may write.

Writes need ``LicenseAssignment.ReadWrite.All``; a delegated caller also needs one of the roles the page lists
(https://learn.microsoft.com/graph/api/group-assignlicense: Directory Writers, Groups Administrator, License
Administrator, User Administrator).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Final

import orjson

from licensing.errors import GraphError, GraphPermissionError
from licensing.graph.auth import graph_scope
from licensing.graph.client import GraphClient

__all__ = ["WRITE_PERMISSION", "WriteCheck", "claims_of", "probe_write", "signed_in"]

WRITE_PERMISSION: Final = "LicenseAssignment.ReadWrite.All"
# The all-zero object id: no group has it, so a probe on it can change nothing.
_NO_GROUP: Final = "00000000-0000-0000-0000-000000000000"


def claims_of(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified: we only read who we are, the service verifies the token."""
    try:
        payload = token.split(".")[1]
        data = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, orjson.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


async def _claims(graph: GraphClient) -> dict[str, Any] | None:
    credential = graph.credential
    if credential is None:
        return None
    token = credential.get_token(graph_scope(graph.settings))
    if hasattr(token, "__await__"):
        token = await token
    return claims_of(token.token)


async def signed_in(graph: GraphClient) -> str:
    """``upn (oid)`` for a user, ``app <appid> (oid)`` for an application, from the token's claims."""
    claims = await _claims(graph)
    if claims is None:
        return "anonymous (--credential none: no token)"
    oid = claims.get("oid") or "?"
    upn = claims.get("upn") or claims.get("preferred_username") or claims.get("unique_name")
    if upn:
        return f"{upn} ({oid})"
    return f"app {claims.get('appid') or claims.get('azp') or '?'} ({oid})"


@dataclass(frozen=True, slots=True)
class WriteCheck:
    granted: bool | None  # None: could not tell
    detail: str


async def probe_write(graph: GraphClient) -> WriteCheck:
    """Whether the credential may call assignLicense: the token's scopes/roles, then a call on a group that cannot
    exist (404: authorized, 403: not). Assumption (docs/graph-fidelity.md): Graph authorizes before looking up."""
    claims = await _claims(graph)
    grants: set[str] = set()
    if claims:
        grants = set(str(claims.get("scp") or "").split()) | set(claims.get("roles") or [])
    try:
        await graph.send(
            "POST",
            f"/groups/{_NO_GROUP}/assignLicense",
            route="/groups/{id}/assignLicense",
            body=b'{"addLicenses":[],"removeLicenses":[]}',
            what="the write probe",
            idempotent=False,
        )
    except GraphPermissionError:
        return WriteCheck(
            False,
            f"assignLicense answered 403: grant {WRITE_PERMISSION} (and, signed in as a user, "
            "License Administrator or User Administrator)",
        )
    except GraphError as exc:
        if getattr(exc, "status", None) == 404:
            note = f" (token grants {WRITE_PERMISSION})" if WRITE_PERMISSION in grants else ""
            return WriteCheck(True, f"assignLicense is authorized{note}")
        return WriteCheck(None, f"the probe failed: {exc}")
    return WriteCheck(None, "the probe was accepted on a group that cannot exist: cannot tell")
