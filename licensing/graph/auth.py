"""Which token credential the Graph client uses, and the token scope and hosts it may be sent to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from licensing.errors import ConfigurationError
from licensing.settings import CLOUDS, Settings, is_loopback_url

if TYPE_CHECKING:
    from kiota_abstractions.authentication import AuthenticationProvider

__all__ = ["CREDENTIALS", "graph_scope", "identity_from_token", "make_auth_provider", "signed_in_identity"]

CREDENTIALS: Final = ("default", "azure-cli", "managed-identity", "device-code", "none")


def graph_scope(settings: Settings) -> str:
    """``<graph host>/.default``: the token audience is the Graph host in use, never another."""
    return f"{settings.graph_host}/.default"


def _authority(settings: Settings) -> str:
    """The sign-in host of the cloud whose Graph endpoint is configured (an explicit URL keeps its cloud's)."""
    host = urlsplit(settings.graph_base_url).hostname or ""
    for cloud in CLOUDS.values():
        if urlsplit(cloud.graph).hostname == host:
            return cloud.authority
    return settings.cloud.authority


def check_credential(settings: Settings, credential: str) -> None:
    """Raise ConfigurationError for an unknown credential or ``none`` against a non-loopback Graph."""
    if credential not in CREDENTIALS:
        raise ConfigurationError(f"--credential {credential!r} is invalid: expected one of {', '.join(CREDENTIALS)}")
    if credential == "none" and not is_loopback_url(settings.graph_base_url):
        raise ConfigurationError(
            "--credential none is only allowed for a loopback Graph URL (the sandbox), "
            f"not for {urlsplit(settings.graph_base_url).hostname}"
        )


def make_auth_provider(settings: Settings, credential: str) -> tuple[AuthenticationProvider, Any]:
    """The kiota authentication provider, and the credential object to close afterwards (or None)."""
    check_credential(settings, credential)
    if credential == "none":
        from kiota_abstractions.authentication import AnonymousAuthenticationProvider

        return AnonymousAuthenticationProvider(), None

    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )

    authority = _authority(settings)
    tenant = settings.azure_tenant_id
    cred: Any
    if credential == "default":
        from azure.identity.aio import DefaultAzureCredential

        # AZURE_CLIENT_ID selects a user-assigned managed identity (and is read by the env credential too).
        cred = DefaultAzureCredential(
            authority=authority,
            managed_identity_client_id=settings.azure_client_id,
            **({"additionally_allowed_tenants": ["*"]} if tenant is None else {}),
        )
    elif credential == "azure-cli":
        from azure.identity.aio import AzureCliCredential

        cred = AzureCliCredential(tenant_id=tenant) if tenant else AzureCliCredential()
    elif credential == "managed-identity":
        from azure.identity.aio import ManagedIdentityCredential

        cred = (
            ManagedIdentityCredential(client_id=settings.azure_client_id)
            if settings.azure_client_id
            else (ManagedIdentityCredential())
        )
    else:  # device-code: interactive, only the synchronous credential exists (one token, then cached)
        from azure.identity import DeviceCodeCredential

        cred = (
            DeviceCodeCredential(tenant_id=tenant, authority=authority)
            if tenant
            else DeviceCodeCredential(authority=authority)
        )
    host = urlsplit(settings.graph_base_url).hostname or ""
    # allowed_hosts: kiota attaches the token only to requests for these hosts.
    provider = AzureIdentityAuthenticationProvider(cred, scopes=[graph_scope(settings)], allowed_hosts=[host])
    return provider, cred


def identity_from_token(token: str) -> str:
    """Who a Microsoft identity platform access token was issued to: ``upn`` (or ``preferred_username`` /
    ``unique_name``) and ``oid``, as "ana@contoso.com (oid 1b2c…)"; an app's token gives "app <appid> (oid …)".

    The claims are read, not verified: the token comes from our own credential, not from a caller, and only Graph
    checks its signature. Claims per https://learn.microsoft.com/entra/identity-platform/access-token-claims-reference
    ("oid": the immutable identifier of the principal; "upn"/"preferred_username"/"unique_name": a readable name).
    """
    import base64
    import json

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, UnicodeDecodeError):
        raise ConfigurationError("the sign-in gave a token whose claims cannot be read: sign in again") from None
    if not isinstance(claims, dict) or not isinstance(claims.get("oid"), str) or not claims["oid"]:
        raise ConfigurationError("the sign-in gave a token without an object id (oid): sign in as a user")
    name = next(
        (str(claims[c]) for c in ("upn", "preferred_username", "unique_name") if isinstance(claims.get(c), str)), ""
    )
    if not name and isinstance(claims.get("appid"), str):
        name = f"app {claims['appid']}"
    oid = str(claims["oid"])
    return " ".join(f"{name} (oid {oid})".split())[:256] if name else f"oid {oid}"[:256]


async def signed_in_identity(settings: Settings, credential: str) -> str:
    """The identity the credential signs in as, from the claims of a Graph token (never a typed name)."""
    if credential == "none":
        raise ConfigurationError("--credential none cannot say who you are: sign in (az login) to record who decided")
    _provider, cred = make_auth_provider(settings, credential)
    try:
        token = cred.get_token(graph_scope(settings))
        if hasattr(token, "__await__"):
            token = await token
    except Exception as exc:  # azure-identity raises its own errors: one line, no token, no traceback
        raise ConfigurationError(f"could not sign in to find out who you are ({type(exc).__name__})") from None
    finally:
        close = getattr(cred, "close", None)
        if close is not None:
            done = close()
            if hasattr(done, "__await__"):
                await done
    return identity_from_token(str(token.token))
