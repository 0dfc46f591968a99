"""`digest-mailer schedule ...`: sends recorded for a later time, sent by `run`."""

from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from digest_mailer.cli import tables
from digest_mailer.cli.state import EncodingOption, IssueIdOption, out, print_json, state


class ScheduleGroup(TyperGroup):
    """`schedule FILE --at TIME` is `schedule add FILE --at TIME`; `schedule list` and
    `schedule cancel ID` are commands of their own (a file named "list" is ./list)."""

    def parse_args(self, ctx, args):  # type: ignore[no-untyped-def]
        if args and args[0] not in self.commands and args[0] != "--help":
            args = ["add", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=ScheduleGroup,
    rich_markup_mode=None,
    help="Send a tested issue later: `digest-mailer run` sends it when due.\n\n"
    "`schedule FILE --at TIME` is short for `schedule add FILE --at TIME`.\n\n"
    'Example: digest-mailer schedule vol-2.4.txt --at "2026-12-08 09:00"',
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("add")
def add(
    ctx: typer.Context,
    issue_file: Annotated[Path, typer.Argument(help="The issue, tested with send --test.")],
    at: Annotated[
        str,
        typer.Option("--at", help='When: "YYYY-MM-DD HH:MM", local time.', metavar="TIME"),
    ],
    tz: Annotated[
        str | None,
        typer.Option(
            "--tz",
            help="Time zone of --at, e.g. Asia/Tokyo (default: this machine's zone, else UTC).",
            metavar="ZONE",
        ),
    ] = None,
    lists: Annotated[
        list[str] | None,
        typer.Option("--list", "-l", help="Send to this list's members (repeat).", metavar="NAME"),
    ] = None,
    exclude_lists: Annotated[
        list[str] | None,
        typer.Option("--exclude-list", help="Leave out this list's members.", metavar="NAME"),
    ] = None,
    no_archive: Annotated[
        bool,
        typer.Option("--no-archive", help="Keep it out of the public archive, as send does."),
    ] = False,
    issue_id: IssueIdOption = None,
    encoding: EncodingOption = None,
) -> None:
    """Record a send of this exact version of the issue at a time.

    The file must have had a successful test send (send --test, with --no-archive if
    given here). When due, `digest-mailer run` composes the file again and sends it as
    `send` would; a file changed since is refused, never sent. A time that does not
    exist in the zone (when the clocks go forward) is refused; one that happens twice
    (when they go back) is the first.

    Example: digest-mailer schedule v2.4.txt --at "2026-12-08 09:00" --tz UTC
    """
    from digest_mailer.config import refuse_placeholders
    from digest_mailer.models import utcnow
    from digest_mailer.schedule import compose_scheduled, due_time, schedule_send
    from digest_mailer.send.plan import Audience

    st = state(ctx)
    due = due_time(at, tz, utcnow())
    refuse_placeholders(st.config)
    composed = compose_scheduled(
        issue_file, st.config, issue_id=issue_id, encoding=encoding, archive=not no_archive
    )
    audience = Audience(tuple(lists or ()), tuple(exclude_lists or ()))
    with st.transaction() as session:
        row = schedule_send(session, composed, due, audience=audience, archive=not no_archive)
        number, line = row.id, f"{audience.line}" + (", not archived" if no_archive else "")
    zone = "" if tz else " (this machine's zone; --tz chooses another)"
    out.print(
        f"scheduled #{number}: issue {composed.issue_id} ({composed.fingerprint[:12]}) "
        f"at {due.describe()}{zone}, to {line}",
        markup=False,
    )
    out.print(
        f"`digest-mailer run` sends it when due; `digest-mailer schedule cancel {number}` "
        "cancels it",
        markup=False,
    )


@app.command("list")
def list_(
    ctx: typer.Context,
    open_only: Annotated[
        bool, typer.Option("--open", help="Only those scheduled or running.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """List the scheduled sends by due time, with their state and note.

    The due time is shown in its zone and in UTC. A send refused when due (its file
    changed, no test send) says why in its note.

    Example: digest-mailer schedule list --json
    """
    from digest_mailer.schedule import list_scheduled

    with state(ctx).transaction() as session:
        rows = list_scheduled(session, open_only=open_only)
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print('nothing scheduled: `digest-mailer schedule FILE --at "…"`', markup=False)
        return
    columns = [
        tables.Column("id", [str(r["id"]) for r in rows], align="right"),
        tables.Column("issue", [str(r["issue"]) for r in rows]),
        tables.Column("due", [f"{r['due'][:16].replace('T', ' ')} {r['zone']}" for r in rows]),
        tables.Column("UTC", [str(r["due_utc"])[:16].replace("T", " ") for r in rows], "optional"),
        tables.Column("state", [str(r["state"]) for r in rows]),
        tables.Column("to", [str(r["audience"]) for r in rows], "optional"),
        tables.Column("note", [str(r["note"]) for r in rows], "flex"),
    ]
    for line in tables.fit(columns, out.width):
        out.print(line, markup=False)


@app.command("cancel")
def cancel(
    ctx: typer.Context,
    schedule_id: Annotated[int, typer.Argument(help="Its id (see `schedule list`).")],
) -> None:
    """Cancel a scheduled send that is waiting for its time (or paused).

    A send in progress is not cancelled here: stop the `digest-mailer run` process
    sending it (SIGTERM pauses the send), then cancel it.

    Example: digest-mailer schedule cancel 3
    """
    from digest_mailer.schedule import cancel_scheduled, schedule_dict

    with state(ctx).transaction() as session:
        row = schedule_dict(cancel_scheduled(session, schedule_id))
    when = f"{row['due'][:16].replace('T', ' ')} {row['zone']}"
    out.print(f"cancelled #{schedule_id} (issue {row['issue']}, due {when})", markup=False)
