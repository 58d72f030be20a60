"""The integration tests' shared fixture: each test meets its module's sandbox server (``server``, module-scoped, over
the module's own tenant) with no faults and fresh counters, and leaves it without faults."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from licensing.sandbox import Faults, SandboxServer


@pytest.fixture
def sandbox(server: SandboxServer) -> Iterator[SandboxServer]:
    server.set_faults(Faults())
    server.reset_stats()
    yield server
    server.set_faults(Faults())
