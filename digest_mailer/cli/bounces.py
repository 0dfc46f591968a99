"""`digest-mailer bounces ...`: delivery reports and complaints turned into subscriber status."""

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from digest_mailer import bounces
from digest_mailer.cli.state import out, print_json, state
from digest_mailer.inbox import open_source

app = typer.Typer(
    help="Bounces and complaints: read the bounce mailbox, list what was recorded.",
    no_args_is_help=True,
)
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@app.command("process")
def process(
    ctx: typer.Context,
    mbox: Annotated[Path | None, typer.Option("--mbox", help="Read this mbox file.")] = None,
    maildir: Annotated[Path | None, typer.Option("--maildir", help="Read this Maildir.")] = None,
    imap: Annotated[
        bool, typer.Option("--imap", help="Read [bounces] imap_folder on the [inbox] server.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Read and print; change nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Read delivery reports (DSN, plain-text notices) and complaints (ARF), match each
    to its delivery (VERP token, Message-ID, address) and score the subscriber.

    Without --mbox, --maildir or --imap, the [bounces] config decides. Reading the same
    reports again changes nothing.

    Example: digest-mailer bounces process --maildir ~/Maildir/.bounces --json
    """
    st = state(ctx)
    source = open_source(
        st.config, mbox=mbox, maildir=maildir, imap=imap, read_only=dry_run, bounces=True
    )
    results = bounces.process_bounces(st.store(), st.config, source, dry_run=dry_run)
    if as_json:
        print_json([r.as_dict() for r in results])
        return
    for r in results:
        what = f"{r.kind} {r.status}".strip() if r.kind else "-"
        out.print(f"{what:<14} {r.address or '(no address)'}: {r.action}", markup=False)
    kinds = Counter(r.kind or "not a report" for r in results)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    out.print(
        f"{len(results)} result(s) from {source.name}: {summary}"
        + (" (dry run: nothing changed)" if dry_run else ""),
        markup=False,
    )


def _since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter("a date such as 2026-11-01", param_hint="--since") from None
    return day if day.tzinfo else day.replace(tzinfo=UTC)


@app.command("list")
def list_(
    ctx: typer.Context,
    since: Annotated[
        str | None, typer.Option("--since", help="Only from this date (YYYY-MM-DD) on.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Every recorded bounce and complaint, oldest first, with what it did.

    Example: digest-mailer bounces list --since 2026-11-01 --json
    """
    start = _since(since)
    with state(ctx).transaction() as session:
        rows = list(bounces.list_bounces(session, start))
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no bounces recorded" + (f" since {since}" if since else ""), markup=False)
        return
    table = Table("time", "address", "kind", "status", "issue", "action", box=None)
    for r in rows:
        table.add_row(
            r["time"][:16], r["address"], r["kind"], r["status"], r["issue"] or "", r["action"]
        )
    out.print(table)
