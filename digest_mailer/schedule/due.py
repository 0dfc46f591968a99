"""Sending the scheduled sends that are due (:func:`run_due`, which `digest-mailer run`
calls every second).

Each due send runs as a job of its own (``schedule:ID``) under
:func:`~digest_mailer.joblock.job_lock`, so on PostgreSQL one process sends it however
many `run` processes share the store:

1. the file is read and composed again, as `send` composes it; a file that is missing,
   unreadable or composes to another fingerprint than the one scheduled makes the send
   ``refused``, with a note naming why, and nothing is sent: a stale version never goes
   out;
2. the send is planned and its lease taken in one transaction with the schedule's move
   to ``running`` (:func:`~digest_mailer.send.plan.prepare_send` and
   :func:`~digest_mailer.lease.take_lease`, as `send` does): a test send of this version
   is required, and an issue another process is sending makes it wait (``busy``);
3. it is sent by :func:`~digest_mailer.send.run.run_send`, the loop `send` runs; it
   becomes ``sent`` when the send finishes. A send that pauses (a stop request, the
   database or the mail server away for too long) stays ``running``, and the next call
   resumes it through the same send log: nobody gets it twice.

A problem of the setup (the configuration, the database, the mail server) leaves the
send as it is, to be tried again (``retry``); a problem of the send itself (the file, the
lists, the missing test send) refuses it for good; an unexpected error marks it
``failed``, with the error in its note.
"""

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from digest_mailer import composer
from digest_mailer.archive.render import archive_draft
from digest_mailer.composer import ComposedIssue
from digest_mailer.config import Config, refuse_placeholders
from digest_mailer.db import Store
from digest_mailer.errors import ConfigError, DigestMailerError, SendRefused, TransportError
from digest_mailer.joblock import job_lock
from digest_mailer.kinds import OPEN_SCHEDULE_STATES, IssueState, ScheduleState
from digest_mailer.lease import live_holders, take_lease
from digest_mailer.message import MessageTemplate
from digest_mailer.models import Issue, ScheduledSend, utcnow
from digest_mailer.schedule.records import audience_of, get_scheduled
from digest_mailer.send.plan import prepare_send
from digest_mailer.send.report import delivery_counts
from digest_mailer.send.run import run_send
from digest_mailer.signing import DkimSigner
from digest_mailer.transport import SMTPSettings, SMTPTransport, Transport

# report(job, event, level, **fields): how `run` hears what happens (a log line each)
Reporter = Callable[..., None]


def _quiet(job: str, event: str, level: str = "info", **fields: Any) -> None:
    pass


@dataclass
class DueResult:
    """What one due send did in this call.

    ``outcome``: ``sent``; ``paused`` (still ``running``, resumed by the next call);
    ``refused`` or ``failed`` (for good, see ``note``); ``retry`` (a problem of the setup,
    the send is as it was); ``busy`` (another process sends it or its issue)."""

    schedule_id: int
    issue_id: str
    outcome: str
    note: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class _Refuse(Exception):
    """The send itself cannot go out: refused for good, with this note."""


def due_ids(store: Store, now: datetime) -> list[int]:
    """The open scheduled sends whose time has come, oldest first."""
    with store.Session() as session:
        return list(
            session.scalars(
                select(ScheduledSend.id)
                .where(
                    ScheduledSend.state.in_(OPEN_SCHEDULE_STATES),
                    ScheduledSend.due_at <= now,
                )
                .order_by(ScheduledSend.due_at, ScheduledSend.id)
            )
        )


def run_due(
    store: Store,
    config: Config,
    secret: bytes,
    now: datetime | None = None,
    stop: threading.Event | None = None,
    *,
    report: Reporter | None = None,
    make_transport: Callable[[], Transport] | None = None,
    skip: Collection[int] = (),
) -> list[DueResult]:
    """Send every scheduled send due at ``now`` (default: now), one after the other,
    until ``stop`` is set (a send in progress then pauses after the messages in hand).
    ``skip``: ids not to try in this call (the caller's back-off)."""
    now = now or utcnow()
    stop = stop or threading.Event()
    if make_transport is None:
        settings = SMTPSettings.from_config(config)

        def make_transport() -> Transport:
            return SMTPTransport(settings)

    results = []
    for schedule_id in due_ids(store, now):
        if stop.is_set():
            break
        if schedule_id in skip:
            continue
        result = run_scheduled(
            store, config, secret, schedule_id, now, stop, report or _quiet, make_transport
        )
        if result is not None:
            results.append(result)
    return results


def run_scheduled(
    store: Store,
    config: Config,
    secret: bytes,
    schedule_id: int,
    now: datetime,
    stop: threading.Event,
    report: Reporter,
    make_transport: Callable[[], Transport],
) -> DueResult | None:
    """One due send as a job of its own (see the module); None when there was nothing to
    do (sent or cancelled meanwhile, not due)."""
    job = f"schedule:{schedule_id}"
    with job_lock(store, job) as mine:
        if not mine:
            report(job, "elsewhere", "debug")
            return DueResult(schedule_id, "", "busy", "another `run` process sends it")
        with store.Session() as session:
            row = session.get(ScheduledSend, schedule_id)
            if row is None or row.state not in OPEN_SCHEDULE_STATES or row.due_at > now:
                return None
        resuming = row.state == ScheduleState.RUNNING
        report(job, "started", issue=row.issue_id, file=row.source_path, resuming=resuming)
        try:
            result = _send(store, config, secret, row, stop, make_transport)
        except _Refuse as why:
            result = _finish(store, row, ScheduleState.REFUSED, str(why))
        except Exception as exc:
            result = _trouble(store, row, exc)
        level = {"sent": "info", "paused": "warning", "busy": "info"}.get(result.outcome, "error")
        fields = {"counts": result.counts} if result.counts else {}
        report(job, result.outcome, level, issue=row.issue_id, note=result.note, **fields)
        return result


def _trouble(store: Store, row: ScheduledSend, exc: Exception) -> DueResult:
    """An error while sending: a problem of the setup is tried again later; one of the
    send itself refuses it; anything else fails it (the error in the note)."""
    if isinstance(exc, ConfigError | TransportError):
        return DueResult(row.id, row.issue_id, "retry", f"{exc} (tried again at the next poll)")
    if isinstance(exc, SQLAlchemyError):
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        return DueResult(
            row.id, row.issue_id, "retry", f"database error: {first[0] if first else exc}"
        )
    if isinstance(exc, DigestMailerError):
        return _finish(store, row, ScheduleState.REFUSED, str(exc))
    note = f"error: {type(exc).__name__}: {exc}"[:1000]
    try:
        return _finish(store, row, ScheduleState.FAILED, note)
    except Exception:  # the store is away too: the log line says what happened
        return DueResult(row.id, row.issue_id, "failed", note)


def _compose(config: Config, row: ScheduledSend) -> ComposedIssue:
    path = Path(row.source_path)
    try:
        composed = composer.compose_file(
            path, config, issue_id=row.issue_id, archive=not row.no_archive
        )
    except (DigestMailerError, OSError) as exc:
        raise _Refuse(f"not sent: the file cannot be read or composed: {exc}") from None
    if composed.fingerprint != row.fingerprint:
        raise _Refuse(
            f"not sent: {path} changed since it was scheduled (fingerprint "
            f"{row.fingerprint[:12]} then, {composed.fingerprint[:12]} now); test the new "
            "version and schedule it again"
        )
    return composed


def _send(
    store: Store,
    config: Config,
    secret: bytes,
    row: ScheduledSend,
    stop: threading.Event,
    make_transport: Callable[[], Transport],
) -> DueResult:
    composed = _compose(config, row)
    refuse_placeholders(config)
    signer = DkimSigner.from_config(config)  # a bad key stops here, before anything is sent
    template = MessageTemplate(composed, config, signer=signer)
    with store.Session() as session:  # committed below; closing rolls back otherwise
        current = get_scheduled(session, row.id, lock=True)
        if current.state not in OPEN_SCHEDULE_STATES:
            return DueResult(row.id, row.issue_id, "busy", f"{current.state} meanwhile")
        try:
            plan = prepare_send(
                session,
                composed,
                audience=audience_of(current),
                archive=archive_draft(composed, config),
                publish=not current.no_archive,
            )
        except SendRefused as exc:
            session.rollback()
            busy = _held_by(store, row.issue_id)
            if busy:
                return DueResult(row.id, row.issue_id, "busy", f"waiting: {busy}")
            raise _Refuse(str(exc)) from None
        issue = session.get(Issue, plan.issue_id)
        already_sent = issue is not None and issue.state == IssueState.SENT
        lease = None
        if not already_sent:
            lease = take_lease(
                session, plan.issue_id, config.workers.lease_seconds, config.smtp.connections
            )
        notes = list(plan.notes)
        if plan.recovered_uncertain:
            notes.append(
                f"{len(plan.recovered_uncertain)} recipient(s) were in the middle of sending "
                "when the last run stopped and are now uncertain (not resent)"
            )
        current.state, current.updated_at = ScheduleState.RUNNING, utcnow()
        current.started_at = current.started_at or current.updated_at
        current.note = "; ".join(notes)
        session.commit()
    if already_sent:
        return _finish(store, row, ScheduleState.SENT, "nothing to send: the issue was sent")
    report = run_send(
        store, plan.issue_id, config, template, make_transport, secret, stop=stop, lease=lease
    )
    counts = {k: v for k, v in report.counts.items() if v}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no recipients"
    if report.state == IssueState.SENT:
        return _finish(store, row, ScheduleState.SENT, f"sent: {summary}", counts)
    reason = report.paused_reason or "not finished"
    with store.Session.begin() as session:
        current = get_scheduled(session, row.id)
        current.note, current.updated_at = f"paused: {reason}; resumed by `run`", utcnow()
    return DueResult(row.id, row.issue_id, "paused", reason, counts)


def _held_by(store: Store, issue_id: str) -> str:
    """Who sends ``issue_id`` now, if anyone (then the scheduled send waits)."""
    with store.Session.begin() as session:
        holders = live_holders(session, issue_id, utcnow())
    if not holders:
        return ""
    return f"issue {issue_id} is being sent by {holders[0].describe()}"


def _finish(
    store: Store,
    row: ScheduledSend,
    state: ScheduleState,
    note: str,
    counts: dict[str, int] | None = None,
) -> DueResult:
    """Record the end of a scheduled send (sent, refused or failed) with its note."""
    with store.Session.begin() as session:
        current = get_scheduled(session, row.id, lock=True)
        if state != ScheduleState.SENT and current.state == ScheduleState.RUNNING:
            note += _sent_so_far(session, row.issue_id)
        current.state, current.note = state, note[:2000]
        current.updated_at = utcnow()
        if state == ScheduleState.SENT:
            current.finished_at = current.updated_at
    return DueResult(row.id, row.issue_id, state.value, note, counts or {})


def _sent_so_far(session: Session, issue_id: str) -> str:
    sent = delivery_counts(session, issue_id).get("sent", 0)
    return f" ({sent} recipient(s) had it already; the rest were not sent)"
