"""``licensing-audit migrate``: move a group's members off their direct assignments, safely (docs/configure.md).

Exit codes (a contract, docs/design.md): 0 nothing to do (or, with ``--confirm``, every removal verified); 4
removals pending (dry run); 3 nothing safe to do; 2 bad input; 1 failure (with ``--confirm``: stopped at the first
problem, the output and the journal say where).
"""

import asyncio
import uuid
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
from licensing.errors import BadRequestError, ConfigurationError

__all__ = ["migrate_command"]


def migrate_command(app: typer.Typer, settings_factory: Callable[..., Any], credential_type: Any) -> None:
    default_credential = next(iter(credential_type))

    @app.command()
    def migrate(
        group: Annotated[str, typer.Option("--group", help="The group whose members hold direct assignments.")],
        sku: Annotated[list[str] | None, typer.Option("--sku", help="Only this product of the group (repeat).")] = None,
        waves: Annotated[str, typer.Option("--waves", help="Wave sizes, the first small; 'all' = the rest.")] = (
            "10,100,all"
        ),
        desired: Annotated[
            Path | None, typer.Option("--desired", help="Desired state: its direct_assignments are kept.")
        ] = None,
        accept_loss: Annotated[
            bool, typer.Option("--accept-loss", help="Also remove direct assignments whose users lose a service.")
        ] = False,
        confirm: Annotated[bool, typer.Option("--confirm", help="Remove them (without it: a dry run).")] = False,
        json_file: Annotated[Path | None, typer.Option("--json", help="Write licensing-migrate/1 JSON here.")] = None,
        wait: Annotated[int, typer.Option("--wait", min=1, max=MAX_WAIT_S)] = 600,
        journal_file: Annotated[
            Path | None, typer.Option("--journal", help="The journal file (default: next to --desired).")
        ] = None,
        store: Annotated[str | None, typer.Option("--store")] = None,
        graph_url: Annotated[str | None, typer.Option("--graph-url")] = None,
        cloud: Annotated[str | None, typer.Option("--cloud")] = None,
        credential: Annotated[credential_type, typer.Option("--credential")] = default_credential,
        tenant_id: Annotated[str | None, typer.Option("--tenant-id")] = None,
    ) -> None:
        """Remove direct assignments the group makes redundant, in waves (dry run; --confirm removes them)."""
        from licensing.clock import utcnow
        from licensing.configure.desired import parse_desired
        from licensing.configure.identity import signed_in
        from licensing.configure.migrate import MigrationStatus, parse_waves, plan_migration
        from licensing.configure.migrate_confirm import migrate_confirmed
        from licensing.configure.migrate_render import migrate_json_bytes, migrate_lines, migrate_result_lines
        from licensing.graph import open_graph

        try:
            uuid.UUID(group.strip())
        except ValueError:
            raise BadRequestError(f"--group {group}: not a GUID (00000000-0000-0000-0000-000000000000)") from None
        sizes = parse_waves(waves)
        state = None
        if desired is not None:
            try:
                text = desired.read_text(encoding="utf-8-sig")
            except OSError as exc:
                raise BadRequestError(f"--desired {desired}: cannot read it ({exc.strerror or 'error'})") from None
            state = parse_desired(text, str(desired))
        settings = settings_factory(graph_url=graph_url, cloud=cloud, tenant_id=tenant_id, store=store)
        has_journal = settings.storage is not None or journal_file is not None or desired is not None
        if confirm and not has_journal:
            raise ConfigurationError("migrate --confirm journals each removal: give --journal FILE, --desired, --store")
        book = open_journal(settings, desired, journal_file) if has_journal else None
        console = new_console()

        async def go() -> int:
            async with open_graph(settings, credential=credential.value) as graph:
                run = await plan_migration(graph, group, sku or [], waves=sizes, accept_loss=accept_loss,
                                           desired=state, journal=book, now=utcnow())  # fmt: skip
                for line in migrate_lines(run, confirming=confirm):
                    say(console, line)
                status = run.status
                if not confirm or status is not MigrationStatus.REMOVALS_PENDING:
                    write_json(json_file, migrate_json_bytes(run))
                    return {
                        MigrationStatus.NOTHING_TO_DO: EXIT_OK,
                        MigrationStatus.REMOVALS_PENDING: EXIT_PENDING,
                        MigrationStatus.NOTHING_SAFE: EXIT_BLOCKED,
                    }[status]
                who = await signed_in(graph)
                assert book is not None
                say(console, f"migrating as {who}; journal: {book.where}")
                done, stopped = await migrate_confirmed(graph, run, book, write_policy(console, who, wait))
                for line in migrate_result_lines(done, stopped, run.id):
                    say(console, line)
                write_json(json_file, migrate_json_bytes(run, done, stopped))
                return EXIT_FAILED if stopped else EXIT_OK

        raise typer.Exit(asyncio.run(go()))
