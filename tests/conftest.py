"""Shared fixtures: a session-wide Azurite (real Table and Queue Storage), unique table prefixes, and an
in-memory OpenTelemetry capture (reset before every test)."""

from __future__ import annotations

import os
import select
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from licensing.emulator import Azurite, find_azurite


def under_faketime() -> bool:
    """True in the clock tier (`make clock`): libfaketime is preloaded with the monotonic clock left real."""
    return "faketime" in os.environ.get("LD_PRELOAD", "") and os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1"


def _sleep_through_select(seconds: float) -> None:
    """time.sleep for the clock tier: select() takes a relative timeout, which libfaketime passes through."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


def pytest_configure(config: pytest.Config) -> None:
    # libfaketime 0.9.10 (Debian's) with FAKETIME_DONT_FAKE_MONOTONIC=1 turns the absolute monotonic deadline of
    # clock_nanosleep(TIMER_ABSTIME), which is how Python 3.11's time.sleep waits, into an invalid one: every
    # time.sleep raises OSError(EINVAL). Faking the monotonic clock instead makes timed lock waits never return.
    # So the clock tier keeps the monotonic clock real and sleeps through select(); the library code and its
    # dependencies (subprocess's wait loop, exporters) then run unchanged. Outside the clock tier nothing changes.
    if under_faketime():
        time.sleep = _sleep_through_select


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


class OTelCapture:
    """The session's in-memory OpenTelemetry providers (installed once: OTel globals can be set only once)."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        self.installed = trace.get_tracer_provider() is self.tracer_provider
        self._last: dict[str, dict[frozenset[tuple[str, Any]], float]] = {}

    def spans(self, name: str | None = None) -> list[Any]:
        return [s for s in self.exporter.get_finished_spans() if name is None or s.name == name]

    def points(self, metric: str) -> dict[frozenset[tuple[str, Any]], float]:
        """Current value of every point of one metric, keyed by its attribute set (sum, last value, or count).

        Every collection is merged into what earlier ones saw: some SDK releases report a synchronous
        gauge's point only in the first collection after it was set, and one test may read several metrics.
        """
        data = self.reader.get_metrics_data()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    fresh: dict[frozenset[tuple[str, Any]], float] = {}
                    for p in m.data.data_points:
                        value = getattr(p, "value", None)
                        # Two series whose attributes compare equal (an enum and its string) are one key here:
                        # add them up rather than let one hide the other.
                        key = frozenset((p.attributes or {}).items())
                        fresh[key] = fresh.get(key, 0) + (value if value is not None else p.count)
                    self._last.setdefault(m.name, {}).update(fresh)
        return dict(self._last.get(metric, {}))


@pytest.fixture(scope="session", autouse=True)
def _otel_session() -> OTelCapture:
    """Installed before any test runs, so that telemetry.configure() (CLI tests) finds a provider and keeps it."""
    return OTelCapture()


@pytest.fixture(autouse=True)
def _otel_clear(_otel_session: OTelCapture) -> Iterator[None]:
    yield
    _otel_session.exporter.clear()  # spans of one test never pile up over the session


@pytest.fixture
def otel(_otel_session: OTelCapture) -> OTelCapture:
    """In-memory spans (cleared per test) and metrics (cumulative: compare before/after or use unique attributes)."""
    if not _otel_session.installed:
        pytest.fail("another OpenTelemetry tracer provider was installed before the test session's in-memory one")
    _otel_session.exporter.clear()
    return _otel_session


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Markers match what a test needs: every test that uses Azurite carries ``azurite``, so that
    ``pytest -m "not azurite"`` (``make unit``) really runs without the emulator."""
    unmarked = [
        item.nodeid
        for item in items
        if "azurite" in getattr(item, "fixturenames", ()) and item.get_closest_marker("azurite") is None
    ]
    if unmarked:
        raise pytest.UsageError("tests that use Azurite without the azurite marker: " + ", ".join(unmarked[:20]))
