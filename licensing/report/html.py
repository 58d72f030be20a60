"""The self-contained HTML report: seat chart, SKU trends, filterable findings, run metadata, in one file.

Everything is inline (CSS, a small script, SVG charts drawn here on the server), so the file
opens from a mail attachment or a file share with no network access and works without
JavaScript (the script only adds the filters). Every tenant-controlled string goes through
jinja2's autoescaping; the one JSON block inside ``<script>`` is escaped by :func:`script_json`.
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from licensing.clock import utcnow
from licensing.costs import cost_lines, price_table, totals_text
from licensing.errors import LicensingError
from licensing.kinds import KIND_ORDER, SEAT_KINDS, spec
from licensing.links import group_url, licenses_url, user_url
from licensing.model import AuditReport, Finding, FindingKind, GroupSummary, Severity, SkuDay, SkuSummary
from licensing.report.seats import seat_state, users_unread
from licensing.report.trends import TrendChart, trend_chart
from licensing.rules.seats import Projection, project_seats
from licensing.suppressions import end_words
from licensing.templating import environment
from licensing.text import clean_text

if TYPE_CHECKING:
    import jinja2
    from markupsafe import Markup

__all__ = [
    "MAX_ROWS_PER_KIND",
    "Projection",
    "kind_info",
    "project_seats",
    "render_html",
    "script_json",
    "write_html",
]

# Rows rendered per finding kind (and groups listed). Beyond that the page names the total and
# points at the JSON/CSV, which carry everything: a 20,000-finding report stays a few MB.
MAX_ROWS_PER_KIND: Final = 2_000


_SEVERITIES: Final = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
# Invisible and reordering characters: licensing.text (one set for every output). <bdi> keeps RTL names in
# their own box.
_SCRIPT_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_UNSAFE: Final = re.compile("[<>&\u2028\u2029]")


def script_json(value: object) -> Markup:
    """JSON safe to place inside ``<script>``: ``<``, ``>``, ``&`` and U+2028/2029 escaped as ``\\uXXXX``."""
    from markupsafe import Markup

    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    # Markup only after every character that could end the script element or the JS string is escaped.
    return Markup(_SCRIPT_UNSAFE.sub(lambda m: _SCRIPT_ESCAPES[m.group(0)], text))  # noqa: S704


# ------------------------------------------------------------------------------ rule texts


@dataclass(frozen=True, slots=True)
class KindInfo:
    kind: str
    title: str
    remediation: str


def kind_info(kind: str) -> KindInfo:
    """Title and remediation of a finding kind from the catalogue; a readable fallback for an unknown kind."""
    entry = spec(kind)
    if entry is not None:
        return KindInfo(kind, entry.title, entry.remediation)
    return KindInfo(kind, kind.replace("_", " ").capitalize(), "")


def _product(part_number: str | None, sku_id: str | None) -> str:
    from licensing.skus import product_name

    return product_name(part_number, sku_id)


# ------------------------------------------------------------------------------ forecast


# ------------------------------------------------------------------------------ view models


@dataclass(frozen=True, slots=True)
class Link:
    text: str
    url: str | None
    title: str  # the full text (the link text may be trimmed)


@dataclass(frozen=True, slots=True)
class SeatRow:
    name: str
    full_name: str
    part_number: str
    state: str  # ok | low | short | idle
    enabled: int
    consumed: int
    free: int
    waiting: int
    waiting_read: bool
    warning: int
    suspended: int
    locked_out: int
    groups: int
    y: float
    bar_x: float
    consumed_w: float
    waiting_x: float
    waiting_w: float
    enabled_x: float


@dataclass(frozen=True, slots=True)
class SeatChart:
    rows: tuple[SeatRow, ...]
    width: int
    height: int
    label_w: int
    bar_w: int
    ticks: tuple[tuple[float, str], ...]


@dataclass(frozen=True, slots=True)
class FindingRow:
    severity: str
    kind: str
    message: str
    sku: str | None
    group: Link | None
    user: Link | None
    member_group: Link | None
    error: str | None
    suppressed: str | None = None  # "suppressed by … until …: reason", when a suppression covers it
    search: str = ""  # what the filter matches besides the row's text: SKU part number and ids


@dataclass(frozen=True, slots=True)
class KindSection:
    kind: str
    title: str
    remediation: str
    severity: str  # the highest among its findings
    total: int
    counts: tuple[tuple[str, int], ...]  # severity -> count
    rows: tuple[FindingRow, ...]

    @property
    def trimmed(self) -> int:
        return self.total - len(self.rows)


# ------------------------------------------------------------------------------ building


def _sev(value: object) -> Severity:
    try:
        return Severity(str(value))
    except ValueError:
        return Severity.INFO


def _fmt_dt(value: datetime | None) -> str:
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _fmt_duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return "—"
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _seat_chart(
    skus: Sequence[SkuSummary], sku_kinds: Mapping[str, set[str]], *, users_read: bool = True
) -> SeatChart | None:
    if not skus:
        return None
    if not users_read:  # who waits was not read: no waiting bar, no shortage from it; the table says "not read"
        skus = [replace(s, waiting_users=0) for s in skus]
    states = {s.sku_id: seat_state(s, sku_kinds.get(s.sku_id, set())) for s in skus}
    label_w, bar_w, right_w, row_h, top = 300, 470, 230, 46, 28
    width = label_w + bar_w + right_w

    def ratio(used: int, enabled: int) -> float:
        if enabled <= 0:
            return 1.25 if used > 0 else 0.0
        return used / enabled

    # Each bar is scaled to its own SKU (100 % = enabled), so a 10-seat add-on and a 5,000-seat E5
    # are equally legible; the axis stretches past 100 % only when something is over.
    top_ratio = max(ratio(s.consumed + s.waiting_users, s.enabled) for s in skus)
    domain = min(1.25, max(1.0, top_ratio))
    scale = bar_w / domain
    ordered = sorted(
        skus,
        key=lambda s: (
            {"short": 0, "low": 1, "ok": 2, "idle": 3}[states[s.sku_id]],
            -ratio(s.consumed, s.enabled),
            s.product_name.lower(),
        ),
    )
    rows = []
    for i, s in enumerate(ordered):
        consumed_r = min(domain, ratio(s.consumed, s.enabled))
        waiting_r = min(domain - consumed_r, ratio(s.waiting_users, s.enabled)) if s.waiting_users else 0.0
        full = clean_text(s.product_name or s.sku_part_number or s.sku_id, 200)
        rows.append(
            SeatRow(
                name=clean_text(full, 38),
                full_name=full,
                part_number=clean_text(s.sku_part_number, 40),
                state=states[s.sku_id],
                enabled=s.enabled,
                consumed=s.consumed,
                free=s.available,
                waiting=s.waiting_users,
                waiting_read=users_read,
                warning=s.warning,
                suspended=s.suspended,
                locked_out=s.locked_out,
                groups=len(s.assigned_by_groups),
                y=top + i * row_h,
                bar_x=label_w,
                consumed_w=round(consumed_r * scale, 1),
                waiting_x=round(label_w + consumed_r * scale, 1),
                waiting_w=round(max(3.0, waiting_r * scale), 1) if s.waiting_users else 0.0,
                enabled_x=round(label_w + min(1.0, domain) * scale, 1),
            )
        )
    ticks = tuple(
        (round(label_w + t * scale, 1), f"{round(t * 100)}%") for t in (0, 0.25, 0.5, 0.75, 1.0, 1.25) if t <= domain
    )
    return SeatChart(tuple(rows), width, top + len(rows) * row_h + 6, label_w, bar_w, ticks)


def _link(name: str | None, object_id: str | None, url: str | None) -> Link | None:
    if not object_id and not name:
        return None
    full = clean_text(name or object_id, 300)
    return Link(clean_text(full, 80), url, full if not object_id else f"{full} ({clean_text(object_id, 80)})")


def _finding_row(
    f: Finding, cloud: str, groups: Mapping[str, str], skus: Mapping[str, str], parts: Mapping[str, str]
) -> FindingRow:
    sku = None
    if f.sku_id or f.sku_part_number:
        sku = clean_text(f.product_name or skus.get(f.sku_id or "") or _product(f.sku_part_number, f.sku_id), 80)
    group = member = user = None
    if f.group_id:
        group = _link(f.group_name or groups.get(f.group_id), f.group_id, group_url(f.group_id, cloud))
    if f.member_group_id:
        member = _link(
            f.member_group_name or groups.get(f.member_group_id), f.member_group_id, group_url(f.member_group_id, cloud)
        )
    if f.user_id:
        user = _link(f.user_name, f.user_id, user_url(f.user_id, cloud))
    return FindingRow(
        severity=_sev(f.severity).value,
        kind=f.kind,
        message=clean_text(f.message, 600),
        sku=sku,
        group=group,
        user=user,
        member_group=member,
        error=clean_text(f.error, 80) if f.error else None,
        suppressed=_suppressed(f),
        search=" ".join(
            clean_text(v, 80)
            for v in (
                f.sku_part_number or parts.get(f.sku_id or ""),
                f.sku_id,
                f.group_id,
                f.user_id,
                f.member_group_id,
            )
            if v
        ),
    )


def _suppressed(f: Finding) -> str | None:
    mark = f.suppressed
    if mark is None:
        return None
    until = f" {end_words(mark.until)}" if mark.until else ""
    return clean_text(f"Suppressed by {mark.by}{until} ({mark.id}): {mark.reason}", 400)


def _sections(
    findings: Iterable[Finding],
    cloud: str,
    groups: Mapping[str, str],
    skus: Mapping[str, str],
    max_rows: int,
    parts: Mapping[str, str] | None = None,
) -> list[KindSection]:
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_kind[f.kind].append(f)
    sections = []
    for kind, items in by_kind.items():
        items.sort(
            key=lambda f: (
                -_sev(f.severity).rank,
                (f.group_name or "").lower(),
                (f.user_name or "").lower(),
                (f.product_name or f.sku_part_number or "").lower(),
                f.id,
            )
        )
        counts = Counter(_sev(f.severity) for f in items)
        info = kind_info(kind)
        sections.append(
            KindSection(
                kind=kind,
                title=info.title,
                remediation=info.remediation,
                severity=max(counts, key=lambda s: s.rank).value,
                total=len(items),
                counts=tuple((s.value, counts[s]) for s in _SEVERITIES if counts[s]),
                rows=tuple(_finding_row(f, cloud, groups, skus, parts or {}) for f in items[:max_rows]),
            )
        )
    sections.sort(key=lambda s: (-_sev(s.severity).rank, KIND_ORDER.get(s.kind, 99), s.kind))
    return sections


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return environment(
        Path(__file__).with_name("templates"), {"clean": clean_text, "num": lambda v: f"{v:,}"}, trim=True
    )


def render_html(
    report: AuditReport,
    *,
    history: Mapping[str, Sequence[SkuDay]] | None = None,
    cloud: str = "global",
    forecast_days: int = 30,
    max_rows_per_kind: int = MAX_ROWS_PER_KIND,
    generated_at: datetime | None = None,
    candidates: Mapping[str, Any] | None = None,
    prices: Sequence[tuple[str, float]] = (),
    currency: str = "USD",
) -> str:
    """The report as one self-contained HTML document (see the module docstring). ``candidates``: the
    Candidates section, as licensing.plan.candidates_document gives it (``run --candidates``); ``prices``:
    SKU_PRICES, for the cost table (none without them)."""
    run = report.run
    sku_names = {s.sku_id: s.product_name or _product(s.sku_part_number, s.sku_id) for s in report.skus}
    group_names = {g.id: g.display_name for g in report.groups}
    sku_kinds: dict[str, set[str]] = defaultdict(set)
    for f in report.findings:
        if f.sku_id and f.kind in SEAT_KINDS:
            sku_kinds[f.sku_id].add(f.kind)
    sku_parts = {s.sku_id: s.sku_part_number for s in report.skus if s.sku_part_number}
    sections = _sections(report.findings, cloud, group_names, sku_names, max_rows_per_kind, sku_parts)
    severity_counts = Counter(_sev(f.severity).value for f in report.findings)
    trends: list[TrendChart] = []
    if history:
        parts = {s.sku_id: s.sku_part_number for s in report.skus}
        for sku_id, series in history.items():
            alarm = bool(sku_kinds.get(sku_id, set()) & {FindingKind.SEAT_FORECAST, FindingKind.SEAT_SHORTAGE})
            chart = trend_chart(
                sku_id,
                series,
                sku_names.get(sku_id) or _product(parts.get(sku_id), sku_id),
                parts.get(sku_id, ""),
                forecast_days,
                alarm,
            )
            if chart is not None:
                trends.append(chart)
        trends.sort(
            key=lambda c: (
                not c.alarm,
                -(c.latest_consumed / c.latest_enabled if c.latest_enabled else 0),
                c.name.lower(),
            )
        )
    groups = sorted(report.groups, key=_group_sort_key)
    not_evaluated = [o for o in report.outcomes if o.status == "not_evaluated"]
    data = {
        "total": len(report.findings),
        "rendered": sum(len(s.rows) for s in sections),
        "severity": {s.value: severity_counts.get(s.value, 0) for s in _SEVERITIES},
        "kinds": {s.kind: {"title": s.title, "total": s.total, "rendered": len(s.rows)} for s in sections},
    }
    # Candidates name SKUs by part number; the report names products (the tenant's own names first).
    part_products = {s.sku_part_number: sku_names[s.sku_id] for s in report.skus if s.sku_part_number}
    template = _environment().get_template("report.html.j2")
    return template.render(
        run=run,
        tenant=clean_text(run.tenant_name or run.tenant_id, 120),
        status=run.status.value if hasattr(run.status, "value") else str(run.status),
        trigger=getattr(run.trigger, "value", str(run.trigger)),
        scope=getattr(run.scope, "value", str(run.scope)),
        started=_fmt_dt(run.started_at),
        finished=_fmt_dt(run.finished_at),
        duration=_fmt_duration(run.started_at, run.finished_at),
        generated=_fmt_dt(generated_at or utcnow()),
        severities=[s.value for s in _SEVERITIES],
        severity_counts={s.value: severity_counts.get(s.value, 0) for s in _SEVERITIES},
        total=len(report.findings),
        seat_chart=_seat_chart(report.skus, sku_kinds, users_read=not users_unread(report)),
        skus=report.skus,
        trends=trends,
        forecast_days=forecast_days,
        sections=sections,
        groups=groups[:max_rows_per_kind],
        groups_total=len(groups),
        group_links={g.id: group_url(g.id, cloud) for g in groups[:max_rows_per_kind]},
        sku_names=sku_names,
        not_evaluated=not_evaluated,
        licenses_url=licenses_url(cloud),
        max_rows=max_rows_per_kind,
        data_json=script_json(data),
        candidates=candidates,
        costs=(costs := cost_lines(report.skus, price_table(prices))),
        cost_total=totals_text(costs, currency),
        currency=currency,
        product_of=lambda part: part_products.get(part) or _product(part, None),
        candidate_links={
            c["group"]["id"]: group_url(c["group"]["id"], cloud) for c in (candidates or {}).get("groups", ())
        },
    )


def _group_sort_key(g: GroupSummary) -> tuple[int, str]:
    problems = g.license_errors + g.b2b_users + g.nested_groups
    return (-problems, g.display_name.lower())


def write_html(report: AuditReport, path: Path, **options: Any) -> Path:
    """Write :func:`render_html` (with its keyword ``options``) to ``path`` (UTF-8, parent folders created)."""
    text = render_html(report, **options)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LicensingError(f"cannot write the HTML report to {path}: {exc.strerror or exc}") from None
    return path
