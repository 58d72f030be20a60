"""`licensing-audit demo`: the whole pipeline on a simulated tenant and a local storage emulator.

It starts Azurite and the sandbox Graph tenant, a local Teams receiver, then runs two
simulated nights through the same code path as the queue trigger (message on the queue,
handler, audit, store, alerts), so that history, a trend and "resolved" alerts exist, and then
asks the queue two ``plan`` questions (one group fit for licensing, one not: docs/plan.md), and licenses the fit
one from a desired-state file: one apply and its verification (docs/configure.md). It
writes everything a person wants to look at into the output folder and says where.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from licensing.clock import utcnow
from licensing.errors import AuditError
from licensing.model import MessageOutcome, SkuDay

if TYPE_CHECKING:
    from rich.console import Console

    from licensing.settings import Settings

__all__ = ["WebhookReceiver", "run_demo"]


class WebhookReceiver:
    """A local stand-in for a Teams Workflows webhook: records every POST and answers 202."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received.append(self.rfile.read(length))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="teams-receiver", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/workflows/demo/triggers/manual/paths/invoke"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Clock:
    """The simulated time of the current night."""

    def __init__(self, start: datetime) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current


STEP_TICK_S: Final = 15.0  # a long demo step prints a line this often


@contextmanager
def _step(console: Console, text: str, *, every: float = STEP_TICK_S) -> Iterator[None]:
    """Say what the demo does, then, while it takes long (a 100,000-user tenant: minutes), a line every ``every``
    seconds with the time so far, so that the demo is never a static line (issue 30, item 7)."""
    console.print(f"• {text} …", markup=False)
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(every):
            console.print(f"  … still working ({time.monotonic() - started:,.0f} s)", markup=False)

    ticker = threading.Thread(target=tick, name="demo-step-ticker", daemon=True)
    ticker.start()
    try:
        yield
    finally:
        done.set()
        ticker.join(timeout=5)


def _seed_history(store: Any, tenant_id: str, skus: list[Any], first_night: datetime, days: int = 28) -> int:
    """Simulated consumption of the weeks before the demo, so the trend and forecast have data.

    The demo tenant has no past; rather than a flat line, consumption grows steadily toward
    today's figure. These rows are marked as demo data by their tenant (the sandbox's).
    """
    rows: list[SkuDay] = []
    for sku in skus:
        if sku.enabled <= 0:
            continue
        growth = max(1, sku.consumed // 60)
        for back in range(days, 0, -1):
            day = (first_night - timedelta(days=back)).date()
            rows.append(
                SkuDay(
                    sku_id=sku.sku_id,
                    day=day,
                    enabled=sku.enabled,
                    consumed=max(0, sku.consumed - growth * back // 2),
                    warning=sku.warning,
                    suspended=sku.suspended,
                    locked_out=sku.locked_out,
                )
            )
    store.write_sku_history(tenant_id, rows)
    return len(rows)


def _fix_one_problem(graph: Any, report: Any) -> str:
    """Between the nights, remove a licensed group that had a nested group: its findings resolve."""
    for finding in report.findings:
        if finding.kind == "nested_group" and finding.group_id:
            graph.delete_group(finding.group_id)
            return f"deleted the misconfigured group {finding.group_name or finding.group_id}"
    return "nothing (the tenant had no nested groups)"


def _accept_one_problem(store: Any, report: Any, when: datetime) -> str:
    """Between the nights, suppress the B2B members of one group (the admin licenses those partners on purpose):
    the second night still reports them, marked, and does not alert them."""
    from licensing.suppressions import SuppressionRequest, apply_request

    guest = next((f for f in report.findings if f.kind == "b2b_member" and f.group_id), None)
    if guest is None:
        return "nothing (the tenant had no B2B members)"
    request = SuppressionRequest(
        reason="Partner accounts licensed on purpose (demo)",
        by="demo:admin",
        group_id=guest.group_id,
        kind="b2b_member",
        until=(when + timedelta(days=30)).date().isoformat(),
    )
    done = apply_request(store, report.run.tenant_id, request, when)
    return done.summary


def _write_alert_files(alerts_dir: Path, channel: str, item_id: str, body: bytes, night: int) -> Path:
    safe_id = "".join(c if c.isalnum() or c in "-_" else "-" for c in item_id)[-40:]
    if channel == "mail":
        message = orjson.loads(body)
        html = message.get("message", message).get("body", {}).get("content", "")
        path = alerts_dir / f"mail-night{night}-{safe_id}.html"
        path.write_text(html, encoding="utf-8")
    else:
        path = alerts_dir / f"teams-night{night}-{safe_id}.json"
        path.write_bytes(orjson.dumps(orjson.loads(body), option=orjson.OPT_INDENT_2))
    return path


# The demo's two plan questions: a group ready for Microsoft 365 E3 + EMS E3, and one that nests a group.
DEMO_PLANS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("plan_ready", ("SPE_E3", "EMS")),
    ("plan_nested", ("SPE_E3",)),
)


def _ask_plans(console: Console, tenant: Any, settings: Settings, runtime: Any, output: Path) -> list[Path]:
    """Put each DEMO_PLANS question on the queue and answer it through the queue handler, as a runbook would."""
    from licensing.model import AuditRequest, Scope
    from licensing.pipeline.handlers import handle_audit_message
    from licensing.pipeline.queues import enqueue_request, queue_client
    from licensing.plan import plan_to_json_bytes, summary_lines

    written: list[Path] = []
    for key, skus in DEMO_PLANS:
        group = tenant.plan_group(key)
        request = AuditRequest(
            scope=Scope.PLAN, group_id=group.id, skus=skus, requested_by="demo runbook", request_id=f"demo-{key}"
        )
        with _step(console, f"Plan request: may {group.display_name} get {' + '.join(skus)}?"):
            enqueue_request(settings.storage, settings.audit_queue, request)
            client = queue_client(settings.storage, settings.audit_queue)
            messages = list(client.receive_messages(max_messages=1, visibility_timeout=300))
            if not messages:
                raise AuditError("the demo plan request did not arrive on the local queue")
            result = asyncio.run(handle_audit_message(messages[0].content, runtime, message_id=messages[0].id))
            client.delete_message(messages[0])
            client.close()
        answer = result.plan
        if answer is None or answer.plan is None:
            raise AuditError(f"the plan request was {result.outcome}: {result.reason}")
        for line in summary_lines(answer.plan)[:8]:
            console.print(f"  {line}", markup=False, soft_wrap=True)
        path = output / f"plan-{key.removeprefix('plan_')}.json"
        path.write_bytes(plan_to_json_bytes(answer.plan))
        written.append(path)
    return written


def _configure_one(console: Console, tenant: Any, settings: Settings, store: Any, output: Path) -> list[Path]:
    """One reviewed change through licensing-audit apply's own code (docs/configure.md): the group `plan` found fit
    gets Microsoft 365 E3 + EMS E3 from a desired-state file; dry run, apply, wait, verify, journal (the store)."""
    from licensing.configure.desired import parse_desired
    from licensing.configure.dryrun import dry_run
    from licensing.configure.identity import signed_in
    from licensing.configure.journal import StoreJournal
    from licensing.configure.render import apply_json_bytes, dry_run_lines, result_lines
    from licensing.configure.writer import WritePolicy, apply_confirmed
    from licensing.graph import open_graph

    group = tenant.plan_group("plan_ready")
    path = output / "licensing.yaml"
    path.write_text(
        f"schema: licensing-desired/1\ntenant: {tenant.tenant_id}\ngroups:\n  - id: {group.id}\n"
        f"    name: {orjson.dumps(group.display_name).decode()}\n"
        "    licenses:\n      - sku: SPE_E3\n      - sku: EMS\n",
        encoding="utf-8",
    )

    def say(line: str) -> None:
        console.print(f"  {line}", markup=False, soft_wrap=True)

    async def go() -> Path:
        async with open_graph(settings, credential="none") as graph:
            run = await dry_run(
                graph, parse_desired(path.read_text(encoding="utf-8"), str(path)), max_loss=0, now=utcnow()
            )
            for line in dry_run_lines(run)[-8:]:
                say(line)
            policy = WritePolicy(await signed_in(graph), 20, 0.05, asyncio.sleep, utcnow, say)
            result = await apply_confirmed(graph, run, StoreJournal(store), policy)
            for line in result_lines(result):
                say(line)
            (output / "apply.json").write_bytes(apply_json_bytes(run, result))
            return output / "apply.json"

    return [path, asyncio.run(go())]


def _run_chunks(settings: Settings, runtime: Any) -> Any:
    """Drain the chunk queue through the chunk handler until a chunk concludes the run; its MessageResult."""
    from licensing.pipeline.handlers import handle_chunk_message
    from licensing.pipeline.queues import queue_client

    client = queue_client(settings.storage, settings.audit_chunk_queue)
    last: Any = None
    try:
        while True:
            messages = list(client.receive_messages(max_messages=32, visibility_timeout=300))
            if not messages:
                return last
            for message in messages:
                last = asyncio.run(
                    handle_chunk_message(
                        message.content, runtime, message_id=message.id, dequeue_count=message.dequeue_count or 1
                    )
                )
                client.delete_message(message)
                if last.outcome is MessageOutcome.FINISHED and last.audit is not None:
                    return last
    finally:
        client.close()


def _migrate_one(
    console: Console, tenant: Any, sandbox: Any, settings: Settings, store: Any, output: Path
) -> list[Path]:
    """Two members of the group just licensed still hold Microsoft 365 E3 directly: licensing-audit migrate's own
    code classifies them, removes them in waves (1, then the rest), verifies each wave, journals (docs/configure.md)."""
    from licensing.configure.identity import signed_in
    from licensing.configure.journal import StoreJournal
    from licensing.configure.migrate import plan_migration
    from licensing.configure.migrate_confirm import migrate_confirmed
    from licensing.configure.migrate_render import migrate_json_bytes, migrate_lines, migrate_result_lines
    from licensing.configure.writer import WritePolicy
    from licensing.graph import open_graph

    group = tenant.plan_group("plan_ready")
    e3 = tenant.sku_by_part("SPE_E3").sku_id
    for u in list(group.users)[:2]:  # their old direct E3 (no new seat: they hold it through the group)
        sandbox.assign_direct(tenant.user_id(u), e3)
    tenant.processed_at[group.index] = utcnow()  # Entra processed the group after the apply (the sandbox's clock)
    book = StoreJournal(store)

    def say(line: str) -> None:
        console.print(f"  {line}", markup=False, soft_wrap=True)

    async def go() -> Path:
        async with open_graph(settings, credential="none") as graph:
            run = await plan_migration(graph, group.id, ["SPE_E3"], waves=(1, None), accept_loss=False, desired=None,
                                       journal=book, now=utcnow())  # fmt: skip
            for line in migrate_lines(run, confirming=True):
                say(line)
            policy = WritePolicy(await signed_in(graph), 20, 0.05, asyncio.sleep, utcnow, say)
            done, stopped = await migrate_confirmed(graph, run, book, policy)
            for line in migrate_result_lines(done, stopped, run.id):
                say(line)
            (output / "migrate.json").write_bytes(migrate_json_bytes(run, done, stopped))
            return output / "migrate.json"

    return [asyncio.run(go())]


def _demo_settings(graph_url: str, storage: str, webhook: str, tenant_domain: str) -> Settings:
    from licensing.settings import load_settings

    return load_settings(
        {
            "GRAPH_BASE_URL": graph_url,
            "LICENSING_STORAGE": storage,
            "ALERT_TEAMS_WEBHOOK_URL": webhook,
            "ALERT_MAIL_FROM": f"license-audit@{tenant_domain}",
            "ALERT_MAIL_TO": f"m365-admins@{tenant_domain}",
            "ALERT_MIN_SEVERITY": "warning",
            "AUDIT_QUEUE": "license-audit-requests",
            "GRAPH_MAX_CONCURRENCY": "8",
        }
    )


def run_demo(console: Console, *, output: Path, users: int = 600, groups: int = 24, seed: int = 2026) -> None:
    """Run two simulated nights and write report.json/html, CSVs and the delivered alerts to ``output``."""
    from licensing.emulator import Azurite
    from licensing.pipeline.handlers import handle_audit_message, handle_timer
    from licensing.pipeline.queues import queue_client
    from licensing.pipeline.runtime import open_runtime
    from licensing.report.csv_report import write_csv
    from licensing.report.html import write_html
    from licensing.report.json_report import to_json_bytes
    from licensing.report.terminal import render_summary
    from licensing.sandbox import SandboxServer, TenantSpec, generate_tenant
    from licensing.store import open_store

    if output.exists():
        shutil.rmtree(output)
    alerts_dir = output / "alerts"
    alerts_dir.mkdir(parents=True)

    with _step(console, "Starting Azurite (local Table and Queue Storage, in memory)"), Azurite() as azurite:
        with _step(console, f"Generating a simulated tenant ({users} users, {groups} groups, seed {seed})"):
            # The demo's tenant stands today (the wall clock: the demo is the one place that wants it).
            tenant = generate_tenant(TenantSpec(seed=seed, users=users, groups=groups), as_of=utcnow())
            first_night = utcnow().replace(hour=2, minute=30, second=0, microsecond=0) - timedelta(days=1)
            # License states went wrong in the days before the first night (license_error says how long).
            tenant.states_as_of = first_night - timedelta(hours=1)
        with (
            _step(console, "Serving it as a simulated Microsoft Graph on loopback"),
            SandboxServer(tenant) as graph,
            WebhookReceiver() as teams,
        ):
            settings = _demo_settings(graph.base_url, azurite.connection_string, teams.url, "contoso.example")
            store = open_store(settings.storage)
            store.ensure_tables()
            nights = [first_night]
            nights.append(nights[0] + timedelta(days=1))
            clock = _Clock(nights[0])
            written_alerts: list[Path] = []
            outcome = None
            for night, when in enumerate(nights, start=1):
                clock.current = when
                if night == 2 and outcome is not None:
                    _seed_history(store, outcome.report.run.tenant_id, list(outcome.report.skus), nights[0])
                    fixed = _fix_one_problem(graph, outcome.report)
                    console.print(f"• Between the nights an admin fixed something: {fixed}", markup=False)
                    accepted = _accept_one_problem(store, outcome.report, when)
                    console.print(f"• … and accepted something: {accepted}", markup=False)
                with _step(console, f"Night {night} ({when:%Y-%m-%d %H:%M} UTC): enqueuing the scheduled audit"):
                    # What the timer does: reserve the occurrence's request id (its ticket), then enqueue it.
                    handle_timer(settings, now=when, store_factory=lambda _s: store)
                    client = queue_client(settings.storage, settings.audit_queue)
                    messages = list(client.receive_messages(max_messages=1, visibility_timeout=300))
                if not messages:
                    raise AuditError("the demo request did not arrive on the local queue")
                message = messages[0]

                def delivered(channel: str, item_id: str, body: bytes, night: int = night) -> None:
                    written_alerts.append(_write_alert_files(alerts_dir, channel, item_id, body, night))

                with _step(console, f"Night {night}: running the queue handler (Graph → rules → alerts → storage)"):
                    result = asyncio.run(
                        handle_audit_message(
                            message.content,
                            replace(open_runtime(settings, credential="none"), on_delivered=delivered, now=clock),
                            message_id=message.id,
                            dequeue_count=message.dequeue_count or 1,
                        )
                    )
                client.delete_message(message)
                client.close()
                if result.outcome is MessageOutcome.FANNED_OUT:
                    # More licensed groups than FANOUT_GROUPS: the members are read in chunks on the chunk queue,
                    # as the function's chunk trigger would; the chunk that concludes the run carries its outcome.
                    runtime = replace(open_runtime(settings, credential="none"), on_delivered=delivered, now=clock)
                    with _step(console, f"Night {night}: the tenant fanned out; running its chunks"):
                        result = _run_chunks(settings, runtime)
                outcome = result.audit
                if outcome is None:
                    raise AuditError(f"night {night}: the request was {result.outcome}: {result.reason}")
                run = outcome.report.run
                console.print(
                    f"  run {run.id}: {run.status.value}, {len(outcome.report.findings)} findings, "
                    f"{run.graph_requests} Graph requests",
                    markup=False,
                )
            assert outcome is not None
            plans = _ask_plans(
                console,
                tenant,
                settings,
                replace(open_runtime(settings, credential="none"), on_delivered=delivered, now=clock),
                output,
            )
            with _step(console, "Configuring that group from a desired state (licensing-audit apply --confirm)"):
                plans += _configure_one(console, tenant, settings, store, output)
            with _step(console, "Moving its members off their direct assignments (licensing-audit migrate --confirm)"):
                plans += _migrate_one(console, tenant, graph.app, settings, store, output)
            report = outcome.report
            (output / "report.json").write_bytes(to_json_bytes(report))
            csvs = write_csv(report, output)
            write_html(report, output / "report.html", history=outcome.history or None, cloud=settings.graph_cloud)

    console.print()
    for finding in report.findings:
        if finding.kind in ("seat_shortage", "seat_low") and "reclaim" in finding.message:
            console.print(f"Reclaim before you buy: {finding.message}", markup=False, soft_wrap=True)
            break
    render_summary(report, console=console)
    console.print()
    console.print("Demo output:", markup=False)
    for path in [output / "report.html", output / "report.json", *csvs, *plans, *sorted(set(written_alerts))]:
        console.print(f"  {path}", markup=False)
