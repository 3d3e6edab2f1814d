"""The `hartonomous` command line (README.md; each command's help)."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import structlog
import typer

from hartonomous.cli import (
    access_commands,
    atoms_commands,
    backup_commands,
    billing_commands,
    broker_commands,
    cdc_commands,
    db_commands,
    inference_commands,
    ledger_commands,
    lineage_commands,
    models_commands,
    provenance_commands,
    search_commands,
    sync_commands,
    tenants_commands,
)
from hartonomous.cli.context import CliContext, cli_context, shown
from hartonomous.cli.ingest_command import ingest
from hartonomous.cli.serve_command import serve
from hartonomous.cli.status_command import status
from hartonomous.cli.up_command import up
from hartonomous.errors import HartonomousError, OperationFailedError
from hartonomous.observability import new_operation_id
from hartonomous.storable import storable_text

app = typer.Typer(
    name="hartonomous",
    help="PostgreSQL as a multimodal AI store with provenance.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Configuration.", no_args_is_help=True)
app.add_typer(db_commands.app, name="db")
app.command("ingest")(ingest)
app.add_typer(atoms_commands.atoms_app, name="atoms")
app.add_typer(atoms_commands.holdings_app, name="holdings")
app.add_typer(models_commands.models_app, name="models")
app.command("lineage")(lineage_commands.lineage)
app.command("explain")(provenance_commands.explain)
app.add_typer(provenance_commands.streams_app, name="streams")
app.add_typer(config_app, name="config")
app.command("up")(up)
app.command("serve")(serve)
app.command("status")(status)
app.add_typer(broker_commands.broker_app, name="broker")
app.add_typer(broker_commands.deadletters_app, name="deadletters")
app.command("ces-consumer")(cdc_commands.ces_consumer)
app.command("embed")(search_commands.embed)
app.command("search")(search_commands.search)
app.add_typer(sync_commands.sync_app, name="sync")
app.add_typer(sync_commands.graph_app, name="graph")
app.add_typer(inference_commands.infer_app, name="infer")
app.command("worker")(inference_commands.worker)
app.add_typer(tenants_commands.tenants_app, name="tenants")
app.add_typer(ledger_commands.ledger_app, name="ledger")
app.add_typer(billing_commands.billing_app, name="billing")
app.add_typer(access_commands.principals_app, name="principals")
app.add_typer(access_commands.keys_app, name="keys")
app.add_typer(backup_commands.backup_app, name="backup")
app.command("restore")(backup_commands.restore)


@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML settings file", dir_okay=False)
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Data directory (env HARTONOMOUS_DATA_DIR, default ./.hartonomous)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning or error", case_sensitive=False),
    ] = None,
) -> None:
    if log_level is not None and log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"{log_level!r} is not one of debug, info, warning, error")
    # Every log line of this command carries its name and a fresh operation id.
    structlog.contextvars.bind_contextvars(
        operation=ctx.invoked_subcommand, operation_id=new_operation_id()
    )
    ctx.obj = CliContext(
        config_file=config,
        data_dir=data_dir,
        as_json=as_json,
        log_level=None if log_level is None else log_level.lower(),
    )


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings, secrets masked."""
    from hartonomous.config import effective_settings

    state = cli_context(ctx)
    values = effective_settings(state.settings())
    state.emit(values, json.dumps(values, indent=2, default=str))


@app.command("smoke")
def smoke(ctx: typer.Context) -> None:
    """Schema smoke test: exit 0 only when everything is in place."""
    from hartonomous.services import open_platform
    from hartonomous.services.smoke import smoke_report

    state = cli_context(ctx)
    with open_platform(state.settings(), require_current_schema=False) as platform:
        report = smoke_report(platform)
    lines = [f"{check.verdict.value} {check.name}: {check.detail}" for check in report.checks]
    data = {
        "passed": report.passed,
        "checks": [
            {"name": c.name, "verdict": c.verdict.value, "detail": c.detail} for c in report.checks
        ],
    }
    state.emit(data, "\n".join(lines))
    if not report.passed:
        failed = ", ".join(f"{c.name} ({c.detail})" for c in report.failures)
        raise CommandFailedError(f"smoke failed: {failed}")


class CommandFailedError(OperationFailedError):
    """A command ran but its outcome is a failure (exit 1 with this reason)."""


def run() -> None:
    """Console entry point: one-line reasons and non-zero exits instead of tracebacks."""
    from hartonomous.services.database_errors import as_hartonomous_error

    args = visible_arguments(sys.argv[1:])
    as_json = "--json" in args
    interrupted = _note_interrupts()
    try:
        # Without standalone mode, click returns the code of a `typer.Exit` instead of raising.
        code = app(args=args, standalone_mode=False)
        if interrupted.is_set() and code == _INTERRUPTED_EXIT:
            # Typer turns KeyboardInterrupt into a silent exit 130; the reader gets one line.
            _fail("interrupted (Ctrl-C): work already committed is kept", as_json, code)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(_INTERRUPTED_EXIT)
    except typer.TyperException as usage:
        # Typer's (vendored click) usage errors know how to print themselves.
        show = getattr(usage, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"hartonomous: {usage}\n")
        sys.exit(int(getattr(usage, "exit_code", 2)))
    except HartonomousError as failure:
        hint = f": {failure.cli_hint}" if failure.cli_hint else ""
        _fail(f"{failure}{hint}", as_json, failure.exit_code, failure.code)
    except Exception as failure:
        # Services wrap driver errors themselves; a command not yet behind a service still
        # answers a database refusal in one line (traceback logged at debug level).
        wrapped = as_hartonomous_error(failure)
        if wrapped is None:
            raise
        structlog.get_logger(__name__).debug("database_error", exc_info=True)
        _fail(str(wrapped), as_json, wrapped.exit_code, wrapped.code)
    else:
        sys.exit(code if isinstance(code, int) else 0)


_INTERRUPTED_EXIT = 130  # 128 + SIGINT, what shells report for Ctrl-C


def _note_interrupts() -> threading.Event:
    """An event set by Ctrl-C (SIGINT), which still raises KeyboardInterrupt as Python's does."""
    interrupted = threading.Event()

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        interrupted.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    return interrupted


def visible_arguments(args: list[str]) -> list[str]:
    """``args`` with undecodable bytes made visible (``storable_text``: byte E9 becomes ``\\xe9``).

    Python hands a non-UTF-8 argument over with its bytes as U+DC80..U+DCFF; past this point
    every command sees ordinary text and answers with its usual error. An argument naming an
    existing file-system path keeps its exact bytes, so a non-UTF-8 file name still ingests.
    """
    return [
        arg if storable_text(arg) == arg or _names_a_path(arg) else storable_text(arg)
        for arg in args
    ]


def _names_a_path(arg: str) -> bool:
    # `--config=FILE` style: only the value after '=' can name the path.
    value = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else arg
    return os.path.lexists(value)


def _fail(reason: str, as_json: bool, exit_code: int, code: str | None = None) -> None:
    reason = reason.replace("\n", " ")
    sys.stdout.flush()  # what was printed reaches the reader before the reason
    if as_json:
        answer = {"error": reason} if code is None else {"error": reason, "code": code}
        sys.stderr.write(json.dumps(answer) + "\n")
    else:
        sys.stderr.write(f"hartonomous: error: {shown(reason)}\n")
    sys.exit(exit_code)
