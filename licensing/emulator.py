"""Start and stop the local Azurite storage emulator (tests, demo) on free loopback ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from licensing.errors import ConfigurationError, StorageUnavailableError

__all__ = ["AZURITE_ACCOUNT", "AZURITE_KEY", "Azurite", "find_azurite"]

# The emulator's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def find_azurite(start: Path | None = None) -> Path:
    """The ``azurite`` executable from the project's node_modules (installed by ``make``), or PATH."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents, Path(__file__).resolve().parents[1]):
        candidate = folder / "node_modules" / ".bin" / "azurite"
        if candidate.exists():
            return candidate
    found = shutil.which("azurite")
    if found:
        return Path(found)
    raise ConfigurationError("Azurite is not installed: run `make demo` or `make test` (they install it with npm ci)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@dataclass(slots=True)
class Azurite:
    """An Azurite process with table, queue and blob services, in memory, on free ports.

    Use as a context manager; it is stopped on exit, also on failure. ``stop()`` then
    ``start()`` again keeps the ports (a restart mid-run, for reliability tests) but, being
    in memory, not the data.
    """

    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    process: subprocess.Popen[bytes] | None = None
    _cwd: str | None = None

    @property
    def connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={base}:{self.blob_port}/{AZURITE_ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{AZURITE_ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{AZURITE_ACCOUNT};"
        )

    def start(self, timeout: float = 30.0) -> Azurite:
        if self.process is not None:
            return self
        executable = find_azurite()
        self.blob_port = self.blob_port or _free_port()
        self.queue_port = self.queue_port or _free_port()
        self.table_port = self.table_port or _free_port()
        args = [
            str(executable),
            "--silent",
            "--disableTelemetry",  # no outbound connection from tests, CI or the demo
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(self.blob_port),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(self.queue_port),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(self.table_port),
        ]
        # Azurite writes its debug/extent files to the working directory: keep them out of the repo.
        self._cwd = tempfile.mkdtemp(prefix="azurite-")
        self.process = subprocess.Popen(  # noqa: S603 - our own executable, fixed arguments
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self._cwd
        )
        deadline = time.monotonic() + timeout
        for port in (self.table_port, self.queue_port, self.blob_port):
            if not _wait_for_port(port, deadline):
                err = b""
                if self.process.poll() is not None and self.process.stderr:
                    err = self.process.stderr.read()[-500:]
                self.stop()
                reason = err.decode(errors="replace").strip()
                raise StorageUnavailableError(f"Azurite did not start on port {port} within {timeout:.0f}s: {reason}")
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stderr:
            process.stderr.close()

    def close(self) -> None:
        self.stop()
        if self._cwd:
            shutil.rmtree(self._cwd, ignore_errors=True)
            self._cwd = None

    def __enter__(self) -> Azurite:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
