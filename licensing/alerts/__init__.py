"""Alerts: the policy (what to send when), the Teams Adaptive Card, the e-mail, and the outbox delivery.

from licensing.alerts import plan_alerts, AlertPlan, Notifier, MailTransport, AlertStore
result = await Notifier(settings, store=store, mail=graph).run(report)
"""

from __future__ import annotations

from licensing.alerts.delivery import MailTransport, RetryPolicy
from licensing.alerts.digest import Digest, build_digest
from licensing.alerts.notifier import MAX_ATTEMPTS, AlertStore, DeliveryResult, MemoryOutbox, Notifier, is_dead
from licensing.alerts.policy import AlertPlan, EvaluatedScope, plan_alerts

__all__ = [
    "MAX_ATTEMPTS",
    "AlertPlan",
    "AlertStore",
    "DeliveryResult",
    "Digest",
    "EvaluatedScope",
    "MailTransport",
    "MemoryOutbox",
    "Notifier",
    "RetryPolicy",
    "build_digest",
    "is_dead",
    "plan_alerts",
]
