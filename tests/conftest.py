"""Shared fixtures: a session-wide Azurite (real Table and Queue Storage) and a clean environment."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from licensing.emulator import Azurite, find_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One in-memory Azurite for the test session, on free loopback ports."""
    try:
        find_azurite()
    except Exception as exc:  # not installed: say so loudly, do not pass silently
        pytest.fail(f"Azurite is required for integration tests: {exc}")
    with Azurite() as emulator:
        yield emulator


@pytest.fixture
def storage_connection(azurite: Azurite) -> str:
    """The Azurite connection string (tables/queues are shared: use unique names per test)."""
    return azurite.connection_string


@pytest.fixture
def unique_name() -> str:
    """A fresh lowercase name usable as a table or queue name suffix."""
    return "t" + uuid.uuid4().hex[:12]
