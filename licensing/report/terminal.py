"""The terminal output of ``licensing-audit``: run summary, seat table, findings by kind, progress, SKU history.

Rendered with ``rich``. On a terminal it uses colour (unless NO_COLOR is set); anywhere else
(a pipe, a file, a CI log) rich emits plain text with no ANSI codes, and the progress display
stays silent. Severity is always spelled out, never carried by colour alone. Tenant strings
are passed as :class:`rich.text.Text` (never parsed as markup) after control and bidi-override
characters are replaced, so a display name cannot restyle, move or hide the output.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Final

from licensing.kinds import KIND_ORDER, SKU_SUBJECT_KINDS, spec
from licensing.model import AuditReport, Finding, FindingKind, Severity, SkuDay, SkuSummary
from licensing.report.license_errors import sign_in_name
from licensing.report.progress import ProgressFn, progress_reporter  # re-exported: the CLI imports them here
from licensing.report.seats import seat_state, users_unread
from licensing.rules.seats import project_seats
from licensing.text import clean_text

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["ProgressFn", "progress_reporter", "render_history", "render_summary"]


_SEVERITIES: Final = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)
_STYLE: Final = {Severity.CRITICAL: "bold red", Severity.WARNING: "yellow", Severity.INFO: "cyan"}
_GROUPS_SHOWN: Final = 5  # groups listed per kind unless --verbose
_NAMES_SHOWN: Final = 6  # users (or member groups) named per group unless --verbose
_NAME_WIDTH: Final = 48
_SPARK: Final = "▁▂▃▄▅▆▇█"
_SPARK_ASCII: Final = "_.-=+*#@"


def _console(console: Console | None) -> Console:
    if console is not None:
        return console
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _text(value: object, limit: int | None = _NAME_WIDTH, style: str = "") -> Text:
    from rich.text import Text

    return Text(clean_text(value, limit), style=style)


def _sev(value: object) -> Severity:
    try:
        return Severity(str(value))
    except ValueError:
        return Severity.INFO


def _unicode(console: Console) -> bool:
    return (console.encoding or "").lower().replace("-", "").startswith("utf")


def _duration(start: datetime, end: datetime | None) -> str:
    if end is None:
        return "unfinished"
    seconds = max(0.0, (end - start).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _counts_line(findings: Sequence[Finding]) -> tuple[Counter[Severity], str]:
    counts = Counter(_sev(f.severity) for f in findings)
    parts = ", ".join(f"{counts[s]:,} {s.value}" for s in _SEVERITIES)
    return counts, f"{_plural(len(findings), 'finding')} ({parts})"


def render_summary(
    report: AuditReport,
    *,
    console: Console | None = None,
    verbose: bool = False,
    quiet: bool = False,
    cost: str | None = None,
) -> None:
    """Print the run's summary: one line with ``quiet``; every finding with ``verbose``."""
    from rich.text import Text

    out = _console(console)
    run = report.run
    counts, counts_text = _counts_line(report.findings)
    status = getattr(run.status, "value", str(run.status))
    tenant = clean_text(run.tenant_name or run.tenant_id, 60)
    nothing = _nothing_to_audit(report)
    if quiet:
        said = nothing or counts_text
        line = Text(f"{status}: {said} · {tenant} · run {clean_text(run.id, 60)}")
        out.print(line, soft_wrap=True)
        return

    header = Text()
    header.append("License audit ", style="bold")
    header.append(tenant, style="bold")
    header.append(f"  {status}", style={"succeeded": "green", "partial": "yellow"}.get(status, "red"))
    header.append(
        f"  run {clean_text(run.id, 60)} · {getattr(run.scope, 'value', run.scope)} · "
        f"{_duration(run.started_at, run.finished_at)} · {run.graph_requests:,} Graph requests"
        + (f" ({run.graph_throttled:,} throttled)" if run.graph_throttled else ""),
        style="dim",
    )
    out.print(header, soft_wrap=True)
    badges = Text()
    for s in _SEVERITIES:
        badges.append(f"{counts[s]:,} {s.value}", style=_STYLE[s] if counts[s] else "dim")
        badges.append("   ")
    badges.append(f"{len(report.findings):,} findings in total", style="dim")
    suppressed = sum(1 for f in report.findings if f.suppressed is not None)
    if suppressed:
        badges.append(f" ({suppressed:,} suppressed: reported, not alerted)", style="dim")
    out.print(badges, soft_wrap=True)
    if cost:
        out.print(Text(cost, style="dim"), soft_wrap=True)

    if run.errors:
        out.print(Text(f"This run reported {_plural(len(run.errors), 'problem')}:", style="yellow"))
        shown = run.errors if verbose else run.errors[:5]
        for error in shown:
            out.print(Text("  - ").append_text(_text(error, 300)), soft_wrap=True)
        if len(shown) < len(run.errors):
            out.print(Text(f"  … and {len(run.errors) - len(shown):,} more (--verbose lists all)", style="dim"))
    if nothing:
        out.print(Text(nothing, style="yellow"), soft_wrap=True)
        return
    # One line per reason: a part that was not read makes many kinds not evaluated for the same cause.
    reasons: dict[str, list[str]] = defaultdict(list)
    for outcome in report.outcomes:
        if outcome.status == "not_evaluated":
            reasons[outcome.reason or ""].append(outcome.rule_id)
    for reason, kinds in reasons.items():
        line = Text("not evaluated: ", style="yellow").append_text(_text(", ".join(kinds), 600))
        if reason:
            line.append(": ").append_text(_text(reason, 300))
        out.print(line, soft_wrap=True)

    if report.skus:
        out.print()
        out.print(_seat_table(report.skus, report.findings, out, users_read=not users_unread(report)))
    _render_findings(report.findings, out, verbose=verbose)


def _nothing_to_audit(report: AuditReport) -> str | None:
    """A group-scoped run of a group that assigns no licence: every kind is not evaluated for that one reason
    (licensing.rules.registry, "group <id> assigns no license: …"); said once, with what to run instead."""
    gid = report.run.scope_id
    if getattr(report.run.scope, "value", report.run.scope) != "group" or not gid or report.findings:
        return None
    reasons = {o.reason for o in report.outcomes if o.status == "not_evaluated"}
    evaluated = [o for o in report.outcomes if o.status != "not_evaluated"]
    if evaluated or len(reasons) != 1 or not (reasons.pop() or "").startswith(f"group {gid} assigns no license"):
        return None
    group = clean_text(gid, 60)
    return (
        f"group {group} assigns no licence: nothing to audit; `licensing-audit plan --group {group} --sku …` says "
        "whether it may be licensed"
    )


def _bar(used: int, enabled: int, waiting: int, width: int, unicode: bool) -> str:
    full, empty, wait = ("█", "░", "▒") if unicode else ("#", ".", "!")
    if enabled <= 0:
        return (full * width) if used > 0 else (empty * width)
    filled = min(width, round(used / enabled * width))
    if used > 0 and filled == 0:
        filled = 1
    waits = min(width - filled, round(waiting / enabled * width)) if waiting else 0
    if waiting and waits == 0 and filled < width:
        waits = 1
    return full * filled + wait * waits + empty * (width - filled - waits)


def _seat_table(
    skus: Sequence[SkuSummary], findings: Sequence[Finding], console: Console, *, users_read: bool = True
) -> object:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    kinds: dict[str, set[str]] = defaultdict(set)
    for f in findings:
        if f.sku_id:
            kinds[f.sku_id].add(f.kind)
    unicode = _unicode(console)
    bar_width = max(8, min(20, console.width - 70))
    table = Table(title="Seats", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("Product", overflow="fold", min_width=18)
    for name in ("Enabled", "Used", "Free", "Waiting"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("Usage", no_wrap=True)
    order = {"short": 0, "low": 1, "ok": 2}
    # The terminal draws an idle SKU (nothing enabled, nothing used) like an ok one.
    states = {
        s.sku_id: state if (state := seat_state(s, kinds[s.sku_id], users_read=users_read)) != "idle" else "ok"
        for s in skus
    }
    for s in sorted(skus, key=lambda s: (order[states[s.sku_id]], (s.product_name or "").lower())):
        state = states[s.sku_id]
        style = {"short": "red", "low": "yellow", "ok": "green"}[state]
        pct = f"{s.consumed / s.enabled:4.0%}" if s.enabled > 0 else ("over" if s.consumed else "   -")
        waiting = s.waiting_users if users_read else 0
        usage = Text(_bar(s.consumed, s.enabled, waiting, bar_width, unicode), style=style)
        usage.append(f" {pct}")
        if state != "ok":
            usage.append(f" {state}", style=style)
        table.add_row(
            _text(s.product_name or s.sku_part_number or s.sku_id, 40),
            f"{s.enabled:,}",
            f"{s.consumed:,}",
            Text(f"{s.available:,}", style="red" if s.available < 0 else ""),
            Text(f"{s.waiting_users:,}", style="red" if s.waiting_users else "dim")
            if users_read
            else Text("not read", style="yellow"),
            usage,
        )
    return table


def _subject_name(name: str | None, object_id: str | None) -> str:
    return clean_text(name or object_id or "?", _NAME_WIDTH)


def _line_key(f: Finding, *, by_product: bool) -> str:
    """The summary line a finding is listed on: its product's (redundant direct assignments) or its group's."""
    if by_product:
        return clean_text(f.product_name or f.sku_part_number or f.sku_id or "?", _NAME_WIDTH)
    return _subject_name(f.group_name, f.group_id)


def _namesakes(items: Sequence[Finding], *, by_product: bool) -> dict[str, set[str]]:
    """Per line, the display names that more than one of its users carries (common in large tenants: two Amara
    Shermans)."""
    seen: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for f in items:
        if f.user_id and f.user_name:
            seen[_line_key(f, by_product=by_product)][f.user_name].add(f.user_id)
    return {line: {n for n, ids in names.items() if len(ids) > 1} for line, names in seen.items()}


def _user_label(f: Finding, namesakes: set[str]) -> str:
    """The user's display name; for a name several users of the line share, with their sign-in name (or the start
    of their object id), so that a line never reads "Adele Robbins, Adele Robbins" (issue 30, item 6)."""
    name = _subject_name(f.user_name, f.user_id)
    if f.user_name not in namesakes:
        return name
    upn = sign_in_name(f)
    return f"{name} ({clean_text(upn, 64)})" if upn else f"{name} (id {(f.user_id or '?')[:8]})"


def _render_findings(findings: Sequence[Finding], out: Console, *, verbose: bool) -> None:
    from rich.text import Text

    if not findings:
        out.print()
        out.print(Text("No findings: every check that ran passed.", style="green"))
        return
    by_kind: dict[str, list[Finding]] = defaultdict(list)
    for f in findings:
        by_kind[f.kind].append(f)

    def kind_key(kind: str) -> tuple[int, int, str]:
        top = max(_sev(f.severity).rank for f in by_kind[kind])
        return (-top, KIND_ORDER.get(kind, 99), kind)

    trimmed_any = False
    for kind in sorted(by_kind, key=kind_key):
        items = sorted(by_kind[kind], key=lambda f: (-_sev(f.severity).rank, (f.group_name or "").lower(), f.id))
        top = _sev(items[0].severity)
        counts = Counter(_sev(f.severity) for f in items)
        out.print()
        title = Text()
        title.append(f"{top.value.upper():8} ", style=_STYLE[top])
        entry = spec(kind)
        title.append(entry.title if entry else kind.replace("_", " ").capitalize(), style="bold")
        title.append("  " + ", ".join(f"{counts[s]:,} {s.value}" for s in _SEVERITIES if counts[s]), style="dim")
        out.print(title, soft_wrap=True)
        if verbose:
            for f in items:
                line = Text("  - ")
                if len(counts) > 1:
                    line.append(f"[{_sev(f.severity).value}] ", style=_STYLE[_sev(f.severity)])
                line.append_text(_text(f.message, 400))
                out.print(line, soft_wrap=True)
            continue
        trimmed_any |= _render_kind_digest(kind, items, out)
    if trimmed_any:
        out.print()
        out.print(
            Text("Lists are trimmed; --verbose prints every finding, --json/--csv/--html write them all.", style="dim")
        )


def _render_kind_digest(kind: str, items: Sequence[Finding], out: Console) -> bool:
    """The affected subjects of one kind, trimmed; True when something was left out."""
    from rich.text import Text

    trimmed = False
    if kind == FindingKind.LICENSE_ERROR:
        from licensing.report.license_errors import license_error_lines

        lines, trimmed = license_error_lines(items, groups_shown=_GROUPS_SHOWN, users_shown=_NAMES_SHOWN)
        for indent, text, style in lines:
            out.print(Text(" " * indent).append(text, style=style), soft_wrap=True)
        return trimmed
    if kind in SKU_SUBJECT_KINDS or not any(f.group_id or f.user_id for f in items):
        for f in items[:_GROUPS_SHOWN]:
            out.print(Text("  - ").append_text(_text(f.message, 300)), soft_wrap=True)
        if len(items) > _GROUPS_SHOWN:
            out.print(Text(f"  … and {len(items) - _GROUPS_SHOWN:,} more", style="dim"))
            trimmed = True
        return trimmed
    if kind == FindingKind.REDUNDANT_DIRECT_ASSIGNMENT:
        # No group in the subject: a user holds a SKU twice. Group the users by product.
        shared = _namesakes(items, by_product=True)
        buckets: dict[str, list[str]] = defaultdict(list)
        for f in items:
            product = _line_key(f, by_product=True)
            buckets[product].append(_user_label(f, shared.get(product, set())))
        label = "user"
    else:
        buckets = defaultdict(list)
        shared = _namesakes(items, by_product=False)
        for f in items:
            group = _line_key(f, by_product=False)
            if f.member_group_id:
                buckets[group].append(_subject_name(f.member_group_name, f.member_group_id))
            elif f.user_id:
                name = _user_label(f, shared.get(group, set()))
                buckets[group].append(f"{name} ({clean_text(f.error, 40)})" if f.error else name)
            else:
                buckets.setdefault(group, [])  # the group itself is the subject (empty, processing)
        label = "member group" if kind == FindingKind.NESTED_GROUP else "user"
    if all(not names for names in buckets.values()):
        groups = sorted(buckets, key=str.lower)
        line = Text("  ").append_text(_join(groups[:_NAMES_SHOWN]))
        if len(groups) > _NAMES_SHOWN:
            line.append(f" … and {len(groups) - _NAMES_SHOWN:,} more", style="dim")
            trimmed = True
        out.print(line, soft_wrap=True)
        return trimmed
    ordered = sorted(
        ((k, sorted(v, key=str.lower)) for k, v in buckets.items()), key=lambda kv: (-len(kv[1]), kv[0].lower())
    )
    for group, names in ordered[:_GROUPS_SHOWN]:
        line = Text("  ")
        line.append_text(_text(group, _NAME_WIDTH, style="bold"))
        line.append(f" ({_plural(len(names), label)}): ", style="dim")
        line.append_text(_join(names[:_NAMES_SHOWN]))
        if len(names) > _NAMES_SHOWN:
            line.append(f" … and {len(names) - _NAMES_SHOWN:,} more", style="dim")
            trimmed = True
        out.print(line, soft_wrap=True)
    if len(ordered) > _GROUPS_SHOWN:
        rest = sum(len(names) for _, names in ordered[_GROUPS_SHOWN:])
        out.print(Text(f"  … and {len(ordered) - _GROUPS_SHOWN:,} more ({rest:,} {label}s)", style="dim"))
        trimmed = True
    return trimmed


def _join(names: Sequence[str]) -> Text:
    from rich.text import Text

    text = Text()
    for i, name in enumerate(names):
        if i:
            text.append(", ")
        text.append(name)  # already cleaned; Text.append never parses markup
    return text


# ------------------------------------------------------------------------------ history


def _sparkline(series: Sequence[SkuDay], width: int, unicode: bool) -> str:
    """Consumed per day against that day's enabled seats: a full block is a day with no seat free."""
    blocks = _SPARK if unicode else _SPARK_ASCII
    ratios = [(d.consumed / d.enabled) if d.enabled > 0 else (1.0 if d.consumed else 0.0) for d in series]
    if len(ratios) > width:
        # Average into ``width`` buckets so a year still fits one line.
        step = len(ratios) / width
        ratios = [
            sum(ratios[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)])
            / max(1, len(ratios[int(i * step) : max(int((i + 1) * step), int(i * step) + 1)]))
            for i in range(width)
        ]
    top = len(blocks) - 1
    # The top block is reserved for "no seat free", so a nearly full SKU never looks full.
    return "".join(blocks[top] if r >= 1 else blocks[min(top - 1, max(0, int(r * top)))] for r in ratios)


def render_history(
    history: Mapping[str, Sequence[SkuDay]],
    product_names: Mapping[str, str],
    console: Console,
    *,
    forecast_days: int = 30,
) -> None:
    """A per-SKU trend table for ``licensing-audit history``: latest counters, change, sparkline, forecast."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    series_by_sku = {k: sorted(v, key=lambda d: d.day) for k, v in history.items() if v}
    if not series_by_sku:
        console.print(Text("No SKU history stored for this period."))
        return
    unicode = _unicode(console)
    spark_width = max(8, min(30, console.width - 72))
    table = Table(
        title="Seat history (consumed / enabled per day)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("Product", overflow="fold", min_width=16)
    table.add_column("Enabled", justify="right", no_wrap=True)
    table.add_column("Used", justify="right", no_wrap=True)
    table.add_column("Free", justify="right", no_wrap=True)
    table.add_column("Change", justify="right", no_wrap=True)
    table.add_column("Trend", no_wrap=True)
    table.add_column("Forecast", no_wrap=True)
    for sku_id, series in sorted(series_by_sku.items(), key=lambda kv: product_names.get(kv[0], kv[0]).lower()):
        first, last = series[0], series[-1]
        free = last.enabled - last.consumed
        change = last.consumed - first.consumed
        projection = project_seats(series, forecast_days)
        if projection is None:
            forecast = Text("no rising trend" if len(series) >= 7 else "too little history", style="dim")
        elif projection.days_left <= 0:
            forecast = Text("full now", style="red")
        elif projection.days_left <= forecast_days:
            forecast = Text(f"full {projection.reaches_on:%Y-%m-%d}", style="yellow")
        else:
            forecast = Text(f"+{projection.slope:.1f}/day", style="dim")
        style = "red" if free < 0 or last.waiting else ("yellow" if free == 0 else "")
        table.add_row(
            _text(product_names.get(sku_id) or sku_id, 40),
            f"{last.enabled:,}",
            f"{last.consumed:,}",
            Text(f"{free:,}", style=style),
            Text(f"{change:+,}", style="yellow" if change > 0 else ""),
            Text(_sparkline(series, spark_width, unicode), style=style or "cyan"),
            forecast,
        )
    console.print(table)
    first_day = min(s[0].day for s in series_by_sku.values())
    last_day = max(s[-1].day for s in series_by_sku.values())
    days = max(len(s) for s in series_by_sku.values())
    console.print(
        Text(
            f"{first_day:%Y-%m-%d} to {last_day:%Y-%m-%d} (up to {days} days); "
            "a full block is a day with no seat free; "
            f"forecast: least-squares trend of the last {forecast_days} days.",
            style="dim",
        ),
        soft_wrap=True,
    )
