"""Azure token credentials for identity-based storage connections (managed identity or the developer's sign-in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from licensing.settings import StorageConnection

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

__all__ = ["storage_credential"]


def storage_credential(connection: StorageConnection) -> TokenCredential:
    """The credential an identity-based ``<prefix>__*`` storage connection asks for.

    ``__credential=managedidentity`` (with ``__clientId`` for a user-assigned identity) is the
    Functions host's own convention; otherwise DefaultAzureCredential, which also covers a
    developer signed in with ``az login``.
    """
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if (connection.credential or "").lower() == "managedidentity":
        if connection.client_id:
            return ManagedIdentityCredential(client_id=connection.client_id)
        return ManagedIdentityCredential()
    if connection.client_id:
        return DefaultAzureCredential(managed_identity_client_id=connection.client_id)
    return DefaultAzureCredential()
