"""`digest-mailer bounces ...`: delivery reports and complaints turned into subscriber status."""

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from digest_mailer.cli.state import out, print_held, print_json, state

app = typer.Typer(
    rich_markup_mode=None,
    help="Bounces and complaints: read the bounce mailbox, list what was recorded.\n\n"
    "Example: digest-mailer bounces process --dry-run",
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
    to its delivery and score the subscriber, only on proof: our VERP token or the
    Message-ID of a message we sent. Reports matched by the address alone are recorded
    as unverified and change nobody.

    Without --mbox, --maildir or --imap, the [bounces] config decides. Reading the same
    reports again changes nothing.

    Example: digest-mailer bounces process --maildir ~/Maildir/.bounces --json
    """
    from digest_mailer.bounces.process import process_bounces
    from digest_mailer.inbox.sources import open_source

    st = state(ctx)
    source = open_source(
        st.config, mbox=mbox, maildir=maildir, imap=imap, read_only=dry_run, bounces=True
    )
    run = process_bounces(st.store(), st.config, source, dry_run=dry_run)
    results = run.results
    if as_json:
        print_json([r.as_dict() for r in results])
        print_held(run.held)
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
    unverified = sum(r.proof == "unverified" for r in results)
    if unverified:
        out.print(
            f"{unverified} unverified: no VERP token or Message-ID of ours, so nobody's "
            "status changed (see `bounces list`; [bounces] trust_unverified)",
            markup=False,
        )
    print_held(run.held)


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
    from rich.table import Table

    from digest_mailer.bounces import scoring as bounces

    start = _since(since)
    with state(ctx).transaction() as session:
        rows = list(bounces.list_bounces(session, start))
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no bounces recorded" + (f" since {since}" if since else ""), markup=False)
        return
    table = Table("time", "address", "kind", "status", "issue", "proof", "action", box=None)
    for r in rows:
        table.add_row(
            r["time"][:16], r["address"], r["kind"], r["status"], r["issue"] or "",
            r["matched_by"] or "-", r["action"],
        )  # fmt: skip
    out.print(table)
