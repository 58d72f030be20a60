"""Which token credential the Graph client uses, and the token scope and hosts it may be sent to."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from licensing.errors import ConfigurationError
from licensing.settings import CLOUDS, Settings, is_loopback_url

if TYPE_CHECKING:
    from kiota_abstractions.authentication import AuthenticationProvider

__all__ = ["CREDENTIALS", "graph_scope", "make_auth_provider"]

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
