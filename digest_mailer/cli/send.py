"""`digest-mailer send`, `status`, `log` and `capture-smtp`.

The library is imported inside each command: `status` and `log` read the store and
need none of the composer, transports or signing that `send` loads."""

import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from digest_mailer.cli import tables
from digest_mailer.cli.compose import print_findings
from digest_mailer.cli.state import EncodingOption, IssueIdOption, err, out, print_json, state, warn
from digest_mailer.errors import SendPaused, TestSendFailed
from digest_mailer.kinds import DeliveryState

if TYPE_CHECKING:
    from digest_mailer.send.report import SendReport

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def register(app: typer.Typer) -> None:
    app.command("send")(send)
    app.command("status")(status)
    app.command("log")(log)
    app.command("capture-smtp")(capture_smtp)


@contextmanager
def _graceful_stop(stop: threading.Event):  # type: ignore[no-untyped-def]
    """First Ctrl-C (or SIGTERM): finish the messages in hand, record them, pause.
    A second Ctrl-C stops at once (rows in hand then show as uncertain on resume)."""

    def handler(signum, frame):  # type: ignore[no-untyped-def]
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("pausing: finishing the messages in hand…", style="yellow", markup=False)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def send(
    ctx: typer.Context,
    issue_file: Annotated[Path, typer.Argument(help="The issue: digest text or Markdown.")],
    test: Annotated[
        bool, typer.Option("--test", help="Send [TEST] copies to the seed list.")
    ] = False,
    to: Annotated[
        list[str] | None,
        typer.Option("--to", help="With --test: send to this address instead.", metavar="ADDRESS"),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    dry_run: Annotated[
        Path | None, typer.Option("--dry-run", help="Write each message as .eml into DIR.")
    ] = None,
    skip_test: Annotated[
        bool, typer.Option("--skip-test", help="Send without a test send (noted in the log).")
    ] = False,
    resend_uncertain: Annotated[
        bool, typer.Option("--resend-uncertain", help="Send again to uncertain recipients.")
    ] = False,
    allow_changed: Annotated[
        bool,
        typer.Option(
            "--allow-changed", help="Resume a send in progress although the issue changed."
        ),
    ] = False,
    issue_id: IssueIdOption = None,
    encoding: EncodingOption = None,
    worker: Annotated[
        bool,
        typer.Option("--worker", help="Share the send with other --worker processes (PostgreSQL)."),
    ] = False,
    lists: Annotated[
        list[str] | None,
        typer.Option(
            "--list",
            "-l",
            help="Send to the active members of this list (repeat for several).",
            metavar="NAME",
        ),
    ] = None,
    exclude_lists: Annotated[
        list[str] | None,
        typer.Option("--exclude-list", help="Leave out the members of this list.", metavar="NAME"),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print every lint warning, not a count.")
    ] = False,
    no_archive: Annotated[
        bool,
        typer.Option(
            "--no-archive",
            help="Keep the issue out of the public archive and feed (no 'View in your "
            "browser' link); give it to the --test send too.",
        ),
    ] = False,
) -> None:
    """Send an issue: first --test to the seed list, then to every active subscriber
    (or the members of --list).

    The send log records every recipient; after a crash, Ctrl-C or a lost server the same
    command resumes and sends to nobody twice. Sending the issue later to another list
    reaches only those not yet sent to. One send of an issue runs at a time. With
    --worker, run the same command on several machines: they share the send through
    PostgreSQL.

    Example: digest-mailer send vol-2.4.txt --test  (then without --test)
    """
    from digest_mailer import composer
    from digest_mailer import send as sending
    from digest_mailer.archive.render import archive_draft
    from digest_mailer.config import refuse_placeholders
    from digest_mailer.lease import take_lease
    from digest_mailer.lint import lint, lint_config
    from digest_mailer.signing import DkimSigner
    from digest_mailer.tokens import signing_secret
    from digest_mailer.transport import FileTransport, SMTPSettings

    st = state(ctx)
    config = st.config
    if to and not test:
        raise typer.BadParameter("--to goes with --test", param_hint="--to")
    if worker:
        sending.require_postgresql(st.store())
    if dry_run is None:
        refuse_placeholders(config)
    composed = composer.compose_file(
        issue_file, config, issue_id=issue_id, encoding=encoding, archive=not no_archive
    )
    if composed.source.encoding not in ("UTF-8", encoding):
        warn(
            f"{issue_file} was read as {composed.source.encoding} (it is not UTF-8); "
            "pass --encoding to choose another"
        )
    secret = signing_secret(config)
    signer = DkimSigner.from_config(config)  # a bad key stops here, before anything is sent
    findings = lint(composed) + lint_config(config)
    print_findings(findings, summary_for=None if verbose else issue_file)
    if test:
        _test_send(st, composed, secret, to or [], yes)
        return
    if dry_run is not None:
        with st.transaction(dry_run=True) as session:
            count = sending.dry_run(session, composed, config, FileTransport(dry_run), secret)
        out.print(
            f"dry run: wrote {count} message(s) to {dry_run}/; nothing was sent", markup=False
        )
        return
    settings = SMTPSettings.from_config(config)
    audience = sending.Audience(tuple(lists or ()), tuple(exclude_lists or ()))
    options = {
        "skip_test": skip_test,
        "resend_uncertain": resend_uncertain,
        "allow_changed": allow_changed,
        "worker": worker,
        "audience": audience,
        "archive": archive_draft(composed, config),
        "publish": not no_archive,
    }
    if not yes:
        # the question is asked with no transaction open: a person may take minutes to
        # answer, and one-click unsubscribes must not wait for them
        with st.transaction(dry_run=True) as session:
            preview = sending.prepare_send(session, composed, **options)
        if preview.queued:
            verb = "Resume sending" if preview.resuming else "Send"
            if preview.resuming and audience.line not in preview.audiences:
                verb = "Send"  # a new audience for an issue sent before
            typer.confirm(
                f"{verb} {preview.subject!r} (issue {preview.issue_id}) to {preview.queued} "
                f"recipient(s) ({audience.line}) through {settings.where}?",
                abort=True,
            )
    lease = None
    with st.transaction() as session:
        plan = sending.prepare_send(session, composed, **options)
        if plan.queued and not worker:
            lease = take_lease(
                session, plan.issue_id, config.workers.lease_seconds, config.smtp.connections
            )
    if plan.recovered_uncertain:
        warn(
            f"{len(plan.recovered_uncertain)} recipient(s) were in the middle of sending "
            f"when the last run stopped and are now uncertain (not resent unless "
            f"--resend-uncertain): {', '.join(plan.recovered_uncertain[:10])}"
        )
    for note in plan.notes:
        warn(note)
    if plan.queued == 0:
        with st.transaction() as session:
            done = sending.issue_status(session, plan.issue_id)[0]
        counts = {k: v for k, v in done["counts"].items() if v}  # type: ignore[union-attr]
        summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no recipients"
        out.print(
            f"nothing to send: issue {plan.issue_id} is {done['state']} ({summary})", markup=False
        )
        return
    report = _run_with_progress(st, plan, composed, settings, secret, signer, worker, lease)
    _print_report(report)
    if worker and report.state == "sending" and not report.paused_reason:
        out.print("this worker is done; other workers are finishing theirs", markup=False)
        return
    if report.state != "sent":
        raise SendPaused(
            f"send paused: {report.paused_reason or 'not finished'}; nothing was lost: run "
            f"`digest-mailer send {issue_file}` again to resume"
        )


SEED_QUESTION = 10  # a test send to more addresses than this asks first


def _test_send(st, composed, secret: bytes, to: list[str], yes: bool) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer import send as sending
    from digest_mailer.transport import SMTPSettings, SMTPTransport

    transport = SMTPTransport(SMTPSettings.from_config(st.config))
    if not yes and not to:
        with st.transaction(dry_run=True) as session:
            count = len(sending.test_recipients(session, st.config, to))
        if count > SEED_QUESTION:  # a seed list that grew by mistake (an import to it)
            typer.confirm(
                f"Send [TEST] copies to {count} addresses on the seed list "
                f"{st.config.seed.list!r}?",
                abort=True,
            )
    with st.transaction() as session:
        recipients = sending.test_recipients(session, st.config, to)
        results = sending.test_send(session, composed, st.config, transport, secret, recipients)
    for r in results:
        style = "green" if r.outcome.kind == "sent" else "bold red"
        out.print(
            f"{r.outcome.kind:>9}  {r.address}  {r.outcome.code or ''} {r.outcome.message}",
            style=style,
            markup=False,
        )
    ok = sum(r.outcome.kind == "sent" for r in results)
    out.print(
        f"test send of {composed.issue_id} ({composed.fingerprint[:12]}): "
        f"{ok} of {len(results)} accepted",
        markup=False,
    )
    if ok != len(results):
        raise TestSendFailed(
            f"the test send failed: {len(results) - ok} of {len(results)} test message(s) "
            "were not accepted; fix that, then test again (no subscriber got anything)"
        )


def _run_with_progress(st, plan, composed, settings, secret, signer, worker, lease):  # type: ignore[no-untyped-def]
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from digest_mailer import send as sending
    from digest_mailer.message import MessageTemplate
    from digest_mailer.transport import SMTPTransport

    stop = threading.Event()
    template = MessageTemplate(composed, st.config, signer=signer)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err.console, transient=False) as progress, _graceful_stop(stop):
        task = progress.add_task(f"issue {plan.issue_id}", total=plan.queued or 1, rate=0.0)
        started = time.monotonic()

        def update(done: int, total: int) -> None:
            elapsed = max(time.monotonic() - started, 1e-6)
            progress.update(task, completed=done, total=max(total, 1), rate=done / elapsed)

        args = (st.store(), plan.issue_id, st.config, template, lambda: SMTPTransport(settings))
        if worker:
            return sending.run_worker(*args, secret, progress=update, stop=stop)
        return sending.run_send(*args, secret, progress=update, stop=stop, lease=lease)


def _print_report(report: "SendReport") -> None:
    shown = {k: v for k, v in report.counts.items() if v}
    out.print(
        f"issue {report.issue_id}: {report.state}; "
        + ", ".join(f"{v} {k}" for k, v in shown.items()),
        markup=False,
    )


def status(
    ctx: typer.Context,
    issue: Annotated[str | None, typer.Argument(help="Issue id, e.g. 2.4 (default: all).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show each issue's send state, counts per delivery state, and how many of its
    recipients bounced or complained.

    Example: digest-mailer status 2.4 --json
    """
    from digest_mailer import send as sending

    with state(ctx).transaction() as session:
        rows = sending.issue_status(session, issue)
    if as_json:
        print_json(rows[0] if issue else rows)
        return
    width = out.width
    if issue:
        for line in tables.card(_status_card(rows[0]), width):
            out.print(line, markup=False)
        return
    if not rows:
        out.print("no issues yet: `digest-mailer send FILE --test` records one", markup=False)
        return

    def column(header: str, key: str, kind: str = "optional") -> tables.Column:
        values = [str(r["counts"][key]) for r in rows]  # type: ignore[index]
        return tables.Column(header, values, kind, "right")

    columns = [
        tables.Column("issue", [str(r["issue"]) for r in rows]),
        tables.Column("state", [str(r["state"]) for r in rows]),
        tables.Column(
            "sent",
            [f"{r['counts']['sent']}/{sum(r['counts'].values())}" for r in rows],  # type: ignore[index,union-attr]
            align="right",
        ),
        column("failed", "failed", "fixed"),
        column("uncertain", "uncertain", "fixed"),
        tables.Column("subject", [str(r["subject"]) for r in rows], "flex"),
        tables.Column(
            "bounced",
            [str(r["bounces"]["bounced"]) for r in rows],
            "optional",
            "right",  # type: ignore[index]
        ),
        tables.Column("to", [" | ".join(r["audiences"]) for r in rows], "optional"),  # type: ignore[arg-type]
    ]
    for line in tables.fit(columns, width):
        out.print(line, markup=False)


def _status_card(r: dict) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    counts = {k: v for k, v in r["counts"].items() if v}
    tested = "yes" if r["tested"] else "no"
    if r["skipped_test"]:
        tested += " (sent with --skip-test)"
    pairs = [
        ("issue", str(r["issue"])),
        ("subject", str(r["subject"])),
        ("state", str(r["state"])),
        ("tested", f"{tested}; {r['test_sends']} test message(s)"),
        ("sent to", "\n".join(r["audiences"]) or "(not sent yet)"),
        ("deliveries", ", ".join(f"{v} {k}" for k, v in counts.items()) or "none"),
        ("bounced", str(r["bounces"]["bounced"])),
        ("complained", str(r["bounces"]["complained"])),
        ("started", str(r["started_at"] or "-")),
        ("finished", str(r["finished_at"] or "-")),
        ("fingerprint", str(r["fingerprint"])),
    ]
    for w in r["workers"]:
        if w["state"] not in ("running", "lost"):
            continue
        pairs.append(("sender", f"{w['kind']} {w['id']} ({w['state']})"))
    if r["note"]:
        pairs.append(("note", str(r["note"])))
    return pairs


def log(
    ctx: typer.Context,
    issue: Annotated[str, typer.Argument(help="Issue id, e.g. 2.4.")],
    state_filter: Annotated[
        DeliveryState | None, typer.Option("--state", "-s", help="Only this delivery state.")
    ] = None,
    as_json: JsonOption = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV.")] = False,
) -> None:
    """The send log: one row per recipient with state, attempts, SMTP reply and Message-ID.

    Example: digest-mailer log 2.4 --state failed --csv > failed.csv
    """
    from digest_mailer import send as sending
    from digest_mailer.csvio import SafeWriter

    with state(ctx).transaction() as session:
        sending.get_issue(session, issue)  # a missing issue writes nothing, not a lone header
        rows = sending.delivery_log(session, issue, state_filter.value if state_filter else None)
        if as_csv:
            writer = SafeWriter(sys.stdout)
            writer.writerow(sending.LOG_FIELDS)
            for r in rows:
                writer.writerow(r[f] for f in sending.LOG_FIELDS)
            return
        rows = list(rows)
    if as_json:
        print_json(rows)
        return

    def values(field: str) -> list[str]:
        return ["" if r[field] is None else str(r[field]) for r in rows]

    columns = [
        tables.Column("address", values("address")),
        tables.Column("state", values("state")),
        tables.Column("tries", values("attempts"), "optional", "right"),
        tables.Column("code", values("code"), align="right"),
        tables.Column(
            "time (UTC)", [str(r["time"])[:16].replace("T", " ") for r in rows], "optional"
        ),
        tables.Column("reply", values("message"), "flex"),
        tables.Column("message id", values("message_id"), "optional"),
    ]
    for line in tables.fit(columns, out.width):
        out.print(line, markup=False)


def capture_smtp(
    maildir: Annotated[Path, typer.Option("--maildir", help="Maildir to store messages in.")],
    host: Annotated[str, typer.Option("--host")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8025,
) -> None:
    """Run a local SMTP server that accepts every message into a Maildir (Ctrl-C stops).

    Example: digest-mailer capture-smtp --maildir /tmp/captured --port 8025
    """
    from digest_mailer.capture import start_capture

    # the handler first: a SIGTERM once the server answers must stop it cleanly
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    controller = start_capture(maildir, host, port)
    out.print(f"capturing mail on {host}:{port} into {maildir}/ (Ctrl-C to stop)", markup=False)
    try:
        while not stopped.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    out.print(f"stopped; {controller.handler.count} message(s) captured", markup=False)
