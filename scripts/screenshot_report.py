"""Render the HTML report of a demo-like tenant and screenshot it with headless Chromium (docs/report-screenshot.png).

The report is built from the sandbox generator's ground truth (the findings docs/findings.md
says the audit must produce on that tenant), with names, SKUs and a month of synthetic SKU
history, so the picture shows what an admin sees without needing Graph, storage or the rules.

    .venv/bin/python scripts/screenshot_report.py [--out docs/report-screenshot.png] [--html FILE]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zlib
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from licensing.model import (  # noqa: E402
    AuditReport,
    Finding,
    GroupSummary,
    RuleOutcome,
    RunInfo,
    RunStatus,
    Scope,
    SkuDay,
    SkuSummary,
    Trigger,
    finding_id,
)
from licensing.report.html import write_html  # noqa: E402
from licensing.sandbox.tenant import TenantSpec, generate_tenant  # noqa: E402
from licensing.skus import product_name  # noqa: E402

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_binary() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def build_demo_report(
    seed: int = 2026, users: int = 600, groups: int = 24
) -> tuple[AuditReport, dict[str, list[SkuDay]]]:
    """An AuditReport (and 30 days of SKU history) for a generated sandbox tenant."""
    tenant = generate_tenant(TenantSpec(seed=seed, users=users, groups=groups))
    skus = {s.sku_id: s for s in tenant.skus}
    names = {s.sku_id: product_name(s.part_number, s.sku_id) for s in tenant.skus}
    group_defs = {g.id: g for g in tenant.groups}
    waiting: Counter[str] = Counter()
    for f in tenant.ground_truth:
        if f.kind == "license_error" and f.error == "CountViolation" and f.sku_id:
            waiting[f.sku_id] += 1

    def user_name(user_id: str | None) -> str | None:
        index = tenant.user_index(user_id) if user_id else None
        return tenant.user_names(index)[0] if index is not None else None

    def group_name(group_id: str | None) -> str | None:
        g = group_defs.get(group_id or "")
        return g.display_name if g else None

    findings = []
    for f in tenant.ground_truth:
        sku = skus.get(f.sku_id or "")
        sku_name = names.get(f.sku_id or "", "")
        g, u, m = group_name(f.group_id), user_name(f.user_id), group_name(f.member_group_id)
        message = {
            "seat_shortage": f"{sku_name}: {waiting[f.sku_id or '']} users wait for a seat; "
            f"{sku.available if sku else 0} free of {sku.enabled if sku else 0}",
            "seat_low": f"{sku_name}: only {sku.available if sku else 0} of {sku.enabled if sku else 0} seats free",
            "units_expiring": f"{sku_name}: {sku.warning if sku else 0} seats in grace period, "
            f"{sku.suspended if sku else 0} suspended",
            "b2b_member": f"B2B account {u} is a member of licensed group {g}",
            "nested_group": f"group {m} is a member of licensed group {g}; its members get no licenses",
            "license_error": f"{u} did not get {sku_name} from {g}: {f.error}",
            "processing_incomplete": f"license processing of {g} is not complete",
            "disabled_user_licensed": f"disabled account {u} holds seats through {g}",
            "redundant_direct_assignment": f"{u} has {sku_name} directly and through a group; remove the direct one",
            "empty_licensed_group": f"licensed group {g} has no members",
            "expected_sku_not_group_assigned": f"{sku_name} is owned but no group assigns it",
        }[f.kind]
        findings.append(
            Finding(
                id=finding_id(f.kind, *f.subject),
                kind=f.kind,
                severity=f.severity,
                message=message,
                sku_id=f.sku_id,
                sku_part_number=sku.part_number if sku else None,
                group_id=f.group_id,
                user_id=f.user_id,
                member_group_id=f.member_group_id,
                error=f.error,
                group_name=g,
                user_name=u,
                member_group_name=m,
                product_name=sku_name or None,
            )
        )
    assigned: dict[str, list[str]] = {}
    for g in tenant.groups:
        for i in g.sku_indices:
            assigned.setdefault(tenant.skus[i].sku_id, []).append(g.id)
    sku_summaries = tuple(
        SkuSummary(
            sku_id=s.sku_id,
            sku_part_number=s.part_number,
            product_name=names[s.sku_id],
            enabled=s.enabled,
            consumed=s.consumed,
            available=s.enabled - s.consumed,
            warning=s.warning,
            suspended=s.suspended,
            locked_out=s.locked_out,
            group_assigned_users=sum(len(g.users) for g in tenant.groups if s.index in g.sku_indices),
            waiting_users=waiting[s.sku_id],
            assigned_by_groups=tuple(assigned.get(s.sku_id, ())),
        )
        for s in tenant.skus
        if s.applies_to == "User"
    )
    per_group = Counter((f.group_id, f.kind) for f in tenant.ground_truth)
    group_summaries = tuple(
        GroupSummary(
            id=g.id,
            display_name=g.display_name,
            sku_ids=tuple(tenant.skus[i].sku_id for i in g.sku_indices),
            processing_state=g.processing_state,
            members=g.member_count,
            users=len(g.users),
            b2b_users=per_group[(g.id, "b2b_member")],
            nested_groups=len(g.member_groups),
            license_errors=per_group[(g.id, "license_error")],
        )
        for g in tenant.groups
        if g.licensed
    )
    started = datetime(2026, 11, 24, 2, 30, 4, tzinfo=UTC)
    run = RunInfo(
        id="20261124T023004Z-5f3c9a1e",
        tenant_id=tenant.tenant_id,
        tenant_name=tenant.tenant_name,
        trigger=Trigger.SCHEDULE,
        scope=Scope.TENANT,
        started_at=started,
        finished_at=started + timedelta(seconds=41.7),
        status=RunStatus.SUCCEEDED,
        graph_requests=318,
        graph_throttled=2,
        resource_units=702.0,
    )
    outcomes = (RuleOutcome("seat_forecast", "passed"),)
    history = _history(sku_summaries, started.date())
    return AuditReport(run, sku_summaries, group_summaries, tuple(findings), outcomes), history


def _history(skus: tuple[SkuSummary, ...], today: date) -> dict[str, list[SkuDay]]:
    """30 days ending today: a steady climb for the busy SKUs, a purchase for one, flat for the rest."""
    out: dict[str, list[SkuDay]] = {}
    for n, s in enumerate(s for s in skus if s.enabled > 0 and s.enabled < 5000):
        series = []
        climb = 0.9 if n % 2 == 0 else 0.35
        for back in range(29, -1, -1):
            day = today - timedelta(days=back)
            wobble = (zlib.crc32(f"{s.sku_id}:{back}".encode()) % 3) - 1
            consumed = max(0, round(s.consumed - climb * back + (wobble if back else 0)))
            enabled = s.enabled if (n != 1 or back < 12) else s.enabled - 10
            series.append(SkuDay(s.sku_id, day, enabled, consumed, waiting=s.waiting_users if back == 0 else 0))
        out[s.sku_id] = series
    return out


def screenshot(html: Path, png: Path, *, width: int = 1280, height: int = 2000, timeout: float = 60.0) -> None:
    binary = chromium_binary()
    if binary is None:
        raise SystemExit("no Chromium found (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "report-screenshot.png")
    parser.add_argument("--html", type=Path, default=None, help="also keep the HTML here")
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    report, history = build_demo_report()
    with tempfile.TemporaryDirectory() as tmp:
        html = args.html or Path(tmp) / "report.html"
        write_html(report, html, history=history)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        screenshot(html, args.out, height=args.height)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
