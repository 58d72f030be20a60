"""licensing.costs and SKU_PRICES: the cost of unused, reclaimable and missing seats, only where a price is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from licensing.alerts import build_digest, plan_alerts
from licensing.costs import cost_lines, price_table, totals_text
from licensing.errors import ConfigurationError
from licensing.report.html import render_html
from licensing.settings import load_settings
from tests.factories import sku_summary
from tests.unit.alerts_support import report, seat_shortage, settings
from tests.unit.alerts_support import sku_summary as short_sku


def test_prices_as_pairs_or_a_csv_file(tmp_path: Path) -> None:
    s = load_settings({"SKU_PRICES": "SPE_E3=36, ems = 10.60", "SKU_PRICE_CURRENCY": "eur"})
    assert (s.sku_prices, s.sku_price_currency) == ((("SPE_E3", 36.0), ("ems", 10.6)), "EUR")
    sheet = tmp_path / "prices.csv"
    sheet.write_text("sku,price\nSPE_E5,57.00\n05e9a617-0261-4cee-bb44-138d3ef5d965,36\n", encoding="utf-8")
    assert load_settings({"SKU_PRICES": str(sheet)}).sku_prices == (
        ("SPE_E5", 57.0),
        ("05e9a617-0261-4cee-bb44-138d3ef5d965", 36.0),
    )


@pytest.mark.parametrize("raw", ["SPE_E3=thirty", "SPE_E3=-1", "SPE_E3=nan", "SPE_E3", "/no/such/prices.csv", "A B=1"])
def test_a_price_that_is_not_a_number_is_one_line(raw: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"SKU_PRICES": raw})
    assert "SKU_PRICES" in str(caught.value) and "\n" not in str(caught.value)


def test_cost_lines_price_only_what_has_a_price() -> None:
    skus = [
        sku_summary(sku_part_number="SPE_E3", enabled=100, consumed=90, available=10, reclaimable=4),
        short_sku(enabled=100, consumed=100),  # ENTERPRISEPACK: 12 waiting, 0 free
        sku_summary(sku_id="other", sku_part_number="FLOW_FREE", enabled=10, consumed=0, available=10),
    ]
    lines = cost_lines(skus, price_table([("spe_e3", 36.0), ("ENTERPRISEPACK", 20.0)]))
    assert [(c.unused, c.reclaimable, c.needed) for c in lines] == [(10, 4, 0), (0, 0, 12)]
    assert (lines[0].unused_cost, lines[0].reclaim_cost, lines[1].needed_cost) == (360.0, 144.0, 240.0)
    assert totals_text(lines, "USD") == (
        "Per month, at your SKU_PRICES: 360.00 USD of unused seats, 144.00 USD reclaimable, "
        "240.00 USD to buy for the shortage"
    )
    assert totals_text([], "USD") is None, "no price, no cost"


def test_digests_and_the_report_show_the_cost_only_with_prices() -> None:
    findings = [seat_shortage()]
    rep = report(findings, skus=[short_sku(enabled=100, consumed=100)])
    for env, shown in (({}, False), ({"SKU_PRICES": "ENTERPRISEPACK=20"}, True)):
        s = settings(**env)
        digest = build_digest(rep, plan_alerts(rep, {}, s, rep.run.started_at), s)
        assert digest is not None and (digest.cost is not None) is shown
        html = render_html(rep, prices=s.sku_prices, currency=s.sku_price_currency)
        assert ('id="cost-table"' in html) is shown
    assert "240.00 USD to buy for the shortage" in (digest.cost or "")
    assert 'id="cost-table"' not in render_html(report([], skus=[]), prices=(("X", 1.0),))
