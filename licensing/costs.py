"""The monthly cost of seats, from the prices an admin supplies (``SKU_PRICES``): unused seats, seats that can be
reclaimed, and the seats a shortage needs. Graph has no prices, so a SKU without one has no cost, never a guess."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from licensing.model import SkuSummary

__all__ = ["CostLine", "cost_lines", "price_table", "totals_text"]


@dataclass(frozen=True, slots=True)
class CostLine:
    sku_id: str
    product: str
    price: float  # per seat and month
    unused: int  # free seats (enabled - consumed, when positive)
    reclaimable: int
    needed: int

    @property
    def unused_cost(self) -> float:
        return self.unused * self.price

    @property
    def reclaim_cost(self) -> float:
        return self.reclaimable * self.price

    @property
    def needed_cost(self) -> float:
        return self.needed * self.price


def price_table(prices: Iterable[tuple[str, float]]) -> dict[str, float]:
    """``SKU_PRICES`` keyed for lookup: part numbers case-insensitively, skuIds lowercase."""
    return {sku.casefold(): price for sku, price in prices}


def cost_lines(skus: Sequence[SkuSummary], prices: Mapping[str, float]) -> list[CostLine]:
    """One line per priced SKU of the report (a price for a SKU the report has not is left out)."""
    out = []
    for s in skus:
        price = prices.get(s.sku_id.casefold(), prices.get(s.sku_part_number.casefold()))
        if price is None:
            continue
        out.append(CostLine(s.sku_id, s.product_name, price, max(s.available, 0), s.reclaimable, s.needed))
    return out


def money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def totals_text(lines: Sequence[CostLine], currency: str) -> str | None:
    """ "Per month: 1,234.00 USD of unused seats, 456.00 USD reclaimable, 789.00 USD to buy for the shortage" """
    if not lines:
        return None
    unused = sum(line.unused_cost for line in lines)
    reclaim = sum(line.reclaim_cost for line in lines)
    needed = sum(line.needed_cost for line in lines)
    parts = [f"{money(unused, currency)} of unused seats", f"{money(reclaim, currency)} reclaimable"]
    if needed:
        parts.append(f"{money(needed, currency)} to buy for the shortage")
    return "Per month, at your SKU_PRICES: " + ", ".join(parts)
