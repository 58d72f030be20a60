"""The alert outbox's contract: what the notifier needs from the store, the in-memory stand-in, dead items, and
what one delivery pass did (licensing.alerts.notifier uses them; split off to keep that module one concern)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final, Protocol

from licensing.alerts.policy import AlertPlan
from licensing.model import AlertState, OutboxItem

__all__ = ["DEAD_MARK", "MAX_ATTEMPTS", "MAYBE_MARK", "AlertStore", "DeliveryResult", "MemoryOutbox", "is_dead"]

MAX_ATTEMPTS: Final = 20  # across runs; then the item stays in the outbox, marked dead, for an admin
DEAD_MARK: Final = "[dead] "
MAYBE_MARK: Final = "[may have been delivered] "


class AlertStore(Protocol):
    """What the notifier needs from the store (``licensing.store`` implements it on Table Storage)."""

    def alert_states(self, tenant_id: str) -> Mapping[str, AlertState]: ...

    def update_alert_states(
        self, tenant_id: str, change: Callable[[dict[str, AlertState]], Sequence[AlertState]]
    ) -> object: ...

    def outbox_put(self, item: OutboxItem) -> object: ...

    def outbox_list(self, channel: str | None = None) -> list[OutboxItem]: ...

    def outbox_delete(self, item: OutboxItem) -> object: ...

    def outbox_record_failure(self, item: OutboxItem, error: str) -> object: ...


class MemoryOutbox:
    """The outbox (and alert state) of a run without a store: lives for one run, so failures are reported
    but not kept. The unit tests use it too, as the in-memory AlertStore it is."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, AlertState]] = {}
        self.items: dict[tuple[str, str], OutboxItem] = {}

    def alert_states(self, tenant_id: str) -> dict[str, AlertState]:
        return dict(self.states.get(tenant_id, {}))

    def update_alert_states(
        self, tenant_id: str, change: Callable[[dict[str, AlertState]], Sequence[AlertState]]
    ) -> list[AlertState]:
        rows = list(change(self.alert_states(tenant_id)))
        table = self.states.setdefault(tenant_id, {})
        for row in rows:
            table[row.finding_id] = row
        return rows

    def outbox_put(self, item: OutboxItem) -> None:
        self.items[(item.channel, item.id)] = item

    def outbox_list(self, channel: str | None = None) -> list[OutboxItem]:
        return [i for (c, _), i in sorted(self.items.items()) if channel is None or c == channel]

    def outbox_delete(self, item: OutboxItem) -> None:
        self.items.pop((item.channel, item.id), None)

    def outbox_record_failure(self, item: OutboxItem, error: str) -> OutboxItem:
        stored = self.items.get((item.channel, item.id), item)
        updated = replace(item, attempts=stored.attempts + 1, last_error=error)
        self.items[(item.channel, item.id)] = updated
        return updated


def is_dead(item: OutboxItem) -> bool:
    """An item that failed :data:`MAX_ATTEMPTS` times: kept, not tried again, reported every run."""
    return item.attempts >= MAX_ATTEMPTS or (item.last_error or "").startswith(DEAD_MARK)


@dataclass(slots=True)
class DeliveryResult:
    """What one :meth:`Notifier.run` did. Errors are safe to show (no URLs, no tokens)."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (channel, item id), this run's and replayed
    failed: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, item id, error): kept in outbox
    queued: list[tuple[str, str]] = field(default_factory=list)  # (channel, item id) put in the outbox this run
    replayed: list[tuple[str, str]] = field(default_factory=list)  # delivered items of earlier runs
    dead: list[tuple[str, str, str]] = field(default_factory=list)  # given up after MAX_ATTEMPTS, kept
    plan: AlertPlan | None = None

    @property
    def ok(self) -> bool:
        return not self.failed and not self.dead
