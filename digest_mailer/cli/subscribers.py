"""`digest-mailer subscribers ...`: manage the subscriber store."""

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest_mailer.cli.state import State, err, out, print_json, state, warn
from digest_mailer.kinds import SubscriberStatus

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from digest_mailer import subscribers
    from digest_mailer.welcome import Welcome

app = typer.Typer(
    rich_markup_mode=None,
    help="Add, remove, list, import and export subscribers.\n\n"
    "Example: digest-mailer subscribers import members.csv --list board",
    no_args_is_help=True,
)

ListOption = Annotated[str | None, typer.Option("--list", "-l", help="Name of a list.")]
StatusOption = Annotated[
    SubscriberStatus | None, typer.Option("--status", "-s", help="Only this status.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _report(
    report: "subscribers.ImportReport",
    *,
    as_json: bool,
    dry_run: bool = False,
    source: str | None = None,
    welcome: "list[Welcome] | None" = None,
) -> None:
    if as_json:
        data: dict[str, object] = {"dry_run": dry_run}
        if source is not None:
            data["file"] = source
            data["read"] = {"rows": report.rows, "bytes": report.size}
        data |= {
            "summary": report.summary(),
            "invalid": [
                {"row": i.row, "value": i.value, "reason": i.reason} for i in report.invalid
            ],
            "skipped": report.skipped_addresses,
            "warnings": [{"row": n.row, "message": n.message} for n in report.notes],
        }
        if welcome is not None:
            data["welcome"] = [w.as_dict() for w in welcome]
        print_json(data)
        return
    for w in welcome or []:
        if w.queued:
            out.print(w.detail, markup=False)
        else:
            warn(w.detail)
    for bad in report.invalid:
        where = f"row {bad.row}: " if bad.row else ""
        warn(bad.message or f"invalid {where}{bad.value!r}: {bad.reason}")
    for note in report.notes:
        warn(f"row {note.row}: {note.message}" if note.row else note.message)
    for skipped in report.skipped_addresses:
        warn(f"skipped {skipped}: not reactivated without --resubscribe")
    summary = ", ".join(f"{n} {k}" for k, n in report.summary().items())
    prefix = "dry run, nothing written: " if dry_run else ""
    if source is not None:
        prefix += f"read {report.rows} row(s), {report.size} bytes from {source}: "
    out.print(f"{prefix}{summary}", markup=False)


@app.command("add")
def add(
    ctx: typer.Context,
    emails: Annotated[list[str], typer.Argument(help="One or more email addresses.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Display name.")] = "",
    list_name: ListOption = None,
    resubscribe: Annotated[
        bool, typer.Option("--resubscribe", help="Reactivate unsubscribed/bounced addresses.")
    ] = False,
    welcome: Annotated[
        bool,
        typer.Option("--welcome", help="Send each address that ends up active the welcome mail."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Add subscribers, active at once (staff vouch for their consent).

    Any invalid address refuses the whole command. An address whose domain looks like a
    typo of a big mail provider (gmail.con, hotmial.com) is added as written, with a warning.

    --welcome sends the welcome mail (templates/welcome.*.j2) to each address that ends
    up active and never had one, unless [newsletter] welcome = false. It goes out at once
    through the [smtp] server; if the server cannot be reached, the next `requests
    process` sends it.

    Example: digest-mailer subscribers add ana@lab.org --name "Ana Lima" --welcome
    """
    from digest_mailer import subscribers

    st = state(ctx)
    sender = _WelcomeSender(st) if welcome else None  # settings checked before any change
    with st.transaction() as session:
        report = subscribers.add_subscribers(
            session,
            emails,
            name=name,
            list_name=list_name,
            resubscribe=resubscribe,
            allow_test_domains=st.config.subscribers.allow_test_domains,
        )
        welcomed = sender.queue(session, emails) if sender else None
    _report(report, as_json=as_json, welcome=welcomed)
    if sender is not None and welcomed is not None:
        sender.send(welcomed)


class _WelcomeSender:
    """``add --welcome``: the SMTP settings and the secret are read before anything
    changes; the welcomes are queued in the add's transaction and sent after it."""

    def __init__(self, st: State) -> None:
        from digest_mailer.tokens import signing_secret
        from digest_mailer.transport import SMTPSettings

        self.st = st
        self.settings = SMTPSettings.from_config(st.config)
        nl = st.config.newsletter
        self.secret = signing_secret(st.config) if nl.welcome and nl.public_url else None

    def queue(self, session: "Session", emails: list[str]) -> "list[Welcome]":
        from digest_mailer.welcome import welcome_added

        return welcome_added(session, self.st.config, emails, secret=self.secret)

    def send(self, welcomed: "list[Welcome]") -> None:
        from digest_mailer.inbox.outbox import send_replies
        from digest_mailer.transport import SMTPTransport

        if not any(w.queued for w in welcomed):
            return
        for r in send_replies(self.st.store(), self.st.config, SMTPTransport(self.settings)):
            line = f"{r.kind} to {r.address}: {r.outcome.kind} {r.outcome.code or ''}".rstrip()
            if r.outcome.kind == "sent":
                err.print(line, style="green", markup=False)
            else:
                warn(f"{line} {r.outcome.message}; `requests process` sends what is left")


@app.command("remove")
def remove(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="Address to unsubscribe.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why, for the record.")] = "",
) -> None:
    """Unsubscribe an address; the person and their history are kept.

    Example: digest-mailer subscribers remove ana@lab.org --reason "by phone"
    """
    from digest_mailer import subscribers

    with state(ctx).transaction() as session:
        subscriber, changed = subscribers.remove_subscriber(session, email, reason=reason)
    if changed:
        out.print(f"unsubscribed {subscriber.email}", markup=False)
    else:
        out.print(f"{subscriber.email} was already unsubscribed; nothing changed", markup=False)


@app.command("purge")
def purge(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="Address to erase.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Erase a person and their history (for erasure requests). Cannot be undone.

    Example: digest-mailer subscribers purge ana@lab.org --yes
    """
    from digest_mailer import subscribers

    if not yes:
        typer.confirm(f"Erase {email} and all of their history?", abort=True)
    with state(ctx).transaction() as session:
        subscriber_id = subscribers.purge_subscriber(session, email)
    out.print(f"erased subscriber #{subscriber_id}", markup=False)


@app.command("list")
def list_(
    ctx: typer.Context,
    status: StatusOption = None,
    list_name: ListOption = None,
    as_json: JsonOption = False,
) -> None:
    """List subscribers, whatever their status unless --status narrows it.

    Example: digest-mailer subscribers list --status active --list seed --json
    """
    from rich.table import Table

    from digest_mailer import subscribers

    with state(ctx).transaction() as session:
        rows = subscribers.list_subscribers(
            session, status=status.value if status else None, list_name=list_name
        )
        data = [subscribers.subscriber_dict(s) for s in rows]
    if as_json:
        print_json(data)
        return
    table = Table("email", "name", "status", "lists", "since")
    for d in data:
        table.add_row(
            str(d["email"]),
            str(d["name"]),
            str(d["status"]),
            ", ".join(d["lists"]),  # type: ignore[arg-type]
            str(d["created_at"])[:10],
        )
    out.print(table)
    out.print(f"{len(data)} subscriber(s)", markup=False)


@app.command("show")
def show(
    ctx: typer.Context,
    email: Annotated[str, typer.Argument(help="Address to show.")],
    as_json: JsonOption = False,
) -> None:
    """Show one subscriber: status, lists, attributes and the full history of changes.

    Example: digest-mailer subscribers show ana@lab.org
    """
    from rich.table import Table

    from digest_mailer import subscribers

    with state(ctx).transaction() as session:
        subscriber = subscribers.get_subscriber(session, email)
        data = subscribers.subscriber_dict(subscriber)
        events = [
            {
                "at": e.created_at.isoformat(),
                "kind": e.kind,
                "from": e.old_status,
                "to": e.new_status,
                "by": e.actor,
                "detail": e.detail,
            }
            for e in subscriber.events
        ]
    if as_json:
        print_json({**data, "events": events})
        return
    for key in ("email", "name", "status", "source", "lists", "created_at", "unsubscribed_at"):
        value = data[key]
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        out.print(f"{key:>16}: {value if value not in (None, '') else '-'}", markup=False)
    if data["unsubscribe_reason"]:
        out.print(f"{'reason':>16}: {data['unsubscribe_reason']}", markup=False)
    attributes: dict[str, str] = data["attributes"]  # type: ignore[assignment]
    label = f"{'attributes':>16}: "
    for attribute, value in attributes.items():
        shown = " / ".join(value.splitlines())  # a cell over several lines on one
        out.print(f"{label}{attribute}: {shown}", markup=False)
        label = " " * len(label)
    if not attributes:
        out.print(f"{label}-", markup=False)
    table = Table("when", "what", "status", "by", "detail", title="history")
    for e in events:
        change = f"{e['from'] or ''} -> {e['to']}" if e["to"] else ""
        table.add_row(str(e["at"])[:19], str(e["kind"]), change, str(e["by"]), str(e["detail"]))
    out.print(table)


@app.command("import")
def import_(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV exported from a spreadsheet or mail tool.")],
    list_name: ListOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would change; write nothing.")
    ] = False,
    resubscribe: Annotated[
        bool, typer.Option("--resubscribe", help="Reactivate unsubscribed/bounced addresses.")
    ] = False,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encoding",
            help="The file's encoding if not UTF-8, such as cp1252 or shift_jis; with "
            "one-byte encodings (cp1252, latin-1) rows that are valid UTF-8 stay UTF-8. "
            "Default: UTF-8 with or without BOM, UTF-16 with BOM.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Import subscribers from CSV: rows that cannot be used are skipped and reported, the
    rest is imported.

    Finds the email column by its header (email, e-mail, Email Address) or by its content,
    and a name column if any; comma, semicolon or tab separated. Other columns
    (Organisation, Country…) are kept as attributes of each subscriber.

    A row with an invalid address, or with bytes that are not text in the file's encoding,
    is skipped and reported with its row number; the other rows are added or updated, in
    one transaction. A file that cannot be read at all (no email column, binary) imports
    nothing. Unsubscribed and bounced addresses stay so without --resubscribe. A domain
    that looks like a typo (gmail.con) is imported as written, with a warning.

    Example: digest-mailer subscribers import members.csv --dry-run
    """
    from digest_mailer import subscribers

    st = state(ctx)
    with st.transaction(dry_run=dry_run) as session:
        report = subscribers.import_csv(
            session,
            file,
            list_name=list_name,
            resubscribe=resubscribe,
            allow_test_domains=st.config.subscribers.allow_test_domains,
            encoding=encoding,
        )
    _report(report, as_json=as_json, dry_run=dry_run, source=str(file))


@app.command("export")
def export(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="CSV file to write, or - for standard output.")],
    status: StatusOption = None,
    list_name: ListOption = None,
) -> None:
    """Export subscribers as UTF-8 CSV with a header row: email, name, status, lists,
    source and dates, then one column per attribute. The file is readable by its owner only.

    Import reads the attribute columns back; status, lists, source and dates are the
    store's own record and are not read back.

    Example: digest-mailer subscribers export active.csv --status active
    """
    from digest_mailer import subscribers

    chosen = status.value if status else None
    with state(ctx).transaction() as session:
        if file == "-":
            subscribers.export_csv(session, sys.stdout, status=chosen, list_name=list_name)
            return
        count = subscribers.export_csv_file(session, Path(file), status=chosen, list_name=list_name)
    out.print(f"wrote {count} subscriber(s) to {file}", markup=False)
