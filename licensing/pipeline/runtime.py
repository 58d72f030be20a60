"""What every step of a run is given: settings, store, credential, HTTP client, clock and delivery observer.

One frozen object instead of the eight to ten keyword parameters that used to be threaded through
``run_audit``, ``evaluate_and_finish``, the handlers and the fan-out. The clock lives here too: every
time a run records (start, finish, leases, alert state) comes from ``Runtime.now``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from licensing.clock import utcnow
from licensing.settings import Settings, is_loopback_url

if TYPE_CHECKING:
    import httpx

    from licensing.store import AuditStore

__all__ = ["OnDelivered", "Runtime", "default_credential", "new_run_id", "open_runtime", "utcnow"]

OnDelivered = Callable[[str, str, bytes], None]  # (channel, outbox item id, body) after each delivery


def new_run_id(started_at: datetime) -> str:
    """Sortable by time, unique: ``20261124T023000Z-1a2b3c4d``."""
    return f"{started_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def default_credential(settings: Settings) -> str:
    """Tokens only ever go to a Graph endpoint: a loopback URL (the sandbox) gets none."""
    return "none" if is_loopback_url(settings.graph_base_url) else "default"


@dataclass(frozen=True, slots=True)
class Runtime:
    """The environment of one invocation. ``store`` None: nothing is stored (the CLI with ``--store none``)."""

    settings: Settings
    store: AuditStore | None = None
    credential: str = "default"
    http_client: httpx.AsyncClient | None = None  # for the Teams webhook; None: one per run
    now: Callable[[], datetime] = field(default=utcnow)
    on_delivered: OnDelivered | None = None


def open_runtime(settings: Settings, *, credential: str | None = None) -> Runtime:
    """The runtime of a Functions invocation: the configured store (tables created) and the default credential."""
    store: AuditStore | None = None
    if settings.storage is not None:
        from licensing.store import open_store

        store = open_store(settings.storage)
        store.ensure_tables()
    return Runtime(settings, store=store, credential=credential or default_credential(settings))
