"""The published reports: each tenant run's HTML, JSON and CSV files in a private blob container of the app's account.

Layout in ``REPORT_CONTAINER`` (default ``audit-reports``, created private: no anonymous access, the Bicep creates it
too): ``<tenant id>/<run id>/report.html`` (and ``report.json``, ``findings.csv``, ``skus.csv``, ``groups.csv``),
plus ``<tenant id>/latest.json`` naming the newest run published. The link an alert carries is the blob's plain URL,
never a SAS: opening it takes an Entra sign-in with read access on the container (docs/deploy.md, "The report").
Retention: the Bicep's lifecycle rule deletes blobs older than ``RETENTION_DAYS``, like the runs' rows.

Every call is bounded (connection and read timeouts, one retry budget from :class:`RetryPolicy`) and every failure
is one ``licensing.errors`` line that names the host, never a key, SAS or connection string.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from licensing.errors import ConfigurationError, LicensingError
from licensing.settings import StorageConnection
from licensing.store.connection import RetryPolicy, table_host

__all__ = ["LATEST", "PublishedReport", "ReportArchive", "open_archive"]

LATEST = "latest.json"
CONTENT_TYPES: Mapping[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
}
# A wait on storage is bounded: connect within this, read within that (issue 30, item 5).
CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60


@dataclass(frozen=True, slots=True)
class PublishedReport:
    """Where a run's report was published: the HTML's plain URL (no SAS) and the blob names of every file."""

    tenant_id: str
    run_id: str
    url: str
    files: tuple[str, ...]


def _plain(url: str) -> str:
    """The URL without its query: a SAS token from a connection string must never reach a message."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class ReportArchive:
    """Reads and writes the published reports of one container (``service`` is an azure-storage-blob client)."""

    def __init__(self, service: Any, container: str, host: str, retry: RetryPolicy | None = None) -> None:
        self._service = service
        self._container = service.get_container_client(container)
        self.container = container
        self.host = host
        self._retry = retry or RetryPolicy(attempts=3)

    def _call(self, what: str, fn: Any, *, passthrough: tuple[type[BaseException], ...] = ()) -> Any:
        try:
            return self._retry.run(what, self.host, fn, passthrough=passthrough)
        except LicensingError as exc:
            # The mapping of licensing.store.connection speaks of table storage (its first user); these are blobs.
            raise type(exc)(str(exc).replace("table storage", "blob storage")) from None

    def ensure_container(self) -> None:
        """Create the container, private (no ``public_access``), when it is missing."""

        def create() -> None:
            with contextlib.suppress(ResourceExistsError):  # created by the Bicep, or by an earlier run
                self._container.create_container()

        self._call(f"create container {self.container}", create)

    def url_of(self, name: str) -> str:
        return _plain(self._container.get_blob_client(name).url)

    def publish(self, tenant_id: str, run_id: str, files: Mapping[str, bytes]) -> PublishedReport:
        """Upload ``files`` (file name -> bytes) under ``<tenant>/<run>/``, then point ``latest.json`` at the run
        unless a newer run is already published there (run ids sort by their start time)."""
        from azure.storage.blob import ContentSettings

        self.ensure_container()
        names = []
        for file_name, body in files.items():
            name = f"{tenant_id}/{run_id}/{file_name}"
            suffix = file_name[file_name.rfind(".") :]
            content = ContentSettings(content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"))
            blob = self._container.get_blob_client(name)
            self._call(
                f"upload {file_name}",
                lambda blob=blob, body=body, content=content: blob.upload_blob(
                    body, overwrite=True, content_settings=content
                ),
            )
            names.append(name)
        current = self.latest(tenant_id)
        if current is None or str(current.get("run_id", "")) <= run_id:
            pointer = json.dumps({"run_id": run_id, "files": sorted(files)}).encode()
            blob = self._container.get_blob_client(f"{tenant_id}/{LATEST}")
            self._call(
                "upload latest.json",
                lambda: blob.upload_blob(
                    pointer, overwrite=True, content_settings=ContentSettings(content_type=CONTENT_TYPES[".json"])
                ),
            )
        html = next((n for n in names if n.endswith(".html")), names[0] if names else f"{tenant_id}/{run_id}/")
        return PublishedReport(tenant_id, run_id, self.url_of(html), tuple(names))

    def latest(self, tenant_id: str) -> dict[str, Any] | None:
        """The ``latest.json`` pointer of the tenant, or None when nothing is published yet."""
        raw = self.download(f"{tenant_id}/{LATEST}")
        if raw is None:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return None
        return data if isinstance(data, dict) and isinstance(data.get("run_id"), str) else None

    def download(self, name: str) -> bytes | None:
        """The blob's bytes, or None when it (or the container) does not exist."""
        blob = self._container.get_blob_client(name)

        def read() -> bytes | None:
            try:
                return bytes(blob.download_blob().readall())
            except ResourceNotFoundError:
                return None

        result: bytes | None = self._call(f"read {name.rpartition('/')[2]}", read)
        return result

    def run_file(self, tenant_id: str, run_id: str, file_name: str) -> bytes | None:
        return self.download(f"{tenant_id}/{quote(run_id, safe='-_.')}/{file_name}")


def open_archive(conn: StorageConnection | None, container: str, *, retry: RetryPolicy | None = None) -> ReportArchive:
    """A :class:`ReportArchive` from the storage connection (connection string, or blob URI plus identity)."""
    from azure.storage.blob import BlobServiceClient

    if conn is None:
        raise ConfigurationError("no storage configured: set LICENSING_STORAGE or pass --store")
    kwargs: dict[str, Any] = {"retry_total": 0, "connection_timeout": CONNECT_TIMEOUT, "read_timeout": READ_TIMEOUT}
    if conn.connection_string:
        try:
            service = BlobServiceClient.from_connection_string(conn.connection_string.reveal(), **kwargs)
        except (ValueError, KeyError) as exc:
            name = conn.source or "the storage connection string"
            raise ConfigurationError(f"{name} is not a usable storage connection string") from exc
        return ReportArchive(service, container, table_host(_plain(service.url)), retry)
    if not conn.blob_uri:
        raise ConfigurationError(f"{conn.source or 'storage'}: no blob service URI (set {conn.source}__blobServiceUri)")
    from licensing.credentials import storage_credential

    service = BlobServiceClient(account_url=conn.blob_uri, credential=storage_credential(conn), **kwargs)
    return ReportArchive(service, container, table_host(conn.blob_uri), retry)
