"""The root Typer app: global options, error handling in one place, command groups.

Start-up is kept short: this module and the command modules import typer and cheap
modules only; each command imports the library it uses when it runs (tests/
test_cli_startup.py checks that `--help` loads no database, mail or HTML library).
"""

import os
import sys
import traceback
from typing import Annotated

import typer
from typer.core import TyperGroup

from digest_mailer import __version__
from digest_mailer.cli import (
    archive,
    bounces,
    compose,
    dkim,
    doctor,
    lists,
    report,
    requests,
    run,
    schedule,
    send,
    serve,
    store,
    subscribers,
)
from digest_mailer.cli.state import err, state
from digest_mailer.errors import DigestMailerError, ExitCode


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"error: {message}", style="bold red", markup=False)
    return typer.Exit(code)


def keep_examples(command) -> None:  # type: ignore[no-untyped-def]
    """Click rewraps help paragraphs; an ``Example:`` paragraph is kept as written (a
    wrapped command line cannot be copied), here and in every subcommand."""
    if command.help and "\b\nExample:" not in command.help:
        command.help = command.help.replace("\nExample:", "\n\b\nExample:")
        if command.help.startswith("Example:"):
            command.help = "\b\n" + command.help
    for sub in getattr(command, "commands", {}).values():
        keep_examples(sub)


class DigestGroup(TyperGroup):
    """Turns every library error into one red line and an exit code, never a traceback.
    Help is Click's plain text (no Rich markup: "[inbox]" stays as written)."""

    def get_command(self, ctx, cmd_name):  # type: ignore[no-untyped-def]
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            keep_examples(command)
        return command

    def format_help(self, ctx, formatter):  # type: ignore[no-untyped-def]
        keep_examples(self)
        super().format_help(ctx, formatter)

    def invoke(self, ctx):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors and deliberate exits keep their own handling
        except DigestMailerError as exc:
            raise _fail(str(exc), exc.exit_code) from None
        except Exception as exc:
            raise _database_error(exc) or _other_error(exc) from None


def _database_error(exc: Exception) -> typer.Exit | None:
    """A SQLAlchemy error as one line, exit 3. SQLAlchemy is not imported for this: an
    error of its kind can only come from a command that loaded it."""
    sa_exc = sys.modules.get("sqlalchemy.exc")
    if sa_exc is None:
        return None
    if isinstance(exc, sa_exc.DBAPIError):
        first = str(exc.orig or exc).strip().splitlines()[0]
        return _fail(f"database error: {first}", ExitCode.STORE)
    if isinstance(exc, sa_exc.SQLAlchemyError):
        return _fail(f"database error: {exc}", ExitCode.STORE)
    return None


def _other_error(exc: Exception) -> typer.Exit:
    if isinstance(exc, OSError):
        return _fail(f"{exc.filename or 'system'}: {exc.strerror or exc}", ExitCode.INPUT)
    if os.environ.get("DIGEST_MAILER_DEBUG"):
        traceback.print_exception(exc)
    return _fail(
        f"internal error ({type(exc).__name__}: {exc}); "
        "set DIGEST_MAILER_DEBUG=1 to see the traceback",
        ExitCode.INTERNAL,
    )


app = typer.Typer(
    rich_markup_mode=None,
    cls=DigestGroup,
    name="digest-mailer",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
app.add_typer(subscribers.app, name="subscribers")
app.add_typer(lists.app, name="lists")
app.add_typer(requests.app, name="requests")
app.add_typer(bounces.app, name="bounces")
app.add_typer(dkim.app, name="dkim")
app.add_typer(archive.app, name="archive")
app.add_typer(schedule.app, name="schedule")
store.register(app)
compose.register(app)
send.register(app)
report.register(app)
serve.register(app)
run.register(app)
doctor.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"digest-mailer {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            help="Config file (default: $DIGEST_MAILER_CONFIG, else ./config.toml).",
            metavar="PATH",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """digest-mailer: keep subscribers, compose each issue, send it once to everyone.

    Example: digest-mailer --config config.toml subscribers list
    """
    state(ctx).config_path = config


def main() -> None:
    # every file the tool writes (databases, exports, captured mail, keys, previews) is
    # private to its user unless the code gives it another mode on purpose
    os.umask(0o077)
    app()
