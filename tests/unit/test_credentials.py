"""licensing/credentials.py: the one factory of token credentials for identity-based storage connections."""

from __future__ import annotations

from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

from licensing.credentials import storage_credential
from licensing.settings import StorageConnection

CLIENT = "0f8fad5b-d9cb-469f-a165-70867728950e"


def test_managed_identity_when_the_setting_says_so_with_or_without_a_client_id() -> None:
    assert isinstance(
        storage_credential(StorageConnection(table_uri="https://a.table", credential="managedidentity")),
        ManagedIdentityCredential,
    )
    assert isinstance(
        storage_credential(
            StorageConnection(table_uri="https://a.table", credential="ManagedIdentity", client_id=CLIENT)
        ),
        ManagedIdentityCredential,
    )


def test_default_credential_otherwise() -> None:
    assert isinstance(storage_credential(StorageConnection(table_uri="https://a.table")), DefaultAzureCredential)
    assert isinstance(
        storage_credential(StorageConnection(table_uri="https://a.table", client_id=CLIENT)), DefaultAzureCredential
    )


def test_storage_and_queues_share_the_factory() -> None:
    import inspect

    from licensing.pipeline import queues
    from licensing.store import connection

    assert "storage_credential" in inspect.getsource(queues) and "storage_credential" in inspect.getsource(connection)
