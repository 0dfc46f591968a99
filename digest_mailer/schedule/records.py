"""Recording, listing and cancelling scheduled sends (``digest-mailer schedule``).

A scheduled send names one issue file and the fingerprint of its composed text, which
must be the version a test send succeeded with (``Issue.tested_fingerprint``), as for
`send`. When it is due, :mod:`digest_mailer.schedule.due` composes the file again and
sends only that same text.
"""

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer import composer
from digest_mailer.composer import ComposedIssue
from digest_mailer.config import Config
from digest_mailer.errors import InputError, NotFoundError, SendRefused
from digest_mailer.kinds import OPEN_SCHEDULE_STATES, IssueState, ScheduleState
from digest_mailer.lease import live_holders
from digest_mailer.models import Issue, ScheduledSend, utcnow
from digest_mailer.schedule.times import DueTime
from digest_mailer.send.plan import Audience, refuse_on_lint_errors, refuse_reused_id


def compose_scheduled(
    path: Path,
    config: Config,
    *,
    issue_id: str | None = None,
    encoding: str | None = None,
    archive: bool = True,
) -> ComposedIssue:
    """Compose ``path`` as `send` does. A scheduled send re-reads the file when due
    without ``--encoding`` (the schedule keeps none), so an encoding that changes the
    text is refused now rather than then."""
    composed = composer.compose_file(
        path, config, issue_id=issue_id, encoding=encoding, archive=archive
    )
    if encoding is not None:
        detected = composer.compose_file(path, config, issue_id=issue_id, archive=archive)
        if detected.fingerprint != composed.fingerprint:
            raise InputError(
                f"{path} reads differently with --encoding {encoding} than as detected "
                f"({detected.source.encoding}), and a scheduled send reads the file again "
                "when due without --encoding: save it as UTF-8, test it again, then schedule it"
            )
    return composed


def audience_of(row: ScheduledSend) -> Audience:
    return Audience(tuple(row.lists.splitlines()), tuple(row.exclude_lists.splitlines()))


def schedule_send(
    session: Session,
    composed: ComposedIssue,
    due: DueTime,
    *,
    audience: Audience | None = None,
    archive: bool = True,
) -> ScheduledSend:
    """Record a send of exactly ``composed`` at ``due``. Refused (one clear error) when
    no test send of this version succeeded, on lint errors, for a list that does not
    exist, or when the same issue is already scheduled for the same audience."""
    audience = (audience or Audience()).resolve(session)
    refuse_on_lint_errors(composed)
    issue = session.get(Issue, composed.issue_id)
    if issue is not None:
        refuse_reused_id(issue, composed)
        started = issue.state in (IssueState.SENDING, IssueState.PAUSED)
        if started and issue.fingerprint != composed.fingerprint:
            raise SendRefused(
                f"issue {issue.id}'s send started with another version and is not finished: "
                f"send the rest with `digest-mailer send {composed.source.path} "
                "--allow-changed`, or give this version an id of its own (--issue-id)"
            )
    if issue is None or issue.tested_fingerprint != composed.fingerprint:
        flags = "--test" if archive else "--test --no-archive"
        raise SendRefused(
            f"no successful test send of this version of issue {composed.issue_id}: run "
            f"`digest-mailer send {composed.source.path} {flags}` first; a scheduled send "
            "sends only a tested text"
        )
    if issue.state == IssueState.SENT and audience.line in issue.audiences.splitlines():
        raise SendRefused(
            f"issue {issue.id} was already sent to {audience.line}: nothing to schedule "
            "(`digest-mailer status` shows it; another --list reaches others)"
        )
    for other in session.scalars(
        select(ScheduledSend).where(
            ScheduledSend.issue_id == composed.issue_id,
            ScheduledSend.state.in_(OPEN_SCHEDULE_STATES),
        )
    ):
        if audience_of(other).line == audience.line:  # both stored as resolved
            raise SendRefused(
                f"issue {composed.issue_id} is already scheduled for {audience.line} "
                f"(#{other.id}, {DueTime(other.due_at, other.time_zone).describe()}): "
                f"`digest-mailer schedule cancel {other.id}` first"
            )
    now = utcnow()
    row = ScheduledSend(
        issue_id=composed.issue_id,
        source_path=str(Path(composed.source.path).resolve()),
        fingerprint=composed.fingerprint,
        due_at=due.utc,
        time_zone=due.zone,
        lists="\n".join(audience.lists),
        exclude_lists="\n".join(audience.exclude),
        no_archive=not archive,
        state=ScheduleState.SCHEDULED,
        note="",
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    session.flush()
    return row


def list_scheduled(session: Session, *, open_only: bool = False) -> list[dict[str, Any]]:
    """Every scheduled send (or the open ones), by due time."""
    query = select(ScheduledSend).order_by(ScheduledSend.due_at, ScheduledSend.id)
    if open_only:
        query = query.where(ScheduledSend.state.in_(OPEN_SCHEDULE_STATES))
    return [schedule_dict(row) for row in session.scalars(query)]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def schedule_dict(row: ScheduledSend) -> dict[str, Any]:
    due = DueTime(row.due_at, row.time_zone)
    return {
        "id": row.id,
        "issue": row.issue_id,
        "due": _iso(due.local),
        "zone": row.time_zone,
        "due_utc": _iso(row.due_at),
        "state": row.state,
        "audience": audience_of(row).line,
        "archive": not row.no_archive,
        "file": row.source_path,
        "fingerprint": row.fingerprint,
        "note": row.note,
        "created": _iso(row.created_at),
        "started": _iso(row.started_at),
        "finished": _iso(row.finished_at),
    }


def get_scheduled(session: Session, schedule_id: int, *, lock: bool = False) -> ScheduledSend:
    row = session.get(ScheduledSend, schedule_id, with_for_update=lock or None)
    if row is None:
        raise NotFoundError(f"no scheduled send #{schedule_id} (see `digest-mailer schedule list`)")
    return row


def cancel_scheduled(session: Session, schedule_id: int) -> ScheduledSend:
    """Cancel a send that is still waiting for its time, or whose send started and is
    paused (then what was sent stays sent; the note says so). A send in progress is
    refused: stop the `digest-mailer run` process sending it first."""
    row = get_scheduled(session, schedule_id, lock=True)
    now = utcnow()
    if row.state == ScheduleState.RUNNING:
        holders = live_holders(session, row.issue_id, now)
        if holders:
            raise SendRefused(
                f"scheduled send #{row.id} (issue {row.issue_id}) is being sent now by "
                f"{holders[0].describe()}: stop that `digest-mailer run` first (SIGTERM "
                "pauses the send), then cancel it"
            )
        row.note = "; ".join(
            filter(
                None,
                [
                    row.note,
                    "cancelled after its send had started: what was sent stays sent; "
                    f"`digest-mailer send {row.source_path}` would send the rest",
                ],
            )
        )
    elif row.state != ScheduleState.SCHEDULED:
        raise InputError(
            f"scheduled send #{row.id} is {row.state}: only a send still waiting for its "
            "time (or paused) can be cancelled"
        )
    row.state, row.updated_at = ScheduleState.CANCELLED, now
    session.flush()
    return row
