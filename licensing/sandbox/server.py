"""The sandbox's HTTP/1.1 server (asyncio streams in a background thread) and its command line.

Why asyncio streams and not ``http.server.ThreadingHTTPServer``: the reader keeps ~16 keep-alive
connections open and tests hold responses for seconds (latency, timeouts); one event loop serves them
all with ``asyncio.sleep`` (no CPU, no thread per connection), and a held or reset connection costs a
coroutine, not a thread. The HTTP subset is small (Content-Length bodies, keep-alive), so the parser
stays a few lines and adds no dependency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import struct
import sys
import threading
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import orjson

from licensing.errors import ConfigurationError, LicensingError
from licensing.sandbox.faults import Faults, parse_faults
from licensing.sandbox.generate import generate_tenant
from licensing.sandbox.graph_api import GraphApp, Request, Response
from licensing.sandbox.tenant import SandboxTenant, TenantSpec

__all__ = ["SandboxServer", "main", "serve"]

MAX_HEAD: Final = 64 * 1024
MAX_BODY: Final = 8 * 1024 * 1024
MAX_HOLD_S: Final = 120.0
REASONS: Final = {
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 411: "Length Required", 413: "Payload Too Large", 429: "Too Many Requests",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}  # fmt: skip


class SandboxServer:
    """A real HTTP server on 127.0.0.1 serving one tenant; a context manager."""

    def __init__(
        self,
        tenant: SandboxTenant,
        faults: Faults | None = None,
        latency_ms: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.tenant = tenant
        self.app = GraphApp(tenant, faults, latency_ms)
        self.host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    # ------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1.0"

    @property
    def stats(self) -> dict[str, Any]:
        return self.app.stats()

    @property
    def sent_mail(self) -> list[dict[str, Any]]:
        return list(self.app.sent_mail)

    @property
    def latency_ms(self) -> float:
        return self.app.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        self.app.latency_ms = value

    def set_faults(self, faults: Faults) -> None:
        self.app.set_faults(faults)

    def delete_group(self, group_id: str) -> None:
        """From now on the group answers 404 (itself and its members) and leaves the /groups listing."""
        self.app.delete_group(group_id)

    def remove_members(self, group_id: str, count: int) -> None:
        """The group's last ``count`` user members leave it (its member pages shrink from now on)."""
        self.app.remove_members(group_id, count)

    def reset_stats(self) -> None:
        self.app.reset_stats()

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self._run, name="graph-sandbox", daemon=True)
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise ConfigurationError(f"sandbox server could not start on {self.host}:{self._port}: {self._error}")
        self.app.base_url = self.base_url
        return self

    def stop(self) -> None:
        loop = self._loop
        if loop is not None and self._thread is not None and loop.is_running():
            loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)
        self._loop = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ event loop

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            self._server = loop.run_until_complete(
                asyncio.start_server(self._serve_conn, self.host, self._port, limit=MAX_HEAD, backlog=256)
            )
            self._port = self._server.sockets[0].getsockname()[1]
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def _shutdown(self) -> None:
        assert self._loop is not None
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        self._loop.stop()

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                req, keep_alive, error = self._parse(head)
                if req is not None and error is None:
                    length = int(req.headers.get("content-length", "0") or 0)
                    if length > MAX_BODY:
                        error = 413
                    elif length:
                        try:
                            req.body = await reader.readexactly(length)
                        except (asyncio.IncompleteReadError, ConnectionError):
                            return
                if error is not None or req is None:
                    await self._write(writer, Response(error or 400, b""), keep_alive=False)
                    return
                self.app.enter()
                try:
                    resp = self.app.handle(req)
                    if resp.delay_s > 0:
                        await asyncio.sleep(resp.delay_s)
                    if resp.action == "reset":
                        _reset(writer)
                        return
                    if resp.action == "timeout":
                        await self._hold(reader, min(resp.hold_s, MAX_HOLD_S))
                        _reset(writer)
                        return
                    await self._write(writer, resp, keep_alive)
                finally:
                    self.app.leave()
                if not keep_alive:
                    return
        except (ConnectionError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def _hold(reader: asyncio.StreamReader, seconds: float) -> None:
        # Returns early when the client gives up (EOF), so held connections do not pile up.
        with contextlib.suppress(asyncio.TimeoutError, ConnectionError):
            await asyncio.wait_for(reader.read(1), seconds)

    @staticmethod
    def _parse(head: bytes) -> tuple[Request | None, bool, int | None]:
        try:
            text = head.decode("latin-1")
            line, *rest = text.split("\r\n")
            method, target, version = line.split(" ", 2)
        except ValueError:
            return None, False, 400
        headers: dict[str, str] = {}
        for h in rest:
            if not h:
                continue
            name, sep, value = h.partition(":")
            if not sep:
                return None, False, 400
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return None, False, 411
        conn = headers.get("connection", "").lower()
        keep_alive = conn != "close" if version == "HTTP/1.1" else conn == "keep-alive"
        return Request(method.upper(), target, headers), keep_alive, None

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, resp: Response, keep_alive: bool) -> None:
        lines = [f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}"]
        if resp.body or resp.status not in (202, 204):
            lines.append(f"Content-Type: {resp.content_type}")
        lines.append(f"Content-Length: {len(resp.body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        lines += [f"{k}: {v}" for k, v in resp.headers]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body)
        await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), no response: what a dropped connection looks like to a client."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# ------------------------------------------------------------------------------ command line


def _as_of(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        example = "2026-11-24T02:30:00Z"
        raise argparse.ArgumentTypeError(f"--as-of must be an ISO 8601 time such as {example}: {text!r}") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m licensing.sandbox", description="Serve a simulated Graph tenant.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--groups", type=int, default=20)
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--per-object-us", type=float, default=0.0)
    p.add_argument("--ru-budget", default=None, help="RU per 10 s window, or 'auto' for Graph's budget")
    p.add_argument("--faults", action="append", default=[], help="fault spec, e.g. '429@members:first=2'")
    p.add_argument(
        "--without-entra-premium",
        action="store_true",
        help="a tenant without Entra ID P1/P2: signInActivity is refused (403 as Graph answers)",
    )
    p.add_argument("--ground-truth", default=None, help="write the expected findings as JSON to this file")
    p.add_argument(
        "--as-of",
        type=_as_of,
        default=None,
        help="the tenant's now, ISO 8601 UTC (e.g. 2026-11-24T02:30:00Z); default: the wall clock",
    )
    return p


def build_faults(spec_list: list[str], per_object_us: float = 0.0, ru_budget: str | None = None) -> Faults:
    extra = []
    if per_object_us:
        extra.append(f"per_object_us={per_object_us}")
    if ru_budget is not None:
        extra.append(f"ru_budget={ru_budget}")
    return parse_faults([*spec_list, *extra])


def ground_truth_json(tenant: SandboxTenant) -> bytes:
    """The ground truth as JSON: the findings the audit must report (ids per licensing.model.finding_id)."""
    rows = [
        {
            "id": f.id,
            "kind": str(f.kind),
            "severity": str(f.severity),
            "sku_id": f.sku_id,
            "group_id": f.group_id,
            "user_id": f.user_id,
            "member_group_id": f.member_group_id,
            "error": f.error,
        }
        for f in tenant.ground_truth
    ]
    return orjson.dumps({"tenant_id": tenant.tenant_id, "findings": rows}, option=orjson.OPT_INDENT_2)


def serve(argv: list[str] | None = None, *, ready: threading.Event | None = None) -> int:
    """Generate a tenant, serve it, print the base URL as the first stdout line; run until SIGTERM/SIGINT."""
    args = _parser().parse_args(argv)
    try:
        faults = build_faults(args.faults, args.per_object_us, args.ru_budget)
        spec = TenantSpec(
            seed=args.seed, users=args.users, groups=args.groups, entra_premium=not args.without_entra_premium
        )
        tenant = generate_tenant(spec, as_of=args.as_of)
    except LicensingError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    if args.ground_truth:
        from pathlib import Path

        Path(args.ground_truth).write_bytes(ground_truth_json(tenant))
    stop = threading.Event()
    server = SandboxServer(tenant, faults=faults, latency_ms=args.latency_ms, host=args.host, port=args.port)
    try:
        server.start()
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    print(server.base_url, flush=True)  # noqa: T201 - the first stdout line: scripts read the URL from it
    # What to do with it (stderr, so that stdout stays the URL alone): issue 30, item 11.
    print(  # noqa: T201
        f"sandbox tenant serving; audit it with: licensing-audit run --graph-url {server.base_url} "
        "--credential none --store none   (Ctrl-C stops it)",
        file=sys.stderr,
        flush=True,
    )
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main() -> None:
    sys.exit(serve(sys.argv[1:]))
