"""`digest-mailer run`: the long-running service (scheduled sends, mailboxes, outbox, pages)."""

from enum import StrEnum
from typing import Annotated

import typer

from digest_mailer.cli.state import state


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def run(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address the pages listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[
        int, typer.Option("--port", help="Port the pages listen on.", min=1, max=65535)
    ] = 8000,
    no_web: Annotated[bool, typer.Option("--no-web", help="Serve no pages.")] = False,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="text, or json: one object a line.")
    ] = LogFormat.TEXT,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log every job run, even idle ones.")
    ] = False,
) -> None:
    """Run the service: scheduled sends, mailboxes, outbox and the pages, until stopped.

    Sends what `schedule` recorded when it is due; reads the request and bounce
    mailboxes ([inbox], [bounces]) and sends queued replies every [run] poll_seconds;
    serves the pages `serve` serves. Logs one line per event on stderr. SIGTERM or
    Ctrl-C stops it cleanly (exit 0): a send in progress pauses and the next `run`
    resumes it. On PostgreSQL several `run` processes may share the store (each job
    runs in one place at a time); on SQLite run one.

    Example: digest-mailer run --host 127.0.0.1 --port 8000 --log-format json
    """
    from digest_mailer.service import ServiceOptions, run_service

    st = state(ctx)
    options = ServiceOptions(host, port, not no_web, log_format.value, verbose)
    run_service(st.store(), st.config, options)
