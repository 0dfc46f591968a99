"""`digest-mailer requests ...`: the request mailbox (subscribe and unsubscribe by email)."""

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest_mailer.cli.state import State, err, out, print_held, print_json, state
from digest_mailer.kinds import Label

if TYPE_CHECKING:
    from digest_mailer.inbox.outbox import ReplyResult

app = typer.Typer(
    rich_markup_mode=None,
    help="Requests people email to the digest address: subscribe, unsubscribe, confirm.\n\n"
    "Example: digest-mailer requests process --dry-run",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _smtp(st: State):  # type: ignore[no-untyped-def]
    from digest_mailer.transport import SMTPSettings, SMTPTransport

    settings = SMTPSettings.from_config(st.config)
    return lambda: SMTPTransport(settings)


def _print_replies(replies: "list[ReplyResult]") -> None:
    for r in replies:
        style = "green" if r.outcome.kind == "sent" else "yellow"
        err.print(
            f"reply {r.kind} to {r.address}: {r.outcome.kind} {r.outcome.code or ''} "
            f"{r.outcome.message}".rstrip(),
            style=style,
            markup=False,
        )


@app.command("process")
def process(
    ctx: typer.Context,
    mbox: Annotated[Path | None, typer.Option("--mbox", help="Read this mbox file.")] = None,
    maildir: Annotated[Path | None, typer.Option("--maildir", help="Read this Maildir.")] = None,
    imap: Annotated[bool, typer.Option("--imap", help="Read the IMAP folder in [inbox].")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and print; change and send nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Read the request mailbox, act on each message, send confirmations and replies.

    Without --mbox, --maildir or --imap, the [inbox] config decides. Processing the same
    messages again changes nothing.

    Example: digest-mailer requests process --mbox in.mbox --dry-run --json
    """
    from digest_mailer.inbox import actions
    from digest_mailer.inbox.sources import open_source

    st = state(ctx)
    config = st.config
    source = open_source(config, mbox=mbox, maildir=maildir, imap=imap, read_only=dry_run)
    run, replies = actions.process_inbox(
        st.store(), config, source, dry_run=dry_run, make_transport=None if dry_run else _smtp(st)
    )
    results = run.results
    if as_json:
        print_json([r.as_dict() for r in results])
    else:
        for r in results:
            out.print(
                f"{r.label:<11} {r.sender or '(no sender)'}: {r.action} ({r.reason})",
                markup=False,
            )
        counts = Counter(r.label for r in results)
        summary = ", ".join(f"{counts[k]} {k}" for k in Label if counts[k]) or "none"
        repeated = sum(r.action == "none: already processed" for r in results)
        if repeated:
            summary += f"; {repeated} already processed before"
        out.print(
            f"{len(results)} message(s) from {source.name}: {summary}"
            + (" (dry run: nothing changed, nothing sent)" if dry_run else ""),
            markup=False,
        )
    print_held(run.held)
    _print_replies(replies)


@app.command("review")
def review(ctx: typer.Context, as_json: JsonOption = False) -> None:
    """Show the requests waiting for staff, oldest first.

    Example: digest-mailer requests review
    """
    from digest_mailer.inbox import actions

    with state(ctx).transaction() as session:
        held = [actions.message_dict(r) for r in actions.review_queue(session)]
    if as_json:
        print_json(held)
        return
    if not held:
        out.print("no requests waiting for review", markup=False)
        return
    for r in held:
        out.print(
            f"#{r['id']}  {r['from'] or '(no sender)'}  {r['subject']!r}\n"
            f"    why: {r['reason']}\n"
            + "".join(f"    | {line}\n" for line in (r["excerpt"] or "(nothing)").splitlines()[:8]),
            markup=False,
        )
    out.print(
        f"{len(held)} waiting; settle each with "
        "`digest-mailer requests resolve ID subscribe|unsubscribe|ignore [--address A]`",
        markup=False,
    )


@app.command("resolve")
def resolve(
    ctx: typer.Context,
    request_id: Annotated[int, typer.Argument(help="The request's id (see `requests review`).")],
    decision: Annotated[str, typer.Argument(help="subscribe, unsubscribe or ignore.")],
    address: Annotated[
        str | None, typer.Option("--address", help="Act on this address, not the sender's.")
    ] = None,
) -> None:
    """Settle a request held for review. Subscribe sends a confirmation (double opt-in);
    unsubscribe takes effect at once and is acknowledged.

    Example: digest-mailer requests resolve 12 subscribe --address ana@lab.org
    """
    from digest_mailer.inbox import actions
    from digest_mailer.inbox.actions import InboxContext
    from digest_mailer.inbox.outbox import send_replies

    st = state(ctx)
    make_transport = _smtp(st)  # a missing SMTP setting stops before anything changes
    with st.transaction() as session:
        result = actions.resolve_message(
            session, InboxContext(st.config), request_id, decision, address
        )
    out.print(f"request #{request_id}: {result.action}", markup=False)
    _print_replies(send_replies(st.store(), st.config, make_transport()))


@app.command("list")
def list_(
    ctx: typer.Context,
    label: Annotated[str | None, typer.Option("--label", help="Only this label.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """The record of processed requests, newest first.

    Example: digest-mailer requests list --label unsubscribe --json
    """
    from rich.table import Table

    from digest_mailer.inbox import actions

    if label is not None and label not in set(Label):
        raise typer.BadParameter(f"one of {', '.join(Label)}", param_hint="--label")
    with state(ctx).transaction() as session:
        rows = [
            actions.message_dict(r)
            for r in actions.list_messages(session, label=label, limit=limit)
        ]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "label", "state", "from", "action", box=None)
    for r in rows:
        table.add_row(str(r["id"]), r["label"], r["state"], r["from"], r["action"])
    out.print(table)
