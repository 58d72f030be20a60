"""One run's alerting, in transactional-outbox order: replay the outbox, plan, queue, commit state, deliver.

1. Deliver what earlier runs left in the outbox (oldest first), so nothing waits behind new alerts.
2. Plan against the alert state (:func:`~licensing.alerts.policy.plan_alerts`).
3. Put this run's digests into the outbox under stable ids (run id + channel + part): a redone run
   overwrites, never duplicates.
4. Commit the new alert state (read-modify-write with ETags in the store).
5. Deliver this run's items, deleting each one once delivered, recording failures otherwise.

A crash between any two steps loses nothing: before (4) the redone run plans the same digests again
under the same ids; after (4) the items wait in the outbox for step 1 or 5 of the next attempt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Final

import httpx
import orjson

from licensing import telemetry
from licensing.alerts.delivery import (
    MailTransport,
    RetryPolicy,
    limiter_for,
    post_webhook,
    send_mail,
    with_retries,
)
from licensing.alerts.digest import build_digest
from licensing.alerts.mail import build_message
from licensing.alerts.outbox import (
    DEAD_MARK,
    MAX_ATTEMPTS,
    MAYBE_MARK,
    AlertStore,
    DeliveryResult,
    MemoryOutbox,
    is_dead,
)
from licensing.alerts.policy import AlertPlan, EvaluatedScope, plan_alerts
from licensing.alerts.teams import teams_payload
from licensing.clock import utcnow
from licensing.errors import DeliveryError, DeliveryOutcomeUnknownError, LicensingError, StorageError, redact_text
from licensing.model import AlertState, AuditReport, Channel, OutboxItem
from licensing.settings import Settings

__all__ = ["MAX_ATTEMPTS", "AlertStore", "DeliveryResult", "MemoryOutbox", "Notifier", "is_dead"]

log = logging.getLogger(__name__)

CHANNELS: Final = ("teams", "mail")
MAX_CARRIED: Final = 5000  # finding ids an outbox item remembers (a few hundred KB at most, spilled by the store)

OnDelivered = Callable[[str, str, bytes], None]


def _announces(plan: AlertPlan) -> tuple[frozenset[str], ...]:
    """What a plan would tell people: the ids it sends as new, escalated, reminded and resolved."""
    return (
        frozenset(f.id for f in plan.new),
        frozenset(f.id for f in plan.escalated),
        frozenset(f.id for f in plan.renotify),
        frozenset(r.finding_id for r in plan.resolved),
    )


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _lost_note(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return (
        f"Earlier alerts may not have arrived (alert {shown}): delivery was given up. What they told is sent again "
        "as new."
    )


def _item_id(run_id: str, channel: str, part: str) -> str:
    return f"{run_id}.{channel}.{part}"


class Notifier:
    """Sends a run's alerts to Teams and by e-mail, through the outbox, exactly once per finding event."""

    def __init__(
        self,
        settings: Settings,
        store: AlertStore | None = None,
        mail: MailTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        now: Callable[[], datetime] | datetime | None = None,
        *,
        on_delivered: OnDelivered | None = None,
        retry: RetryPolicy | None = None,
        timeout_s: float = 30.0,
        evaluated_scope: EvaluatedScope | None = None,
    ) -> None:
        self.settings = settings
        self.store: AlertStore = store if store is not None else MemoryOutbox()
        self.persistent = store is not None
        self.mail = mail
        self.http_client = http_client
        self.sleep = sleep
        if isinstance(now, datetime):
            fixed = now
            self._now: Callable[[], datetime] = lambda: fixed
        else:
            self._now = now or utcnow
        self.on_delivered = on_delivered
        self.retry = retry or RetryPolicy()
        self.timeout_s = timeout_s
        self.evaluated_scope = evaluated_scope
        self._tenant = ""

    # ------------------------------------------------------------------ the run

    async def run(
        self, report: AuditReport, notify: bool = True, *, notes: Sequence[str] = (), news: bool = False
    ) -> DeliveryResult:
        """Replay the outbox, then plan, queue, commit and deliver this run's alerts. ``notes`` go into every digest
        of the run; with ``news`` they make a digest even when no finding is news (licensing.suppressions)."""
        result = DeliveryResult()
        run_id = report.run.id
        tenant_id = report.run.tenant_id
        async with AsyncExitStack() as stack:
            client = self.http_client
            if client is None and self.settings.teams_enabled:
                client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
            down: set[str] = set()  # channels that failed with a retryable error in this run

            waiting = self._list_outbox()
            earlier = sorted((i for i in waiting if i.run_id != run_id), key=lambda i: (i.created_at, i.id))
            mine = [i for i in waiting if i.run_id == run_id]  # left by an earlier attempt of this same run
            self._tenant = tenant_id
            for item in earlier:
                await self._deliver(item, client, result, down, replay=True)
            # Dead items (given up, or twice of unknown outcome) that no later message has told about yet: the next
            # message on their channel says they may not have arrived, and goes out for that alone (issue 27).
            lost = self._untold_dead() if self.persistent else {}

            sending = notify and (self.settings.teams_enabled or self.settings.mail_enabled)
            now = self._now()
            states = self.store.alert_states(tenant_id) if self.persistent else {}
            scope = self.evaluated_scope or EvaluatedScope.from_report(report)
            plan = plan_alerts(report, states, self.settings, now, evaluated_scope=scope, notify=sending)
            result.plan = plan

            items = self._items(report, plan, now, tuple(notes), news, lost) if sending else []
            for item in items:
                self.store.outbox_put(item)
                result.queued.append((item.channel, item.id))
                telemetry.delivery(item.channel, "queued")

            if self.persistent:
                committed: list[AlertPlan] = []

                def change(fresh: dict[str, AlertState]) -> Sequence[AlertState]:
                    # Re-planned on every ETag conflict, against what the store holds now.
                    replanned = plan_alerts(report, fresh, self.settings, now, evaluated_scope=scope, notify=sending)
                    committed.append(replanned)
                    return replanned.next_states

                self.store.update_alert_states(tenant_id, change)
                if committed and _announces(committed[-1]) != _announces(plan):
                    # Another run committed first (our read of the state was stale): send what the committed
                    # state says is news, not what the stale plan said. Same ids, so the outbox rows are replaced.
                    plan = result.plan = committed[-1]
                    fresh_items = self._items(report, plan, now, tuple(notes), news, lost) if sending else []
                    kept = {(i.channel, i.id) for i in fresh_items}
                    for item in items:
                        if (item.channel, item.id) not in kept:
                            self.store.outbox_delete(item)
                    for item in fresh_items:
                        self.store.outbox_put(item)
                    items = fresh_items
                    result.queued = [(i.channel, i.id) for i in items]

            todo = {(i.channel, i.id): i for i in mine}
            todo.update({(i.channel, i.id): i for i in items})
            for item in sorted(
                todo.values(), key=lambda i: (CHANNELS.index(i.channel) if i.channel in CHANNELS else 9, i.id)
            ):
                await self._deliver(item, client, result, down, replay=False)

        self._record_depth()
        return result

    async def deliver_items(self, items: Sequence[OutboxItem]) -> DeliveryResult:
        """Queue and deliver one-off items (a plan's answer, licensing.alerts.notice) through the outbox, under
        the same rules as digests; no alert state is involved."""
        result = DeliveryResult()
        async with AsyncExitStack() as stack:
            client = self.http_client
            if client is None and any(i.channel == Channel.TEAMS for i in items) and self.settings.teams_enabled:
                client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
            down: set[str] = set()
            for item in items:
                self.store.outbox_put(item)
                result.queued.append((item.channel, item.id))
                telemetry.delivery(item.channel, "queued")
            for item in items:
                await self._deliver(item, client, result, down, replay=False)
        self._record_depth()
        return result

    # ------------------------------------------------------------------ building

    def _items(
        self,
        report: AuditReport,
        plan: AlertPlan,
        now: datetime,
        notes: tuple[str, ...] = (),
        news: bool = False,
        lost: Mapping[str, Sequence[str]] | None = None,
    ) -> list[OutboxItem]:
        run_id = report.run.id
        items: list[OutboxItem] = []
        s = self.settings
        # The findings a message carries: when it dies they are due again (capped: past it, re-notification).
        carried = tuple(f.id for f in plan.findings)[:MAX_CARRIED]

        def digest_for(channel: str, *, critical_only: bool = False) -> tuple[Any, tuple[str, ...]]:
            told = tuple((lost or {}).get(channel, ()))
            extra = (_lost_note(told),) if told else ()
            digest = build_digest(
                report, plan, s, critical_only=critical_only, notes=(*extra, *notes), news=news or bool(told)
            )
            return digest, told

        # Each message shows its own outbox id, so a replayed "may have been delivered" send is recognisable.
        if s.teams_enabled:
            digest, told = digest_for("teams")
            if digest is not None:
                ref = _item_id(run_id, "teams", "digest")
                payload = teams_payload(replace(digest, reference=ref))
                items.append(OutboxItem(Channel.TEAMS, ref, run_id, payload, now, findings=carried, tells=told))
        if s.mail_enabled:
            if s.alert_mail_to:
                digest, told = digest_for("mail")
                if digest is not None:
                    ref = _item_id(run_id, "mail", "all")
                    message = build_message(replace(digest, reference=ref), s.alert_mail_to)
                    items.append(
                        OutboxItem(Channel.MAIL, ref, run_id, orjson.dumps(message), now, findings=carried, tells=told)
                    )
            if s.alert_mail_to_critical:
                critical, told = digest_for("mail", critical_only=True)
                if critical is not None:
                    ref = _item_id(run_id, "mail", "critical")
                    message = build_message(replace(critical, reference=ref), s.alert_mail_to_critical)
                    items.append(
                        OutboxItem(Channel.MAIL, ref, run_id, orjson.dumps(message), now, findings=carried, tells=told)
                    )
        return items

    def _untold_dead(self) -> dict[str, list[str]]:
        """Dead outbox items no later message has told about, by channel."""
        lost: dict[str, list[str]] = {}
        for item in self._list_outbox():
            if is_dead(item) and not item.lost_told:
                lost.setdefault(str(item.channel), []).append(item.id)
        return lost

    def _died(self, item: OutboxItem) -> None:
        """An item given up for good: the findings it carried are due again (never notified, so the next plan
        sends them as new), unless a later message told of them since."""
        if not item.findings or not self.persistent or not self._tenant:
            return
        wanted = frozenset(item.findings)
        sent_at = item.created_at

        def change(fresh: dict[str, AlertState]) -> Sequence[AlertState]:
            return [
                replace(state, last_notified=None, notified_severity=None)
                for fid, state in fresh.items()
                if fid in wanted
                and state.status == "open"
                and state.last_notified is not None
                and _aware(state.last_notified) <= _aware(sent_at)
            ]

        try:
            self.store.update_alert_states(self._tenant, change)
        except LicensingError as exc:
            log.error("alert %s is dead and its findings could not be made due again: %s", item.id, exc)
            return
        log.warning("alert %s is dead: its %d findings are due again", item.id, len(wanted))

    def _told(self, item: OutboxItem) -> None:
        """``item`` reached its channel and said these dead items may not have arrived: not said again."""
        if not item.tells:
            return
        try:
            for dead in self.store.outbox_list(item.channel):
                if dead.id in item.tells and not dead.lost_told:
                    self.store.outbox_put(replace(dead, lost_told=True))
        except LicensingError as exc:  # told again next time: better twice than never
            log.warning("could not record that %s told of lost alerts: %s", item.id, exc)

    # ------------------------------------------------------------------ delivering

    def _list_outbox(self) -> list[OutboxItem]:
        try:
            return list(self.store.outbox_list())
        except StorageError as exc:
            # The new run's alerts still go out; what waits in the outbox is tried next time.
            log.warning("could not read the alert outbox: %s", exc)
            return []

    async def _send(self, item: OutboxItem, client: httpx.AsyncClient | None) -> None:
        s = self.settings
        if item.channel == "teams":
            if not s.alert_teams_webhook_url or client is None:
                raise DeliveryError("ALERT_TEAMS_WEBHOOK_URL is not set", channel="teams", retryable=False)
            url = s.alert_teams_webhook_url.reveal()
            limiter = limiter_for("teams", url)

            async def attempt() -> None:
                await limiter.wait(self.sleep)
                await post_webhook(client, url, item.payload, timeout_s=self.timeout_s)

        elif item.channel == "mail":
            mailbox = s.alert_mail_from
            transport = self.mail
            if not mailbox or transport is None:
                raise DeliveryError(
                    "e-mail is not configured (ALERT_MAIL_FROM or the Graph client missing)",
                    channel="mail",
                    retryable=False,
                )
            try:
                message = orjson.loads(item.payload)
            except orjson.JSONDecodeError:
                raise DeliveryError("the queued e-mail is not valid JSON", channel="mail", retryable=False) from None
            limiter = limiter_for("mail", mailbox)

            async def attempt() -> None:
                await limiter.wait(self.sleep)
                await send_mail(transport, mailbox, message)

        else:
            raise DeliveryError(f"unknown alert channel {item.channel!r}", channel=item.channel, retryable=False)
        await with_retries(attempt, self.retry, self.sleep)

    async def _deliver(
        self,
        item: OutboxItem,
        client: httpx.AsyncClient | None,
        result: DeliveryResult,
        down: set[str],
        *,
        replay: bool,
    ) -> None:
        key = (item.channel, item.id)
        if is_dead(item):
            result.dead.append((*key, item.last_error or f"failed {item.attempts} times"))
            return
        if item.channel in down:
            result.failed.append((*key, "not tried: the channel failed earlier in this run"))
            return
        try:
            with telemetry.span("alerts.deliver", {"alert.channel": item.channel, "alert.replay": replay}):
                try:
                    await self._send(item, client)
                except DeliveryError:
                    raise
                except Exception as exc:  # a bug or a library surprise: an alert failure never fails the audit
                    raise DeliveryError(
                        f"delivery failed unexpectedly ({type(exc).__name__})", channel=item.channel, retryable=False
                    ) from exc
        except DeliveryOutcomeUnknownError as exc:
            # Not retried in this run; kept, marked, and replayed at most once more (a second unknown is dead).
            error = redact_text(exc.message)
            if item.maybe_delivered:
                error = f"{DEAD_MARK}{MAYBE_MARK}twice; not sent again: {error}"
            else:
                error = f"{MAYBE_MARK}{error}"
            log.warning(
                "alert %s on %s may have been delivered; not retried in this run: %s", item.id, item.channel, error
            )
            telemetry.delivery(item.channel, "failed")  # the metric's outcomes stay queued|delivered|replayed|failed
            down.add(item.channel)
            self._record_failure(replace(item, maybe_delivered=True), error)
            (result.dead if error.startswith(DEAD_MARK) else result.failed).append((*key, error))
            if error.startswith(DEAD_MARK):
                self._died(item)
            return
        except DeliveryError as exc:
            error = redact_text(exc.message)
            attempts = item.attempts + 1
            if attempts >= MAX_ATTEMPTS:
                error = f"{DEAD_MARK}gave up after {attempts} attempts: {error}"
            log.warning("alert %s on %s not delivered (attempt %d): %s", item.id, item.channel, attempts, error)
            telemetry.delivery(item.channel, "failed")
            if exc.retryable:
                down.add(item.channel)
            self._record_failure(item, error)
            (result.dead if attempts >= MAX_ATTEMPTS else result.failed).append((*key, error))
            if attempts >= MAX_ATTEMPTS:
                self._died(item)
            return
        telemetry.delivery(item.channel, "replayed" if replay else "delivered")
        result.sent.append(key)
        if replay:
            result.replayed.append(key)
        try:
            self.store.outbox_delete(item)
        except StorageError as exc:  # delivered; the next run may send it once more, which beats losing it
            log.error("alert %s delivered but not removed from the outbox: %s", item.id, exc)
        self._told(item)
        if self.on_delivered is not None:
            try:
                self.on_delivered(item.channel, item.id, item.payload)
            except Exception:  # a observer's bug must not turn a delivered alert into a failed run
                log.exception("the on_delivered callback failed for %s", item.id)

    def _record_failure(self, item: OutboxItem, error: str) -> None:
        try:
            self.store.outbox_record_failure(item, error)
        except LicensingError as exc:
            log.error("could not record the failed delivery of %s: %s", item.id, exc)

    def _record_depth(self) -> None:
        try:
            waiting = self.store.outbox_list()
        except StorageError:
            return
        for channel in CHANNELS:
            telemetry.outbox_depth(channel, sum(1 for i in waiting if i.channel == channel))
