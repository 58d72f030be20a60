"""`licensing-audit`: the command line (run, plan, suppress, export, apply, rollback, demo, sandbox, enqueue, …).

Exit codes (a contract): 0 done; 1 the audit failed; 2 bad usage or settings (one line, no
traceback); 3 done, but findings at or above ``--fail-on``. ``plan``: 0 suitable, 3 not suitable.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer

from licensing.configure.commands import register as _register_configure
from licensing.errors import AuditError, BadRequestError, ConfigurationError, LicensingError
from licensing.model import Scope, Severity, Trigger
from licensing.outputs import check_outputs, closing_lines, write_outputs
from licensing.settings import Settings
from licensing.usage import command_settings as _settings
from licensing.usage import one_sku_each as _one_sku_each
from licensing.usage import validated_request as _request

if TYPE_CHECKING:
    from rich.console import Console

    from licensing.pipeline.conclusion import AuditOutcome

__all__ = ["EXIT_FAILED", "EXIT_FINDINGS", "EXIT_OK", "EXIT_USAGE", "app", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_FINDINGS = 0, 1, 2, 3
# The smallest tenant the sandbox generator builds with every situation in it (licensing.sandbox.tenant).
DEMO_MIN_USERS, DEMO_MIN_GROUPS = 60, 12

# Recent typer releases carry their own copy of click: catch the usage errors of both.
_USAGE_ERRORS: tuple[type[Exception], ...] = tuple(
    {click.UsageError, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")}
)
_ABORTS: tuple[type[BaseException], ...] = tuple({click.Abort, typer.Abort})
_EXITS: tuple[type[BaseException], ...] = tuple({click.exceptions.Exit, typer.Exit})

app = typer.Typer(
    name="licensing-audit",
    help="Audit Microsoft Entra ID group-based licensing: seats, B2B members, nested groups, errors, waste.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class CredentialName(StrEnum):
    DEFAULT = "default"
    AZURE_CLI = "azure-cli"
    MANAGED_IDENTITY = "managed-identity"
    DEVICE_CODE = "device-code"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class _WriteRow:
    permission: str
    granted: bool | None
    optional: bool
    detail: str | None


class FailOn(StrEnum):
    CRITICAL = "critical"
    WARNING = "warning"


def _console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    # Colour only on a terminal and without NO_COLOR; rich honours both itself.
    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def _open_store(settings: Settings, *, create: bool = True) -> Any:
    """The store; ``create=False`` for read-only commands (an operator may hold only a reader role)."""
    if settings.storage is None:
        return None
    from licensing.store import open_store

    store = open_store(settings.storage)
    if create:
        store.ensure_tables()
    return store


def _candidates(settings: Settings, credential: str) -> dict[str, Any]:
    """The Candidates section (``run --candidates``): unlicensed security groups assessed for EXPECTED_GROUP_SKUS."""
    from licensing.graph import open_graph
    from licensing.plan import plan_candidates

    async def read() -> dict[str, Any]:
        async with open_graph(settings, credential=credential) as graph:
            return await plan_candidates(graph, settings.expected_group_skus)

    return asyncio.run(read())


def _fails(outcome: AuditOutcome, fail_on: FailOn | None) -> bool:
    if fail_on is None:
        return False
    threshold = Severity(fail_on.value)
    return any(Severity(f.severity).at_least(threshold) for f in outcome.report.findings)


@app.command()
def run(
    graph_url: Annotated[str | None, typer.Option("--graph-url", help="Graph base URL, e.g. the sandbox's.")] = None,
    cloud: Annotated[str | None, typer.Option("--cloud", help="global | usgov | usgovdod | china")] = None,
    credential: Annotated[CredentialName, typer.Option("--credential")] = CredentialName.DEFAULT,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    scope: Annotated[Scope, typer.Option("--scope")] = Scope.TENANT,
    group: Annotated[str | None, typer.Option("--group", help="Group id, with --scope group.")] = None,
    sku: Annotated[str | None, typer.Option("--sku", help="skuId or skuPartNumber, with --scope sku.")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store", help="Storage connection string, @FILE holding it, or 'none' (default: LICENSING_STORAGE)."
        ),
    ] = None,
    json_file: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here.")] = None,
    csv_dir: Annotated[Path | None, typer.Option("--csv", help="Write skus/groups/findings CSV here.")] = None,
    html_file: Annotated[Path | None, typer.Option("--html", help="Write the HTML report here.")] = None,
    candidates: Annotated[
        bool, typer.Option("--candidates", help="Add unlicensed security groups, ranked by fitness, to --html.")
    ] = False,
    no_alerts: Annotated[bool, typer.Option("--no-alerts", help="Do not send Teams/e-mail alerts.")] = False,
    fail_on: Annotated[FailOn | None, typer.Option("--fail-on", help="Exit 3 on findings at or above.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Every finding, and the log on stderr.")] = False,
    traces: Annotated[
        bool, typer.Option("--trace", help="Also one line per span (each Graph request) on stderr.")
    ] = False,
) -> None:
    """Audit the tenant (or one group / SKU) now and print the summary."""
    from licensing.pipeline.run import run_audit
    from licensing.pipeline.runtime import Runtime

    if scope is Scope.PLAN:
        raise ConfigurationError("--scope plan is not an audit: use licensing-audit plan --group ID --sku SKU")
    if candidates and html_file is None:
        raise ConfigurationError("--candidates adds a section to the HTML report: give --html FILE too")
    settings = _settings(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id, store=store)
    check_outputs(json_file, csv_dir, html_file)
    if traces:  # spans on stderr only when asked: one per Graph request (issue 30, item 8)
        from licensing import telemetry

        telemetry.configure(settings, verbose=True, traces=True)
    else:
        _configure_telemetry(settings, verbose=verbose)
    fields: dict[str, Any] = {"scope": scope.value, "notify": not no_alerts}
    if group:
        fields["group_id"] = group
    if sku:
        fields["sku"] = sku
    request = replace(_request(fields), trigger=Trigger.CLI, request_id=None)
    audit_store = _open_store(settings)
    console = _console()
    from licensing.report.terminal import progress_reporter, render_summary

    with progress_reporter(_console(stderr=True)) as progress:
        outcome = asyncio.run(
            run_audit(
                request,
                Runtime(settings, store=audit_store, credential=credential.value),
                alerts=not no_alerts,
                progress=None if quiet else progress,
            )
        )
    section = _candidates(settings, credential.value) if candidates else None
    written = write_outputs(outcome, settings, json_file, csv_dir, html_file, section)
    from licensing.costs import cost_lines, price_table, totals_text

    cost = totals_text(cost_lines(outcome.report.skus, price_table(settings.sku_prices)), settings.sku_price_currency)
    render_summary(outcome.report, console=console, verbose=verbose, quiet=quiet, cost=cost)
    if not quiet:
        for path in written:
            console.print(f"wrote {path}", markup=False, soft_wrap=True)
    for line in closing_lines(outcome, settings, alerts=not no_alerts):
        console.print(line, markup=False, soft_wrap=True)
    if _fails(outcome, fail_on):
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", help="Where to write the demo files.")] = Path("demo-output"),
    users: Annotated[int, typer.Option("--users", min=DEMO_MIN_USERS, max=300_000)] = 600,
    groups: Annotated[int, typer.Option("--groups", min=DEMO_MIN_GROUPS, max=5_000)] = 24,
    seed: Annotated[int, typer.Option("--seed")] = 2026,
) -> None:
    """Run the whole pipeline on a simulated tenant and a local storage emulator (no Azure needed)."""
    from licensing.demo import run_demo

    run_demo(_console(), output=output, users=users, groups=groups, seed=seed)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
)
def sandbox(ctx: typer.Context) -> None:
    """Serve a simulated Microsoft Graph tenant on loopback (see `licensing-audit sandbox --help`)."""
    from licensing.sandbox import serve

    raise typer.Exit(serve(list(ctx.args)))


@app.command()
def enqueue(
    scope: Annotated[Scope, typer.Option("--scope")] = Scope.TENANT,
    group: Annotated[str | None, typer.Option("--group")] = None,
    sku: Annotated[
        list[str] | None,
        typer.Option(
            "--sku", metavar="SKU", help="With --scope sku one; with --scope plan one or more (repeat --sku)."
        ),
    ] = None,
    request_id: Annotated[str | None, typer.Option("--request-id")] = None,
    requested_by: Annotated[str | None, typer.Option("--requested-by")] = None,
    no_notify: Annotated[bool, typer.Option("--no-notify")] = False,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Storage connection string or @FILE holding it (default: LICENSING_STORAGE)."),
    ] = None,
) -> None:
    """Put an audit (or plan) request on the queue (the Function App runs it)."""
    from licensing.pipeline.queues import enqueue_request

    settings = _settings(store=store)
    fields: dict[str, Any] = {"scope": scope.value, "notify": not no_notify}
    _one_sku_each(sku)
    if sku and scope is Scope.PLAN:
        fields["skus"] = list(sku)
    elif sku:
        if len(sku) > 1:
            raise ConfigurationError("--sku is given more than once; only --scope plan takes several")
        fields["sku"] = sku[0]
    for key, value in (("group_id", group), ("request_id", request_id), ("requested_by", requested_by)):
        if value:
            fields[key] = value
    request = _request(fields)
    message_id = enqueue_request(settings.storage, settings.audit_queue, request)
    # soft_wrap: off a terminal rich would otherwise break the line at 80 columns, splitting the message id.
    _console().print(
        f"enqueued {request.scope.value} {'request' if request.scope is Scope.PLAN else 'audit'} on "
        f"{settings.audit_queue} (message {message_id})",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def history(
    sku: Annotated[str | None, typer.Option("--sku", help="skuId or skuPartNumber (default: all).")] = None,
    days: Annotated[int, typer.Option("--days", min=1, max=3650)] = 30,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Storage connection string or @FILE holding it (default: LICENSING_STORAGE)."),
    ] = None,
) -> None:
    """Print the seat trend per SKU from the stored history."""
    from licensing.pipeline.runtime import utcnow
    from licensing.report.terminal import render_history
    from licensing.skus import product_name

    settings = _settings(tenant_id=tenant_id, store=store)
    audit_store = _open_store(settings, create=False)
    if audit_store is None:
        raise ConfigurationError("history needs storage: set LICENSING_STORAGE or pass --store")
    tenant = settings.azure_tenant_id or audit_store.default_tenant_id()
    if tenant is None:
        raise ConfigurationError("no audit runs stored yet: run an audit first, or pass --tenant-id")
    since = (utcnow() - timedelta(days=days)).date()
    data = audit_store.sku_history(tenant, since=since)
    names: dict[str, str] = {}
    latest = audit_store.latest_run(tenant)
    part_numbers = {s.sku_id: s.sku_part_number for s in audit_store.run_skus(latest.id)} if latest else {}
    for sku_id in data:
        names[sku_id] = product_name(part_numbers.get(sku_id, sku_id), sku_id)
    if sku:
        wanted = sku.lower()
        data = {k: v for k, v in data.items() if k.lower() == wanted or part_numbers.get(k, "").lower() == wanted}
        if not data:
            raise BadRequestError(f"no history for SKU {sku!r} in the last {days} days")
    render_history(data, names, _console())


class ReportFile(StrEnum):
    HTML = "html"
    JSON = "json"
    FINDINGS = "findings.csv"
    SKUS = "skus.csv"
    GROUPS = "groups.csv"


@app.command("report")
def report_command(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where to write it (default: ./<run id>-report.html).")
    ] = None,
    run_id: Annotated[str | None, typer.Option("--run", help="A run id (default: the latest published).")] = None,
    file: Annotated[ReportFile, typer.Option("--file", help="Which file of the report.")] = ReportFile.HTML,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    store: Annotated[
        str | None,
        typer.Option("--store", help="Storage connection string or @FILE holding it (default: LICENSING_STORAGE)."),
    ] = None,
) -> None:
    """Download the latest published report (HTML, JSON or CSV) of the nightly audit from REPORT_CONTAINER."""
    from licensing.store.reports import open_archive

    settings = _settings(tenant_id=tenant_id, store=store)
    if settings.storage is None or not settings.report_container:
        raise ConfigurationError("report needs storage and REPORT_CONTAINER: set LICENSING_STORAGE or pass --store")
    check_outputs(output, None, None)
    archive = open_archive(settings.storage, settings.report_container)
    tenant = settings.azure_tenant_id or _open_store(settings, create=False).default_tenant_id()
    if tenant is None:
        raise ConfigurationError("no audit runs stored yet: run an audit first, or pass --tenant-id")
    if run_id is None:
        latest = archive.latest(tenant)
        if latest is None:
            raise BadRequestError(f"no report is published for tenant {tenant} yet (the nightly run publishes one)")
        run_id = str(latest["run_id"])
    name = {ReportFile.HTML: "report.html", ReportFile.JSON: "report.json"}.get(file, file.value)
    body = archive.run_file(tenant, run_id, name)
    if body is None:
        raise BadRequestError(f"--run {run_id}: no published {name} for that run")
    target = output or Path(f"{run_id}-{name}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    except OSError as exc:
        raise AuditError(f"could not write {target}: {exc.strerror or type(exc).__name__}") from None
    _console().print(
        f"wrote {target} (run {run_id}; {archive.url_of(f'{tenant}/{run_id}/{name}')})", markup=False, soft_wrap=True
    )


@app.command("check-permissions")
def check_permissions_command(
    graph_url: Annotated[str | None, typer.Option("--graph-url")] = None,
    cloud: Annotated[str | None, typer.Option("--cloud")] = None,
    credential: Annotated[CredentialName, typer.Option("--credential")] = CredentialName.DEFAULT,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    write: Annotated[bool, typer.Option("--write", help="Also: may this credential apply licences?")] = False,
) -> None:
    """Try each Graph read (and the mail send) the audit needs; print what is granted or missing.

    Exit 0 when every needed permission is granted; 1 when one is missing or could not be checked (a credential
    that does not work is one line, not a list of "unknown")."""
    from licensing.errors import GraphAuthError, GraphError
    from licensing.graph import check_permissions, open_graph
    from licensing.graph.client import query

    settings = _settings(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id)

    async def sign_in() -> None:
        """One request first: a credential that does not work says so once, not as a list of "unknown"."""
        async with open_graph(settings, credential=credential.value) as graph:
            try:
                await graph.get_json(
                    "/subscribedSkus?" + query({"$select": "skuId"}), route="/subscribedSkus", what="sign-in"
                )
            except GraphAuthError as exc:
                raise GraphAuthError(f"--credential {credential.value}: {exc.message}") from None
            except GraphError:
                pass  # a permission or service problem: the checks tell which

    asyncio.run(sign_in())

    async def probe() -> list[Any]:
        async with open_graph(settings, credential=credential.value) as graph:
            found: list[Any] = list(await check_permissions(graph))
            if write:  # licensing-audit apply's permission (docs/configure.md)
                from licensing.configure import probe_write, signed_in

                check = await probe_write(graph)
                found.append(_WriteRow("LicenseAssignment.ReadWrite.All", check.granted, False,
                                       f"as {await signed_in(graph)}: {check.detail}"))  # fmt: skip
            return found

    results = asyncio.run(probe())
    console = _console()
    failing = 0
    for check in results:
        unknown = "skipped" if check.optional else "UNKNOWN"
        mark = {True: "granted", False: "optional" if check.optional else "MISSING", None: unknown}[check.granted]
        failing += check.granted is not True and not check.optional
        console.print(f"{mark:8} {check.permission}  {check.detail or ''}".rstrip(), markup=False, soft_wrap=True)
    if failing:
        raise typer.Exit(EXIT_FAILED)


@app.command()
def plan(
    group: Annotated[str, typer.Option("--group", help="Object id of the group to license.")],
    sku: Annotated[
        list[str], typer.Option("--sku", metavar="SKU", help="skuId or skuPartNumber; repeat for a bundle.")
    ],
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Write the licensing-audit-plan/1 JSON here.")
    ] = None,
    graph_url: Annotated[str | None, typer.Option("--graph-url", help="Graph base URL, e.g. the sandbox's.")] = None,
    cloud: Annotated[str | None, typer.Option("--cloud", help="global | usgov | usgovdod | china")] = None,
    credential: Annotated[CredentialName, typer.Option("--credential")] = CredentialName.DEFAULT,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
) -> None:
    """Say whether a group is fit for group-based licensing with these SKUs (exit 0 suitable, 3 not)."""
    from licensing.graph import open_graph
    from licensing.plan import Verdict, plan_group, plan_to_json_bytes, render_plan

    settings = _settings(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id)
    check_outputs(json_file, None, None)
    _one_sku_each(sku)

    async def assess() -> Any:
        async with open_graph(settings, credential=credential.value) as graph:
            return await plan_group(graph, group, sku)

    result = asyncio.run(assess())
    render_plan(result, _console())
    if json_file is not None:
        try:
            json_file.parent.mkdir(parents=True, exist_ok=True)
            json_file.write_bytes(plan_to_json_bytes(result))
        except OSError as exc:
            raise AuditError(f"could not write {json_file}: {exc.strerror or type(exc).__name__}") from None
    if result.verdict is Verdict.UNSUITABLE:
        raise typer.Exit(EXIT_FINDINGS)


@app.command()
def suppress(
    finding: Annotated[str | None, typer.Option("--finding", help="A finding id (from the report).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="A user id: every finding about the user.")] = None,
    group: Annotated[str | None, typer.Option("--group", help="A group id: every finding about the group.")] = None,
    sku: Annotated[str | None, typer.Option("--sku", help="A skuId or skuPartNumber.")] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Only this finding kind (with --user/--group/--sku).")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (required to add).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day (YYYY-MM-DD, UTC) or an ISO time.")] = None,
    list_all: Annotated[bool, typer.Option("--list", help="List the tenant's suppressions.")] = False,
    remove: Annotated[str | None, typer.Option("--remove", help="Remove the suppression with this id.")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Storage connection string or @FILE (default: LICENSING_STORAGE).")
    ] = None,
    tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    credential: Annotated[CredentialName, typer.Option("--credential")] = CredentialName.DEFAULT,
) -> None:
    """Stop alerts about a finding, user, group or SKU (with a reason, until a date); list or remove."""
    from licensing.clock import utcnow
    from licensing.graph.auth import signed_in_identity
    from licensing.suppressions import Limits, SuppressionRequest, apply_request, check_flags, describe_all

    settings = _settings(store=store, tenant_id=tenant_id)
    adding = any((finding, user, group, sku, kind, reason, until))
    if sum((adding, list_all, remove is not None)) != 1:
        raise ConfigurationError(
            "give one of: a subject to suppress (--finding/--user/--group/--sku), --list, --remove ID"
        )
    now = utcnow()
    if adding:  # the flags first, before storage and sign-in: a missing or bad one is named whatever else fails
        check_flags(reason, until, now, settings.suppress_max_days)
    audit_store = _open_store(settings)
    if audit_store is None:
        raise ConfigurationError("suppressions are kept in Table Storage: give --store or set LICENSING_STORAGE")
    tenant = settings.azure_tenant_id or audit_store.default_tenant_id()
    if not tenant:
        raise ConfigurationError("the store has no audit yet: run one first, or give --tenant-id")
    console = _console()
    if list_all:
        for line in describe_all(audit_store.suppressions(tenant), now):
            console.print(line, markup=False, soft_wrap=True)
        return
    # Who decided comes from the sign-in's token (upn, oid), never from a name anyone could type (issue 27).
    who = f"cli:{asyncio.run(signed_in_identity(settings, credential.value))}"
    request = SuppressionRequest(
        reason=reason, by=who, finding_id=finding, user_id=user, group_id=group, sku=sku, kind=kind, until=until,
        remove=remove,
    )  # fmt: skip
    limits = Limits(settings.suppress_max_days, settings.suppress_max_days_critical)
    console.print(apply_request(audit_store, tenant, request, now, limits).summary, markup=False, soft_wrap=True)


# export, apply, rollback: the writing wing's commands live with it (licensing/configure/commands.py).
_register_configure(app, _settings, CredentialName)


def _configure_telemetry(settings: Settings, *, verbose: bool) -> None:
    from licensing import telemetry

    configure = getattr(telemetry, "configure", None)
    if configure is not None:
        configure(settings, verbose=verbose)


def main(argv: list[str] | None = None) -> int:
    """Entry point: map every error to its exit code with one line on stderr, never a traceback."""
    import logging

    # azure-identity logs a "get_token failed" warning per attempt (5-20 lines); our one line says it all.
    logging.getLogger("azure.identity").setLevel(logging.ERROR)
    try:
        # Without standalone mode click returns the code of a typer.Exit instead of raising it.
        code = app(args=argv, standalone_mode=False, prog_name="licensing-audit")
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", EXIT_FAILED))
    except _USAGE_ERRORS as exc:
        help_ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and help_ctx is not None:
            print(help_ctx.get_help())  # noqa: T201 - `licensing-audit` alone: show what it can do
            return EXIT_USAGE
        text = " ".join(str(getattr(exc, "format_message", exc.__str__)()).split())
        print(f"licensing-audit: error: {text}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except _ABORTS:
        print("licensing-audit: aborted", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    except (ConfigurationError, BadRequestError) as exc:
        print(f"licensing-audit: error: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except LicensingError as exc:
        print(f"licensing-audit: failed: {exc}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug or a library surprise: still one line, scrubbed, never a traceback
        from licensing.telemetry import scrub

        print(f"licensing-audit: failed unexpectedly: {type(exc).__name__}: {scrub(str(exc))[:300]}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    return code if isinstance(code, int) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
