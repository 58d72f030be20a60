"""licensing.configure.identity: who is writing comes from the token's claims (upn/oid), never a typed name."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any

import orjson

from licensing.configure.identity import claims_of, signed_in
from licensing.settings import load_settings


def _jwt(claims: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


class _Credential:
    def __init__(self, claims: dict[str, Any]) -> None:
        self.token = _jwt(claims)
        self.scopes: tuple[str, ...] = ()

    async def get_token(self, *scopes: str) -> Any:
        self.scopes = scopes
        return SimpleNamespace(token=self.token, expires_on=0)


def _who(claims: dict[str, Any] | None) -> tuple[str, Any]:
    credential = _Credential(claims) if claims is not None else None
    graph = SimpleNamespace(credential=credential, settings=load_settings({}))
    return asyncio.run(signed_in(graph)), credential  # type: ignore[arg-type]


def test_a_user_is_named_by_upn_and_oid() -> None:
    who, credential = _who({"upn": "admin@contoso.com", "oid": "1111", "scp": "LicenseAssignment.ReadWrite.All"})
    assert who == "admin@contoso.com (1111)"
    assert credential.scopes == ("https://graph.microsoft.com/.default",)


def test_an_application_is_named_by_appid_and_oid() -> None:
    assert (
        _who({"appid": "app-1", "oid": "2222", "roles": ["LicenseAssignment.ReadWrite.All"]})[0] == "app app-1 (2222)"
    )


def test_no_token_says_so() -> None:
    assert _who(None)[0].startswith("anonymous")


def test_a_malformed_token_has_no_claims() -> None:
    assert claims_of("not-a-jwt") == {} and claims_of("a.!!!.c") == {}
