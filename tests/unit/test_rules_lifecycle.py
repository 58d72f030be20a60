"""subscription_renewal: trials, subscriptions in trouble and watched SKUs near their next lifecycle date; rolling
paid subscriptions are not news. On Microsoft's List subscriptions example and on built cases."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from licensing.graph.parse import parse_subscription
from licensing.model import Sku, Subscription, TenantSnapshot
from licensing.rules import RuleContext, evaluate

FIXTURE = Path(__file__).resolve().parents[1] / "conformance" / "fixtures" / "directory-list-subscriptions.json"
NOW = datetime(2026, 12, 2, 2, 0, tzinfo=UTC)
E3 = Sku("6fd2c87f-b296-42f0-b197-1e91e994b900", "ENTERPRISEPACK", enabled=10, consumed=1)


def renewals(subs: tuple[Subscription, ...], *, read: bool = True, **ctx: object) -> list[str]:
    snap = TenantSnapshot(tenant_id="t", skus=(E3,), subscriptions=subs, subscriptions_read=read, read_at=NOW)
    ev = evaluate(snap, RuleContext(now=NOW, expected_group_skus=(), **ctx))  # type: ignore[arg-type]
    return [f.message for f in ev.findings if f.kind == "subscription_renewal"]


def sub(**fields: object) -> Subscription:
    base: dict[str, object] = {"id": "s1", "sku_id": E3.sku_id, "next_lifecycle": NOW + timedelta(days=10)}
    base.update(fields)
    return Subscription(**base)  # type: ignore[arg-type]


def test_microsofts_example_parses_and_a_paid_enabled_subscription_is_not_news() -> None:
    [item] = orjson.loads(FIXTURE.read_bytes())["value"]
    parsed = parse_subscription(item)
    assert parsed is not None
    assert (parsed.status, parsed.is_trial, parsed.total_licenses) == ("Enabled", False, 25)
    assert parsed.next_lifecycle == datetime(2023, 2, 1, tzinfo=UTC)
    soon = replace(parsed, sku_id=E3.sku_id, next_lifecycle=NOW + timedelta(days=5))
    assert renewals((soon,)) == [], "month-to-month renewal"
    assert len(renewals((soon,), renewal_watch_skus=("ENTERPRISEPACK",))) == 1, "unless the SKU is watched"


@pytest.mark.parametrize(
    ("subscription", "found"),
    [
        (sub(is_trial=True), True),
        (sub(status="Warning"), True),
        (sub(status="Suspended"), True),
        (sub(is_trial=True, next_lifecycle=NOW + timedelta(days=31)), False),  # beyond RENEWAL_WARN_DAYS
        (sub(is_trial=True, next_lifecycle=NOW - timedelta(days=1)), False),  # already past
        (sub(status="LockedOut"), False),  # past renewing: units_expiring covers it
        (sub(), False),
    ],
)
def test_which_subscriptions_are_news(subscription: Subscription, found: bool) -> None:
    assert bool(renewals((subscription,))) is found


def test_the_message_names_the_product_the_date_and_why() -> None:
    [message] = renewals((sub(is_trial=True, total_licenses=25), sub(id="s2", is_trial=True)))
    assert message.startswith(
        "A subscription of Office 365 E3 (25 seats, a trial) reaches its next lifecycle date on 2026-12-12"
    )


def test_not_evaluated_without_the_subscriptions() -> None:
    snap = TenantSnapshot(tenant_id="t", skus=(E3,), read_at=NOW)
    ev = evaluate(snap, RuleContext(now=NOW))
    [outcome] = [o for o in ev.outcomes if o.rule_id == "subscription_renewal"]
    assert outcome.status == "not_evaluated" and "Organization.Read.All" in (outcome.reason or "")
