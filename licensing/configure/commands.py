"""The writing commands of ``licensing-audit``: ``export``, ``apply``, ``rollback``, ``reprocess`` (and ``migrate``,
licensing/configure/migrate_command.py), registered by licensing/cli.py.

Exit codes of ``apply`` and ``rollback`` (a contract, docs/design.md): 0 nothing to change (or, with
``--confirm``, everything applied and verified); 4 changes pending (dry run); 3 blocked, nothing applied; 2 bad
input; 1 failure (with ``--confirm``: stopped at the first group that did not end verified). ``reprocess``: 0 no user
waiting (or, with ``--confirm``, every one cleared), 4 users to reprocess (dry run), 3 some still wait after it
(e.g. still no seat), 2 bad input, 1 failure.
"""

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from licensing.configure.terminal import (
    EXIT_BLOCKED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PENDING,
    MAX_WAIT_S,
    new_console,
    open_journal,
    say,
    write_json,
    write_policy,
)
from licensing.errors import AuditError, BadRequestError, ConfigurationError

__all__ = ["EXIT_BLOCKED", "EXIT_PENDING", "register"]


def _run_apply(
    settings: Any,
    credential: str,
    desired: Any,
    *,
    confirm: bool,
    wait: int,
    max_loss: int,
    show_users: bool,
    json_file: Path | None,
    journal: Callable[[], Any],
    kind: str = "apply",
    rollback_of: str | None = None,
) -> int:
    from licensing.changes import ChangeKind
    from licensing.clock import utcnow
    from licensing.configure.dryrun import DryRunStatus, dry_run
    from licensing.configure.identity import signed_in
    from licensing.configure.render import apply_json_bytes, dry_run_lines, result_lines
    from licensing.configure.writer import apply_confirmed
    from licensing.graph import open_graph

    console = new_console()

    async def go() -> int:
        async with open_graph(settings, credential=credential) as graph:
            run = await dry_run(graph, desired, max_loss=max_loss, now=utcnow())
            for line in dry_run_lines(run, show_users=show_users):
                say(console, line)
            status = run.status
            if not confirm or status is not DryRunStatus.CHANGES_PENDING:
                write_json(json_file, apply_json_bytes(run))
                return {
                    DryRunStatus.NOTHING_TO_CHANGE: EXIT_OK,
                    DryRunStatus.CHANGES_PENDING: EXIT_PENDING,
                    DryRunStatus.BLOCKED: EXIT_BLOCKED,
                }[status]
            who = await signed_in(graph)
            book = journal()
            say(console, f"applying as {who}; journal: {book.where}")
            policy = write_policy(console, who, wait, kind=ChangeKind(kind), rollback_of=rollback_of)
            result = await apply_confirmed(graph, run, book, policy)
            for line in result_lines(result, {g.group_id: dict(g.labels) for g in run.groups}):
                say(console, line)
            write_json(json_file, apply_json_bytes(run, result))
            return EXIT_OK if result.ok else EXIT_FAILED

    return asyncio.run(go())


def register(app: typer.Typer, settings_factory: Callable[..., Any], credential_type: Any) -> None:
    """Add ``export``, ``apply``, ``rollback`` and ``reprocess`` to the CLI. The bodies import the writer lazily."""
    default_credential = next(iter(credential_type))
    _reprocess_command(app, settings_factory, credential_type)
    from licensing.configure.migrate_command import migrate_command

    migrate_command(app, settings_factory, credential_type)

    @app.command()
    def export(
        group: Annotated[list[str] | None, typer.Option("--group", help="Only this group (repeat).")] = None,
        output: Annotated[Path | None, typer.Option("--output", help="Write here (default: stdout).")] = None,
        graph_url: Annotated[str | None, typer.Option("--graph-url")] = None,
        cloud: Annotated[str | None, typer.Option("--cloud")] = None,
        credential: Annotated[credential_type, typer.Option("--credential")] = default_credential,
        tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    ) -> None:
        """Write today's group licence assignments as a licensing-desired/1 file (a faithful baseline)."""
        from licensing.clock import utcnow
        from licensing.configure.export import export_desired
        from licensing.graph import open_graph

        settings = settings_factory(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id)

        async def read() -> str:
            async with open_graph(settings, credential=credential.value) as graph:
                return await export_desired(graph, group or [], utcnow())

        text = asyncio.run(read())
        if output is None:
            typer.echo(text, nl=False)
            return
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise AuditError(f"could not write {output}: {exc.strerror or type(exc).__name__}") from None
        say(new_console(), f"wrote {output}")

    @app.command()
    def apply(
        file: Annotated[Path, typer.Argument(help="The licensing-desired/1 YAML file.")],
        confirm: Annotated[bool, typer.Option("--confirm", help="Apply (without it: a dry run).")] = False,
        wait: Annotated[int, typer.Option("--wait", min=1, max=MAX_WAIT_S, help="Seconds to wait per group.")] = 600,
        max_loss: Annotated[
            int, typer.Option("--max-loss", min=0, help="Refuse a change removing a service from more users.")
        ] = 0,
        show_users: Annotated[bool, typer.Option("--show-users", help="Name every user who loses a service.")] = False,
        json_file: Annotated[Path | None, typer.Option("--json", help="Write licensing-apply/1 JSON here.")] = None,
        store: Annotated[str | None, typer.Option("--store", help="Journal in Table Storage (or @FILE).")] = None,
        graph_url: Annotated[str | None, typer.Option("--graph-url")] = None,
        cloud: Annotated[str | None, typer.Option("--cloud")] = None,
        credential: Annotated[credential_type, typer.Option("--credential")] = default_credential,
        tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    ) -> None:
        """Dry-run a desired state (exit 0 nothing to change, 4 pending, 3 blocked); --confirm applies it."""
        from licensing.configure.desired import parse_desired

        try:
            text = file.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise BadRequestError(f"FILE {file}: cannot read it ({exc.strerror or type(exc).__name__})") from None
        desired = parse_desired(text, str(file))
        settings = settings_factory(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id, store=store)
        code = _run_apply(
            settings,
            credential.value,
            desired,
            confirm=confirm,
            wait=wait,
            max_loss=max_loss,
            show_users=show_users,
            json_file=json_file,
            journal=lambda: open_journal(settings, file, None),
        )
        raise typer.Exit(code)

    @app.command()
    def rollback(
        change_id: Annotated[str, typer.Argument(help="The change id (from apply's output or --json).")],
        confirm: Annotated[bool, typer.Option("--confirm", help="Restore (without it: a dry run).")] = False,
        journal_file: Annotated[
            Path | None, typer.Option("--journal", help="The journal file (when no --store).")
        ] = None,
        wait: Annotated[int, typer.Option("--wait", min=1, max=MAX_WAIT_S)] = 600,
        max_loss: Annotated[int, typer.Option("--max-loss", min=0)] = 0,
        show_users: Annotated[bool, typer.Option("--show-users")] = False,
        json_file: Annotated[Path | None, typer.Option("--json")] = None,
        store: Annotated[str | None, typer.Option("--store")] = None,
        graph_url: Annotated[str | None, typer.Option("--graph-url")] = None,
        cloud: Annotated[str | None, typer.Option("--cloud")] = None,
        credential: Annotated[credential_type, typer.Option("--credential")] = default_credential,
        tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    ) -> None:
        """Restore a group's assignment as it was before CHANGE_ID (a dry run; --confirm restores it)."""
        from licensing.configure.rollback import desired_before

        settings = settings_factory(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id, store=store)
        if journal_file is None and settings.storage is None:
            raise ConfigurationError("rollback reads the journal: give --journal FILE or --store")
        book = open_journal(settings, None, journal_file)
        migrated = _rollback_migration(settings, credential.value, book, change_id, confirm=confirm, wait=wait)
        if migrated is not None:
            raise typer.Exit(migrated)
        desired = desired_before(book, change_id)
        code = _run_apply(
            settings,
            credential.value,
            desired,
            confirm=confirm,
            wait=wait,
            max_loss=max_loss,
            show_users=show_users,
            json_file=json_file,
            journal=lambda: book,
            kind="rollback",
            rollback_of=change_id,
        )
        raise typer.Exit(code)


def _rollback_migration(
    settings: Any, credential: str, book: Any, change_id: str, *, confirm: bool, wait: int
) -> int | None:
    """The rollback of a migration (a removal's change id, or the migration id): None when it is not one."""
    from licensing.configure.identity import signed_in
    from licensing.configure.migrate_confirm import migration_changes, restore_confirmed
    from licensing.configure.tenant import read_tenant_id
    from licensing.graph import open_graph

    console = new_console()

    async def go() -> int | None:
        async with open_graph(settings, credential=credential) as graph:
            changes = migration_changes(book, change_id, await read_tenant_id(graph))
            if changes is None:
                return None
            for c in changes:
                plans = "; ".join(f"{p.sku_id} (disabled: {', '.join(p.disabled_plans) or 'none'})" for p in c.before)
                say(console, f"  re-add to {c.user_id}: {plans} [removed by {c.id}]")
            if not confirm:
                say(console, f"{len(changes)} direct assignment(s) to restore; nothing was sent")
                return EXIT_PENDING
            who = await signed_in(graph)
            say(console, f"restoring as {who}; journal: {book.where}")
            done, stopped = await restore_confirmed(graph, changes, book, write_policy(console, who, wait))
            for d in done:
                say(console, f"{d.outcome.value:9} {d.label} [change {d.change_id}]")
            if stopped:
                say(console, f"STOPPED: {stopped}")
            return EXIT_FAILED if stopped else EXIT_OK

    return asyncio.run(go())


def _reprocess_command(app: typer.Typer, settings_factory: Callable[..., Any], credential_type: Any) -> None:
    default_credential = next(iter(credential_type))

    @app.command()
    def reprocess(
        group: Annotated[str | None, typer.Option("--group", help="Every member of this group in error.")] = None,
        user: Annotated[list[str] | None, typer.Option("--user", help="This user (repeat).")] = None,
        error: Annotated[
            list[str] | None, typer.Option("--error", help="Only users in this error (repeat; default: any).")
        ] = None,
        confirm: Annotated[bool, typer.Option("--confirm", help="Reprocess (without it: a dry run).")] = False,
        wait: Annotated[int, typer.Option("--wait", min=1, max=MAX_WAIT_S, help="Seconds to wait for results.")] = 300,
        rate: Annotated[float, typer.Option("--rate", min=0.1, max=20.0, help="Calls per second at most.")] = 4.0,
        journal_file: Annotated[
            Path | None, typer.Option("--journal", help="The journal file (when no --store).")
        ] = None,
        store: Annotated[str | None, typer.Option("--store")] = None,
        graph_url: Annotated[str | None, typer.Option("--graph-url")] = None,
        cloud: Annotated[str | None, typer.Option("--cloud")] = None,
        credential: Annotated[credential_type, typer.Option("--credential")] = default_credential,
        tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    ) -> None:
        """Reprocess the group-based licences of users in error, e.g. after seats were bought (dry run; --confirm)."""
        from licensing.configure.identity import signed_in
        from licensing.configure.reprocess import error_kinds, find_waiting, reprocess_confirmed
        from licensing.graph import open_graph

        if (group is None) == (not user):
            raise ConfigurationError("give --group ID or --user ID (one or more), not both")
        kinds = error_kinds(error or [])
        settings = settings_factory(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id, store=store)
        if confirm and journal_file is None and settings.storage is None:
            raise ConfigurationError("reprocess --confirm journals each call: give --journal FILE or --store")
        console = new_console()

        async def go() -> int:
            async with open_graph(settings, credential=credential.value) as graph:
                tenant, waiting = await find_waiting(graph, group=group, users=user or [], kinds=kinds)
                for w in waiting:
                    say(console, f"  {w.label} ({w.user_id}): {w.describe()}")
                say(console, f"{len(waiting)} user(s) to reprocess" + ("" if confirm else "; nothing was sent"))
                if not waiting:
                    return EXIT_OK
                if not confirm:
                    return EXIT_PENDING
                who = await signed_in(graph)
                book = open_journal(settings, None, journal_file)
                say(console, f"reprocessing as {who}; journal: {book.where}")
                results = await reprocess_confirmed(
                    graph, tenant, waiting, book, write_policy(console, who, wait), kinds=kinds,
                    group=group.lower() if group else None, pause_s=1.0 / rate,
                )  # fmt: skip
                for r in results:
                    say(console, f"{r.outcome.value:9} {r.user.label}: {r.user.describe()} -> {r.after} "
                                  f"[change {r.change_id}]")  # fmt: skip
                if any(r.outcome.value == "refused" for r in results):
                    return EXIT_FAILED
                return EXIT_OK if all(r.outcome.value == "verified" for r in results) else EXIT_BLOCKED

        raise typer.Exit(asyncio.run(go()))
