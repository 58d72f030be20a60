"""The digest of one run for one audience: what the Teams card and the e-mail show, before rendering.

A digest groups the findings an admin acts on: the SKUs short of seats first, then the groups with
B2B members, nested groups and license errors with the affected users named, then the rest, and a
short "resolved" section. Strings here are plain (unescaped); the renderers escape for their target
and trim the lists to their size budgets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from licensing import links
from licensing.alerts.policy import AlertPlan
from licensing.costs import cost_lines, price_table, totals_text
from licensing.kinds import SEAT_KINDS, SKU_SUBJECT_KINDS, spec
from licensing.model import AlertState, AuditReport, Finding, FindingKind, RunStatus, Severity, SkuSummary
from licensing.settings import Settings
from licensing.skus import product_name

__all__ = [
    "Block",
    "Digest",
    "Entry",
    "Limits",
    "ResolvedLine",
    "SeatRow",
    "Section",
    "build_digest",
    "plural",
]


def _titles(kind: str) -> tuple[str, str]:
    """(section title, noun for one subject) of a kind, from the catalogue; readable for an unknown kind."""
    entry = spec(kind)
    if entry is None:
        return kind.replace("_", " ").capitalize(), "finding"
    return entry.digest_title, entry.noun


def _section_rank(kind: str) -> int:
    entry = spec(kind)
    return entry.section if entry is not None else 99


def plural(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    if noun.endswith("y") and not noun.endswith("ay"):
        return f"{n} {noun[:-1]}ies"
    return f"{n} {noun}s"


@dataclass(frozen=True, slots=True)
class Limits:
    """How much of each list a renderer shows; the rest is summarised as "and N more"."""

    blocks: int = 10  # groups per section
    entries: int = 8  # users (or member groups) per group
    lines: int = 10  # standalone lines per section
    seat_rows: int = 15
    sections: int = 20


@dataclass(frozen=True, slots=True)
class Entry:
    """One affected object: a user, a member group, a SKU or a group, with an admin link when it has one."""

    text: str
    url: str | None = None
    detail: str | None = None  # the error, the product, or the finding's message
    label: str = "new"  # new | escalated | open
    severity: Severity = Severity.WARNING


@dataclass(frozen=True, slots=True)
class Block:
    """A licensing group and its affected members, for one kind."""

    group_id: str
    name: str
    url: str
    entries: tuple[Entry, ...]

    @property
    def new(self) -> int:
        return sum(1 for e in self.entries if e.label != "open")


@dataclass(frozen=True, slots=True)
class Section:
    kind: str
    title: str
    noun: str
    severity: Severity  # the highest of its findings
    remediation: str
    count: int
    blocks: tuple[Block, ...] = ()
    lines: tuple[Entry, ...] = ()


@dataclass(frozen=True, slots=True)
class SeatRow:
    sku_id: str
    product: str
    part_number: str
    enabled: int
    consumed: int
    available: int
    waiting: int
    severity: Severity


@dataclass(frozen=True, slots=True)
class ResolvedLine:
    kind: str
    title: str
    noun: str
    count: int
    severity: Severity


@dataclass(frozen=True, slots=True)
class Digest:
    """Everything one message shows. ``findings`` are those sent (for the CSV attachment)."""

    tenant_id: str
    tenant_name: str
    run_id: str
    started_at: datetime
    scope: str
    partial: bool
    cloud: str
    report_url: str | None
    critical_only: bool
    counts: Mapping[Severity, int]
    new: int
    escalated: int
    reminders: int
    seats: tuple[SeatRow, ...]
    sections: tuple[Section, ...]
    resolved: tuple[ResolvedLine, ...]
    findings: tuple[Finding, ...] = field(default=())
    excluded: int = 0
    cost: str | None = None  # the monthly cost line (SKU_PRICES), when prices are set
    # The outbox item id this message is sent as: shown in the card and mail, so that a replay of a send
    # whose outcome was unknown (docs/alerts.md, "At least once") is recognisable as the same message.
    reference: str = ""
    # Said before the findings: suppressions added, removed or hiding critical findings, alerts that may not have
    # arrived (issue 27). Plain text; the renderers escape it.
    notes: tuple[str, ...] = ()

    def run_line(self) -> str:
        """``Run … · 2026-11-24 02:30 UTC · scope tenant · alert <item id>``."""
        line = f"Run {self.run_id} · {self.started_at:%Y-%m-%d %H:%M} UTC · scope {self.scope}"
        return f"{line} · alert {self.reference}" if self.reference else line

    @property
    def tenant(self) -> str:
        return self.tenant_name or self.tenant_id

    @property
    def resolved_total(self) -> int:
        return sum(r.count for r in self.resolved)

    def count_text(self) -> str:
        """E.g. "2 critical, 5 warning" (severities with no finding left out), or "nothing open"."""
        order = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
        shown = ", ".join(f"{self.counts[s]} {s.value}" for s in order if self.counts.get(s))
        if shown:
            return shown
        # A message of notes alone is not an all-clear: it says nothing about what is open.
        return "notices, no new findings" if self.notes and not self.resolved else "nothing open"

    def headline(self) -> str:
        """One line for the card title and the mail subject (plain text)."""
        what = "Critical license alerts" if self.critical_only else "License audit"
        extra = []
        if self.new:
            extra.append(f"{self.new} new")
        if self.escalated:
            extra.append(f"{self.escalated} escalated")
        if self.resolved_total:
            extra.append(f"{self.resolved_total} resolved")
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{what} — {self.tenant}: {self.count_text()}{tail}"


_NEVER: Final = datetime.max.replace(tzinfo=UTC)


def _severity(f: Finding) -> Severity:
    return Severity(f.severity)


def _product(f: Finding) -> str:
    return f.product_name or product_name(f.sku_part_number, f.sku_id or "")


def _remediation(kind: str) -> str:
    entry = spec(kind)
    return entry.remediation if entry is not None else ""


def _entry(f: Finding, label: str, cloud: str) -> Entry:
    """How one finding shows inside its section."""
    sev = _severity(f)
    kind = f.kind
    if kind == FindingKind.NESTED_GROUP and f.member_group_id:
        return Entry(
            f.member_group_name or f.member_group_id, links.group_url(f.member_group_id, cloud), None, label, sev
        )
    if kind == FindingKind.LICENSE_ERROR and f.user_id:
        detail = f"{_product(f)}: {f.error or 'error'}" + (f", since {f.since:%Y-%m-%d}" if f.since else "")
        return Entry(f.user_name or f.user_id, links.user_url(f.user_id, cloud), detail, label, sev)
    if kind in (FindingKind.B2B_MEMBER, FindingKind.DISABLED_USER_LICENSED) and f.user_id:
        return Entry(f.user_name or f.user_id, links.user_url(f.user_id, cloud), None, label, sev)
    if kind in SKU_SUBJECT_KINDS:
        return Entry(_product(f), links.licenses_url(cloud), f.message, label, sev)
    if kind == FindingKind.REDUNDANT_DIRECT_ASSIGNMENT and f.user_id:
        return Entry(f.user_name or f.user_id, links.user_url(f.user_id, cloud), _product(f), label, sev)
    if f.group_id:
        return Entry(f.group_name or f.group_id, links.group_url(f.group_id, cloud), f.message, label, sev)
    return Entry(f.message, None, None, label, sev)


def _sections(findings: tuple[Finding, ...], labels: Mapping[str, str], cloud: str) -> tuple[Section, ...]:
    by_kind: dict[str, list[Finding]] = {}
    for f in findings:
        by_kind.setdefault(f.kind, []).append(f)
    out: list[Section] = []
    for kind in sorted(by_kind, key=lambda k: (_section_rank(k), k)):
        items = by_kind[kind]
        if kind == FindingKind.LICENSE_ERROR:
            # Who has waited longest comes first (lastUpdatedDateTime); a state without a time goes last.
            items = sorted(items, key=lambda f: (f.since is None, f.since or _NEVER))
        title, noun = _titles(kind)
        severity = max((_severity(f) for f in items), key=lambda s: s.rank)
        blocks: list[Block] = []
        lines: list[Entry] = []
        entry = spec(kind)
        if entry is not None and entry.per_group:
            groups: dict[str, list[Entry]] = {}
            names: dict[str, str] = {}
            for f in items:
                if not f.group_id:
                    lines.append(_entry(f, labels.get(f.id, "new"), cloud))
                    continue
                groups.setdefault(f.group_id, []).append(_entry(f, labels.get(f.id, "new"), cloud))
                names.setdefault(f.group_id, f.group_name or f.group_id)
            # Largest groups first: that is where the work is.
            for gid in sorted(groups, key=lambda g: (-len(groups[g]), names[g].casefold(), g)):
                blocks.append(Block(gid, names[gid], links.group_url(gid, cloud), tuple(groups[gid])))
        else:
            lines = [_entry(f, labels.get(f.id, "new"), cloud) for f in items]
        out.append(Section(kind, title, noun, severity, _remediation(kind), len(items), tuple(blocks), tuple(lines)))
    return tuple(out)


def _seat_rows(findings: tuple[Finding, ...], skus: tuple[SkuSummary, ...]) -> tuple[SeatRow, ...]:
    worst: dict[str, Severity] = {}
    for f in findings:
        if f.kind in SEAT_KINDS and f.sku_id:
            sev = _severity(f)
            if f.sku_id not in worst or worst[f.sku_id].rank < sev.rank:
                worst[f.sku_id] = sev
    rows = [
        SeatRow(
            s.sku_id,
            s.product_name or product_name(s.sku_part_number, s.sku_id),
            s.sku_part_number,
            s.enabled,
            s.consumed,
            s.available,
            s.waiting_users,
            worst[s.sku_id],
        )
        for s in skus
        if s.sku_id in worst
    ]
    rows.sort(key=lambda r: (-r.severity.rank, r.available, r.product.casefold()))
    return tuple(rows)


def _resolved(states: tuple[AlertState, ...]) -> tuple[ResolvedLine, ...]:
    counts: dict[str, list[AlertState]] = {}
    for s in states:
        counts.setdefault(s.kind, []).append(s)
    lines = []
    for kind in sorted(counts, key=lambda k: (_section_rank(k), k)):
        title, noun = _titles(kind)
        sev = max((Severity(s.severity) for s in counts[kind]), key=lambda v: v.rank)
        lines.append(ResolvedLine(kind, title, noun, len(counts[kind]), sev))
    return tuple(lines)


def build_digest(
    report: AuditReport,
    plan: AlertPlan,
    settings: Settings,
    *,
    critical_only: bool = False,
    notes: tuple[str, ...] = (),
    news: bool = False,
) -> Digest | None:
    """The digest of ``plan`` for one audience; None when that audience has nothing to hear. ``notes`` are shown in
    it; with ``news`` they are worth a message on their own (a suppression added or removed, an alert lost)."""
    labels = plan.labels()
    findings = plan.findings
    resolved = plan.resolved
    if critical_only:
        findings = tuple(f for f in findings if _severity(f) is Severity.CRITICAL)
        resolved = tuple(s for s in resolved if Severity(s.severity) is Severity.CRITICAL)
    if not findings and not resolved and not (news and notes):
        return None
    # Keep the report's order (severity, kind, subject): stable from night to night.
    order = {f.id: i for i, f in enumerate(report.findings)}
    findings = tuple(sorted(findings, key=lambda f: order.get(f.id, len(order))))
    counts = dict.fromkeys(Severity, 0)
    for f in findings:
        counts[_severity(f)] += 1
    tally = {"new": 0, "escalated": 0, "open": 0}
    for f in findings:
        tally[labels.get(f.id, "new")] += 1
    run = report.run
    return Digest(
        tenant_id=run.tenant_id,
        tenant_name=run.tenant_name,
        run_id=run.id,
        started_at=run.started_at,
        scope=run.scope.value if run.scope_id is None else f"{run.scope.value} {run.scope_id}",
        partial=run.status is RunStatus.PARTIAL,
        cloud=settings.graph_cloud,
        report_url=settings.alert_report_url,
        critical_only=critical_only,
        counts=counts,
        new=tally["new"],
        escalated=tally["escalated"],
        reminders=tally["open"],
        seats=_seat_rows(findings, report.skus),
        sections=_sections(findings, labels, settings.graph_cloud),
        resolved=_resolved(resolved),
        findings=findings,
        excluded=plan.excluded,
        cost=totals_text(cost_lines(report.skus, price_table(settings.sku_prices)), settings.sku_price_currency),
        notes=notes,
    )
