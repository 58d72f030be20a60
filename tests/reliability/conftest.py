"""Helpers of the reliability suite: small sandbox tenants, fast retry policies, a scripted webhook, a cuttable
storage link, ground-truth comparison and a secret scanner.

Retries never sleep for real here: the Graph reader and the notifier get a sleep that records the delay
and yields, so a ``Retry-After: 300`` costs nothing and the test can still check what would have been
waited. Faults are deterministic (``first=N``), tenants are the sandbox minimum (60 users, 12 groups).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import secrets
import select
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from licensing.emulator import AZURITE_KEY, Azurite
from licensing.model import AuditReport
from licensing.sandbox import SandboxServer, SandboxTenant, TenantSpec, generate_tenant
from licensing.settings import Secret, Settings, StorageConnection, load_settings

# Findings about a group and its members: they disappear with the group when it cannot be read.
GROUP_KINDS = frozenset(
    {"b2b_member", "nested_group", "license_error", "disabled_user_licensed", "empty_licensed_group",
     "processing_incomplete", "redundant_direct_assignment", "inactive_user_licensed"}
)  # fmt: skip
SEAT_KINDS = frozenset({"seat_shortage", "seat_low", "seat_forecast", "units_expiring"})

Key = tuple[str, str, str | None, str | None, str | None, str | None, str | None]


def truth_keys(tenant: SandboxTenant) -> set[Key]:
    return {
        (str(f.kind), str(f.severity), f.sku_id, f.group_id, f.user_id, f.member_group_id, f.error)
        for f in tenant.ground_truth
    }


def finding_keys(report: AuditReport) -> set[Key]:
    return {
        (str(f.kind), str(f.severity), f.sku_id, f.group_id, f.user_id, f.member_group_id, f.error)
        for f in report.findings
    }


def assert_matches_truth(report: AuditReport, tenant: SandboxTenant) -> None:
    expected, found = truth_keys(tenant), finding_keys(report)
    assert found - expected == set(), f"extra findings: {sorted(map(str, found - expected))[:5]}"
    assert expected - found == set(), f"missing findings: {sorted(map(str, expected - found))[:5]}"


# --------------------------------------------------------------------------------------------- tenants


@pytest.fixture(scope="session")
def small_tenant() -> SandboxTenant:
    """The smallest tenant that holds every situation (read-only: tests that delete a group make their own)."""
    return generate_tenant(TenantSpec(seed=23, users=60, groups=12))


@pytest.fixture
def sandbox(small_tenant: SandboxTenant) -> Iterator[SandboxServer]:
    with SandboxServer(small_tenant) as server:
        yield server


# --------------------------------------------------------------------------------------------- fast retries


@dataclass
class SleepLog:
    """An async sleep that records what would have been waited and only yields to the loop."""

    delays: list[float] = field(default_factory=list)

    async def sleep(self, seconds: float) -> None:
        self.delays.append(float(seconds))
        await asyncio.sleep(0)


@pytest.fixture
def graph_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepLog:
    """Every Graph client run_audit opens gets a recording sleep, a seeded jitter and a 1.5 s timeout."""
    import licensing.graph
    from licensing.graph.client import open_graph as real_open_graph
    from licensing.graph.retry import RetryPolicy

    log = SleepLog()

    def open_graph(settings: Settings, credential: str = "default", **options: Any) -> Any:
        options.setdefault("retry", RetryPolicy(sleep=log.sleep, rng=random.Random(0)))
        options.setdefault("timeout_s", 1.5)
        return real_open_graph(settings, credential, **options)

    monkeypatch.setattr(licensing.graph, "open_graph", open_graph)
    return log


@pytest.fixture
def alert_sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepLog:
    """The notifier run_audit creates gets a recording sleep, 3 attempts and a 0.5 s webhook timeout."""
    import licensing.alerts
    from licensing.alerts import Notifier, RetryPolicy

    log = SleepLog()
    factory = functools.partial(
        Notifier, sleep=log.sleep, timeout_s=0.5, retry=RetryPolicy(attempts=3, base_delay_s=0.01, max_delay_s=0.05)
    )
    monkeypatch.setattr(licensing.alerts, "Notifier", factory)
    return log


# --------------------------------------------------------------------------------------------- webhook


WEBHOOK_SIG = "RelSig" + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")


@dataclass
class Reply:
    status: int = 202
    headers: tuple[tuple[str, str], ...] = ()
    hold_s: float = 0.0


class WebhookReceiver:
    """A Teams Workflows webhook on loopback that answers from a script (then 202) and keeps what it accepted.

    A POST counts as delivered only when its 2xx answer reached a connected client: a request the client
    gave up on (timeout) is what a flow that never fired looks like.
    """

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.accepted: list[bytes] = []
        self.attempts = 0
        self.paths: list[str] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.attempts += 1
                    receiver.paths.append(self.path)
                    reply = receiver.script.popleft() if receiver.script else Reply()
                if reply.hold_s:
                    threading.Event().wait(reply.hold_s)
                    if _peer_closed(self.connection):
                        return
                self.send_response(reply.status)
                for name, value in reply.headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if 200 <= reply.status < 300:
                    with receiver._lock:
                        receiver.accepted.append(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = (
            f"http://127.0.0.1:{self.server.server_address[1]}/workflows/5c0ffee/triggers/manual/paths/invoke"
            f"?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={WEBHOOK_SIG}"
        )
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True)
        self._thread.start()

    def then(self, *replies: Reply) -> WebhookReceiver:
        self.script.extend(replies)
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _peer_closed(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


# --------------------------------------------------------------------------------------------- storage


def open_test_store(connection_string: str, prefix: str) -> Any:
    """A prefixed AuditStore whose own retries do not sleep, with its tables created."""
    from licensing.store import open_store
    from licensing.store.connection import RetryPolicy

    conn = StorageConnection(connection_string=Secret(connection_string), source="LICENSING_STORAGE")
    store = open_store(conn, prefix=prefix, retry=RetryPolicy(attempts=3, sleep=lambda _s: None))
    store.ensure_tables()
    return store


@pytest.fixture
def store(storage_connection: str, unique_name: str) -> Any:
    return open_test_store(storage_connection, unique_name)


def make_settings(
    server: SandboxServer,
    *,
    storage: str | None = None,
    webhook_url: str | None = None,
    mail: bool = False,
    **extra: str,
) -> Settings:
    env = {"GRAPH_BASE_URL": server.base_url, "GRAPH_MAX_CONCURRENCY": "4", **extra}
    if storage:
        env["LICENSING_STORAGE"] = storage
    if webhook_url:
        env["ALERT_TEAMS_WEBHOOK_URL"] = webhook_url
    if mail:
        env["ALERT_MAIL_FROM"] = "audit@contoso.example"
        env["ALERT_MAIL_TO"] = "admins@contoso.example"
    return load_settings(env)


class StorageLink:
    """A TCP relay in front of Azurite's table port that can go down (connections refused, open ones reset)
    and come back on the same port: an outage of the storage account with its data intact."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            conns, self._conns = self._conns, set()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()

    def connection_string(self, azurite: Azurite) -> str:
        return azurite.connection_string.replace(f":{azurite.table_port}/", f":{self.port}/")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()


# --------------------------------------------------------------------------------------------- secrets


def secret_needles(*extra: str) -> list[str]:
    """Distinctive parts of every secret a run handles: webhook signature, Azurite key, plus ``extra``."""
    return [WEBHOOK_SIG, AZURITE_KEY, AZURITE_KEY[:24], *extra]


def find_secrets(texts: dict[str, str], needles: list[str]) -> list[str]:
    return [f"{name} contains {needle[:10]}…" for name, text in texts.items() for needle in needles if needle in text]


# --------------------------------------------------------------------------------------------- tokens


class ExpiringCredential:
    """An azure-identity style TokenCredential whose tokens are numbered; it counts how often it was asked."""

    def __init__(self) -> None:
        self.issued = 0

    async def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.issued += 1
        return AccessToken(f"fake-token-{self.issued}", 4_102_444_800)

    async def close(self) -> None:
        return None


def use_credential(monkeypatch: pytest.MonkeyPatch, credential: ExpiringCredential) -> None:
    """Make the Graph client authenticate with ``credential`` (the reader takes only credential names)."""
    import licensing.graph.auth as auth

    def provider(settings: Any, name: str) -> tuple[Any, Any]:
        from kiota_authentication_azure.azure_identity_authentication_provider import (
            AzureIdentityAuthenticationProvider,
        )

        return AzureIdentityAuthenticationProvider(credential, scopes=["https://graph.microsoft.com/.default"],
                                                   allowed_hosts=["127.0.0.1"]), credential  # fmt: skip

    monkeypatch.setattr(auth, "make_auth_provider", provider)
