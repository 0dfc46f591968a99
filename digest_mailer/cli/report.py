"""`digest-mailer report`: what one issue did, or every issue since a date (text, JSON,
and a self-contained HTML page with charts)."""

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from digest_mailer.cli import tables
from digest_mailer.cli.state import err, out, print_json, state
from digest_mailer.errors import InputError

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
NO_CLICKS = "none recorded (click tracking is off, or no link was followed)"


def register(app: typer.Typer) -> None:
    app.command("report")(report)


EARLIEST_YEAR = 2000  # of --since: before any newsletter this tool sent


def _since(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since {value!r}: give a date such as 2026-09-01") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment.year < EARLIEST_YEAR:  # weeks from year 1 would be 100,000 rows
        raise InputError(f"--since {value!r}: give a date from {EARLIEST_YEAR} on")
    return moment


def report(
    ctx: typer.Context,
    issue: Annotated[str | None, typer.Argument(help="Issue id, e.g. 2.4.")] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Every issue started since this date (YYYY-MM-DD), and the list's size "
            "week by week.",
            metavar="DATE",
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="With --since: also write one self-contained HTML page with charts "
            "(readable by you only).",
            metavar="FILE",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """What an issue did, or every issue since a date.

    For one issue: recipients; sent, deferred, failed and uncertain; the time the send
    took; hard and soft bounces with their most common reasons; complaints; the
    unsubscribes put down to it (through its signed link, or by email within 30 days
    after it was sent); clicks per link.

    With --since: one row per issue started since then, and the list's size by status
    at the end of each week (rebuilt from the history); --html FILE writes the same as
    one page with charts.

    Example: digest-mailer report 2.4 --json

    Example: digest-mailer report --since 2026-09-01 --html report.html
    """
    if issue is not None and since is not None:
        raise InputError("give an issue id or --since DATE, not both")
    if issue is None and since is None:
        raise InputError(
            "give an issue id (report 2.4) or --since DATE (report --since 2026-09-01)"
        )
    if html is not None and since is None:
        raise InputError("--html draws the issues over time: use it with --since DATE")
    st = state(ctx)
    if issue is not None:
        from digest_mailer.reports.issue import issue_report

        with st.transaction(dry_run=True) as session:
            figures = issue_report(session, issue)
        if as_json:
            print_json(figures)
        else:
            _print_issue(figures)
        return
    assert since is not None
    from digest_mailer.reports.across import across_report

    start = _since(since)
    with st.transaction(dry_run=True) as session:
        figures = across_report(session, start)
    if html is not None:
        from digest_mailer.reports.html import write_report_page

        write_report_page(html, figures, st.config.newsletter.title)
    if as_json:
        print_json(figures)
    else:
        _print_across(figures)
    if html is not None:  # said on stderr under --json, which keeps stdout for the JSON
        shown = f"{len(figures['issues'])} issue(s), {len(figures['weeks'])} week(s)"
        (err if as_json else out).print(f"wrote {html} ({shown})", markup=False)


def _print_lines(lines: list[str]) -> None:
    for line in lines:
        out.print(line, markup=False)


def _issue_pairs(f: dict[str, Any]) -> list[tuple[str, str]]:
    from digest_mailer.reports.wording import day, duration_text, share

    counts, sent = f["counts"], f["counts"]["sent"]
    took = f["time_to_send"]
    when = "-"
    if took:
        how = "start to end of the send" if took["measured"] == "issue" else "first to last message"
        when = f"{duration_text(took['seconds'])} ({how})"
    unsub = f["unsubscribes"]
    pairs = [
        ("issue", f["issue"]),
        ("subject", f["subject"]),
        ("state", f["state"]),
        ("started", f"{day(f['started_at'])} UTC" if f["started_at"] else "-"),
        ("time to send", when),
        ("recipients", str(f["recipients"])),
        ("sent", f"{sent} ({share(sent, f['recipients'])})"),
        ("deferred", str(counts["deferred"])),
        ("failed", str(counts["failed"])),
        ("uncertain", str(counts["uncertain"])),
    ]
    main = ("sent", "deferred", "failed", "uncertain")
    others = ", ".join(f"{n} {k}" for k, n in counts.items() if n and k not in main)
    if others:
        pairs.append(("other", others))
    bounces = f["bounces"]
    pairs += [
        (
            "hard bounces",
            f"{bounces['hard']} ({share(bounces['hard'], f['recipients'])} of recipients)",
        ),
        ("soft bounces", str(bounces["soft"])),
        ("complaints", f"{f['complaints']} ({share(f['complaints'], sent)} of sent)"),
        (
            "unsubscribes",
            f"{unsub['total']} ({share(unsub['total'], sent)} of sent): "
            f"{unsub['link']} by link, {unsub['email']} otherwise",
        ),
    ]
    if bounces["unverified"]:
        pairs.append(
            (
                "unverified",
                f"{bounces['unverified']} report(s) not counted above "
                "(matched by the address alone)",
            )
        )
    clicks = f["clicks"]
    pairs.append(
        (
            "clicks",
            f"{clicks['total']} on {len(clicks['links'])} link(s)"
            if clicks["links"]
            else NO_CLICKS,
        )
    )
    return pairs


def _print_issue(f: dict[str, Any]) -> None:
    width = out.width
    _print_lines(tables.card(_issue_pairs(f), width))
    reasons = f["bounces"]["reasons"]
    if reasons:
        out.print("\nMost common bounce reasons", markup=False)
        _print_lines(
            tables.fit(
                [
                    tables.Column("kind", [r["kind"] for r in reasons]),
                    tables.Column("status", [r["status"] or "-" for r in reasons]),
                    tables.Column(
                        "addresses", [str(r["addresses"]) for r in reasons], align="right"
                    ),
                    tables.Column("example", [r["example"] for r in reasons], "flex"),
                ],
                width,
            )
        )
    links = f["clicks"]["links"]
    if links:
        out.print("\nClicks per link", markup=False)
        _print_lines(
            tables.fit(
                [
                    tables.Column("link", [str(c["link"]) for c in links], align="right"),
                    tables.Column("clicks", [str(c["clicks"]) for c in links], align="right"),
                    tables.Column("address", [c["url"] for c in links], "flex"),
                ],
                width,
            )
        )


def _print_across(report: dict[str, Any]) -> None:
    from digest_mailer.reports.weekly import STATUSES
    from digest_mailer.reports.wording import day, duration_text

    width, issues, weeks = out.width, report["issues"], report["weeks"]
    out.print(
        f"Issues started since {report['since'][:10]} (as of {day(report['now'])} UTC)",
        markup=False,
    )
    if not issues:
        out.print("none", markup=False)
    else:

        def number(header: str, values: list[int], kind: str = "fixed") -> tables.Column:
            return tables.Column(header, [str(v) for v in values], kind, "right")

        took = [(i["time_to_send"] or {}).get("seconds") for i in issues]
        _print_lines(
            tables.fit(
                [
                    tables.Column("issue", [i["issue"] for i in issues]),
                    number("recip", [i["recipients"] for i in issues]),
                    number("sent", [i["counts"]["sent"] for i in issues]),
                    number("defer", [i["counts"]["deferred"] for i in issues]),
                    number("fail", [i["counts"]["failed"] for i in issues]),
                    number("uncert", [i["counts"]["uncertain"] for i in issues]),
                    number("hard", [i["bounces"]["hard"] for i in issues]),
                    number("soft", [i["bounces"]["soft"] for i in issues]),
                    number("compl", [i["complaints"] for i in issues]),
                    number("unsub", [i["unsubscribes"]["total"] for i in issues]),
                    number("clicks", [i["clicks"]["total"] for i in issues], "optional"),
                    tables.Column("time", [duration_text(t) for t in took], "optional", "right"),
                    # optional columns go last first: the start day, then the time
                    tables.Column(
                        "started", [day(i["started_at"])[:10] for i in issues], "optional"
                    ),
                ],
                width,
            )
        )
    out.print("\nList size at the end of each week (the last one ends now)", markup=False)
    columns = [tables.Column("week", [w["week"] for w in weeks])]
    for status in STATUSES:
        values = [str(w["counts"].get(status, 0)) for w in weeks]
        columns.append(tables.Column(status, values, "fixed", "right"))
    columns.append(tables.Column("total", [str(w["total"]) for w in weeks], "optional", "right"))
    _print_lines(tables.fit(columns, width))
