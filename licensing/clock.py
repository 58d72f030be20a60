"""The one clock: timezone-aware UTC now. Code that records time takes a ``now`` callable defaulting to this
(``Runtime.now`` in the pipeline), so tests and the demo can move time without patching."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)
