"""The seat trend charts of the HTML report: consumed and enabled seats per SKU over the stored history, drawn as
SVG server-side, with the forecast of when the seats run out."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from licensing.model import SkuDay
from licensing.rules.seats import MIN_FORECAST_POINTS, project_seats
from licensing.text import clean_text

__all__ = ["TrendChart", "nice_step", "trend_chart"]


@dataclass(frozen=True, slots=True)
class TrendChart:
    name: str
    part_number: str
    width: int
    height: int
    consumed_path: str
    consumed_area: str
    enabled_path: str
    projection_path: str | None
    marker: tuple[float, float] | None  # where the projection meets enabled
    marker_label: str | None
    alarm: bool  # a seat_forecast/seat_shortage finding for this SKU
    y_ticks: tuple[tuple[float, str], ...]
    x_labels: tuple[tuple[float, str, str], ...]  # x, text, anchor
    points: tuple[tuple[float, float, str], ...]  # consumed dots with a tooltip
    latest_consumed: int
    latest_enabled: int
    summary: str


def nice_step(span: float, target: int = 4) -> float:
    raw = max(span, 1e-9) / target
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return float(factor * magnitude)
    return float(10 * magnitude)


def trend_chart(
    sku_id: str,
    series: Sequence[SkuDay],
    name: str,
    part_number: str,
    forecast_days: int,
    alarm: bool,
) -> TrendChart | None:
    by_day = {d.day: d for d in sorted(series, key=lambda d: d.day)}
    if len(by_day) < 2:
        return None
    if all(d.enabled == 0 and d.consumed == 0 for d in by_day.values()):
        return None  # a SKU with no seats and no use has no trend worth a chart
    days = sorted(by_day)
    first, last = days[0], days[-1]
    projection = project_seats(list(by_day.values()), forecast_days)
    end = last
    if projection is not None:
        # Show the line up to where it meets the seats, but never more than one window ahead.
        end = last + timedelta(days=max(1, min(forecast_days, math.ceil(max(projection.days_left, 0)) + 2)))
    values = [float(by_day[d].consumed) for d in days] + [float(by_day[d].enabled) for d in days]
    proj_start = max(first, last - timedelta(days=forecast_days - 1))
    if projection is not None:
        values += [projection.value_at(proj_start), projection.value_at(end)]
    lo, hi = min(values), max(values)
    step = max(1.0, nice_step(hi - lo if hi > lo else max(hi, 10.0)))  # seats are whole numbers
    y_min = max(0.0, math.floor((lo - step * 0.5) / step) * step)
    y_max = math.ceil((hi + step * 0.3) / step) * step
    if y_max <= y_min:
        y_max = y_min + step
    width, height = 520, 220
    left, right, top, bottom = 52, 14, 16, 30
    plot_w, plot_h = width - left - right, height - top - bottom
    span_days = max(1, (end - first).days)

    def x(day: date) -> float:
        return round(left + (day - first).days / span_days * plot_w, 1)

    def y(value: float) -> float:
        clamped = min(max(value, y_min), y_max)
        return round(top + (1 - (clamped - y_min) / (y_max - y_min)) * plot_h, 1)

    consumed_pts = [(x(d), y(by_day[d].consumed)) for d in days]
    consumed_path = "M" + " L".join(f"{px},{py}" for px, py in consumed_pts)
    base = y(y_min)
    consumed_area = f"{consumed_path} L{consumed_pts[-1][0]},{base} L{consumed_pts[0][0]},{base} Z"
    # Enabled changes in steps (a purchase lands on a day): draw it as a step line.
    enabled_parts = [f"M{x(days[0])},{y(by_day[days[0]].enabled)}"]
    for prev, cur in itertools.pairwise(days):
        enabled_parts.append(f"L{x(cur)},{y(by_day[prev].enabled)} L{x(cur)},{y(by_day[cur].enabled)}")
    if end > last:
        enabled_parts.append(f"L{x(end)},{y(by_day[last].enabled)}")
    enabled_path = " ".join(enabled_parts)
    projection_path = marker = marker_label = None
    latest = by_day[last]
    if projection is not None:
        projection_path = (
            f"M{x(proj_start)},{y(projection.value_at(proj_start))} L{x(end)},{y(projection.value_at(end))}"
        )
        if projection.days_left <= forecast_days:
            when = projection.reaches_on
            marker = (x(min(when, end)), y(projection.enabled))
            marker_label = "full now" if projection.days_left <= 0 else f"full ~{when:%d %b}"
    step_ticks = []
    tick = y_min
    while tick <= y_max + 1e-9:
        step_ticks.append((y(tick), f"{tick:,.0f}"))
        tick += step
    x_labels = [(x(first), f"{first:%d %b}", "start"), (x(last), f"{last:%d %b}", "middle" if end > last else "end")]
    if end > last and (x(end) - x(last)) > 60:
        x_labels.append((x(end), f"{end:%d %b}", "end"))
    elif end > last:
        x_labels[-1] = (x(last), f"{last:%d %b}", "end")
    if projection is None:
        summary = "no rising trend" if len(by_day) >= MIN_FORECAST_POINTS else f"{len(by_day)} days of history"
    elif projection.days_left <= 0:
        summary = f"+{projection.slope:.1f}/day · at the limit now"
    elif projection.days_left <= forecast_days:
        left = math.ceil(projection.days_left)
        summary = f"+{projection.slope:.1f}/day · full in ~{left} day{'s' if left != 1 else ''}"
    else:
        summary = f"+{projection.slope:.1f}/day · not full within {forecast_days} days"
    points = tuple(
        (
            px,
            py,
            f"{d:%Y-%m-%d}: {by_day[d].consumed:,} of {by_day[d].enabled:,} consumed"
            + (f", {by_day[d].waiting:,} waiting" if by_day[d].waiting else ""),
        )
        for (px, py), d in zip(consumed_pts, days, strict=True)
    )
    return TrendChart(
        name=clean_text(name, 48),
        part_number=clean_text(part_number or sku_id, 48),
        width=width,
        height=height,
        consumed_path=consumed_path,
        consumed_area=consumed_area,
        enabled_path=enabled_path,
        projection_path=projection_path,
        marker=marker,
        marker_label=marker_label,
        alarm=alarm,
        y_ticks=tuple(step_ticks),
        x_labels=tuple(x_labels),
        points=points if len(points) <= 120 else (),
        latest_consumed=latest.consumed,
        latest_enabled=latest.enabled,
        summary=summary,
    )
