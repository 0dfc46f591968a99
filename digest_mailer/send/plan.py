"""Before a send: check it may start or resume, recover what a crashed run left, queue
the recipients.

A send is planned in one transaction the command owns. Rows a dead process left
``sending`` become ``uncertain`` (the server may have accepted them: not resent unless
``--resend-uncertain``); rows a dead worker had only ``claimed`` go back to the queue.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, literal, select, true, update
from sqlalchemy.orm import Session

from digest_mailer.archive.render import ArchiveDraft
from digest_mailer.archive.store import record as record_archive
from digest_mailer.archive.store import refresh as refresh_archive
from digest_mailer.archive.store import subscribers_named
from digest_mailer.clicks.store import record_links
from digest_mailer.composer import ComposedIssue
from digest_mailer.errors import InputError, SendRefused
from digest_mailer.kinds import (
    OPEN_DELIVERY_STATES,
    DeliveryState,
    IssueState,
    SubscriberStatus,
    WorkerState,
)
from digest_mailer.lease import refuse_while_held
from digest_mailer.lint import lint
from digest_mailer.models import (
    Delivery,
    Issue,
    SendWorker,
    Subscriber,
    UTCDateTime,
    list_members,
    utcnow,
)
from digest_mailer.send.statements import DELIVERIES as _D
from digest_mailer.subscribers import get_list


def record_issue(session: Session, composed: ComposedIssue) -> Issue:
    """The issue's row, created on first use; a draft may change freely."""
    issue = session.get(Issue, composed.issue_id)
    now = utcnow()
    if issue is None:
        issue = Issue(
            id=composed.issue_id,
            subject=composed.subject,
            fingerprint=composed.fingerprint,
            state=IssueState.DRAFT,
            skipped_test=False,
            note="",
            created_at=now,
            updated_at=now,
        )
        session.add(issue)
    elif (
        issue.state in (IssueState.DRAFT, IssueState.TESTED)
        and issue.fingerprint != composed.fingerprint
    ):
        issue.fingerprint = composed.fingerprint
        issue.subject = composed.subject
        issue.state = IssueState.DRAFT
        issue.updated_at = now
    session.flush()
    return issue


def refuse_reused_id(issue: Issue, composed: ComposedIssue) -> None:
    """An issue whose send finished is never sent again under its id with other text: a
    new issue saved with the same file name (or Vol:) would otherwise be swallowed."""
    if issue.state != IssueState.SENT or issue.fingerprint == composed.fingerprint:
        return
    when = f" on {issue.finished_at:%Y-%m-%d %H:%M} UTC" if issue.finished_at else ""
    raise SendRefused(
        f"issue {issue.id} was already sent{when} with other text (fingerprint "
        f"{issue.fingerprint[:12]} then, {composed.fingerprint[:12]} now; the id comes from "
        f"{composed.source.issue_id_source}). If this is a new issue, give it its own id: a "
        "Vol: line, `id:` in the front matter, or --issue-id"
    )


def refuse_on_lint_errors(composed: ComposedIssue) -> None:
    errors = [f for f in lint(composed) if f.level == "error"]
    if errors:
        raise SendRefused(
            f"the issue has {len(errors)} lint error(s), e.g. {errors[0].message}; "
            "run `digest-mailer compose` to see them"
        )


@dataclass
class SendPlan:
    issue_id: str
    subject: str
    fingerprint: str
    resuming: bool
    queued: int
    recovered_uncertain: list[str] = field(default_factory=list)
    requeued_uncertain: int = 0
    notes: list[str] = field(default_factory=list)
    audiences: list[str] = field(default_factory=list)  # before this send


def prepare_send(
    session: Session,
    composed: ComposedIssue,
    *,
    skip_test: bool = False,
    resend_uncertain: bool = False,
    allow_changed: bool = False,
    worker: bool = False,
    audience: "Audience | None" = None,
    archive: ArchiveDraft | None = None,
    publish: bool = True,
) -> SendPlan:
    """Check that the send may start (or resume), recover a crashed run, queue recipients.

    ``worker``: start or join a send shared by several processes (PostgreSQL; see
    :mod:`digest_mailer.send.claims`); only rows of workers whose lease ran out are recovered.
    ``audience``: the lists to send to (default: every active subscriber). A send of the
    issue to an audience it has not had yet queues those not yet sent to.
    ``archive``: the issue's public page, kept once when its send starts; ``publish``
    (not ``send --no-archive``) puts it in the archive and the feed at once.
    """
    refuse_on_lint_errors(composed)
    if session.get_bind().dialect.name == "postgresql":
        lock_issue(session, composed.issue_id)  # SQLite's BEGIN IMMEDIATE serialises already
    refuse_while_held(session, composed.issue_id, joining_as_worker=worker)
    issue = record_issue(session, composed)
    refuse_reused_id(issue, composed)  # --allow-changed is for a send still in progress
    notes: list[str] = []
    resuming = issue.state in (IssueState.SENDING, IssueState.PAUSED, IssueState.SENT)
    audience = audience.resolve(session) if audience is not None else Audience().resolve(session)
    earlier_audiences = issue.audiences.splitlines()
    new_audience = audience.line not in earlier_audiences
    if resuming and issue.fingerprint != composed.fingerprint:
        if not allow_changed:
            raise SendRefused(
                f"issue {issue.id} changed since its send started (fingerprint "
                f"{issue.fingerprint[:12]} then, {composed.fingerprint[:12]} now); "
                "send the original, or pass --allow-changed to send the new text to the rest"
            )
        notes.append(
            f"issue changed during the send: {issue.fingerprint[:12]} -> "
            f"{composed.fingerprint[:12]} (--allow-changed)"
        )
        issue.fingerprint = composed.fingerprint
        issue.subject = composed.subject
        if archive is not None:  # the public copy follows the text that is sent
            refresh_archive(session, archive)
    if not resuming and issue.tested_fingerprint != composed.fingerprint:
        if not skip_test:
            flags = "--test" if publish else "--test --no-archive"
            raise SendRefused(
                f"no successful test send of this version of issue {issue.id}: run "
                f"`digest-mailer send {composed.source.path} {flags}` first (or --skip-test)"
            )
        issue.skipped_test = True
        notes.append("started without a test send (--skip-test)")
    if composed.links or not resuming:  # where /r/ links lead ([tracking] clicks)
        record_links(session, issue.id, composed.links, fresh=not resuming)
    if worker:
        recovered = expire_leases(session, issue.id, utcnow())
    else:
        recovered = recover_crashed(session, issue.id)
    requeued = 0
    if resend_uncertain:
        requeued = session.execute(
            update(Delivery)
            .where(Delivery.issue_id == issue.id, Delivery.state == DeliveryState.UNCERTAIN)
            .values(state=DeliveryState.QUEUED, updated_at=utcnow())
        ).rowcount
        if requeued:
            notes.append(f"{requeued} uncertain recipient(s) queued again (--resend-uncertain)")
    if notes:
        issue.note = "; ".join(filter(None, [issue.note, *notes]))
    added = 0
    if not resuming or new_audience:
        added = queue_recipients(session, issue.id, audience)
        issue.audiences = "\n".join(filter(None, [*issue.audiences.splitlines(), audience.line]))
        # from here on the recipient set and the text are fixed
        if not resuming:
            issue.started_at = utcnow()
        if archive is not None:  # test sends never come here: they never publish
            named = subscribers_named(session, archive) if publish else []
            when = issue.started_at or utcnow()
            if record_archive(session, archive, publish=publish and not named, when=when) and named:
                notes.append(
                    f"not published in the archive: its text names subscriber(s) "
                    f"{', '.join(named)}; check it, then `digest-mailer archive publish {issue.id}`"
                )
        issue.state, issue.updated_at = IssueState.SENDING, utcnow()
        if resuming:
            notes.append(f"{added} more recipient(s): {audience.line}")
    open_rows = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.issue_id == issue.id,
            Delivery.state.in_(OPEN_DELIVERY_STATES),
        )
    )
    if resuming and not open_rows and issue.state != IssueState.SENT:
        issue.state, issue.finished_at = IssueState.SENT, issue.finished_at or utcnow()
    session.flush()
    return SendPlan(
        issue.id,
        issue.subject,
        issue.fingerprint,
        resuming,
        open_rows or 0,
        recovered,
        requeued,
        notes,
        earlier_audiences,
    )


def lock_issue(session: Session, issue_id: str) -> None:
    """Serialise the workers that start or join one issue's send (until commit)."""
    key = int.from_bytes(hashlib.sha256(issue_id.encode()).digest()[:8], "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(key)))


def expire_leases(db: Connection | Session, issue_id: str, now: datetime) -> list[str]:
    """Rows of workers whose lease ran out: ``claimed`` back to ``queued``, ``sending``
    to ``uncertain`` (returned, by address). Their workers are marked lost."""
    lapsed = and_(_D.c.issue_id == issue_id, _D.c.lease_until < now)
    db.execute(
        update(_D)
        .where(lapsed, _D.c.state == DeliveryState.CLAIMED)
        .values(state=DeliveryState.QUEUED, worker_id=None, lease_until=None)
    )
    uncertain = (
        db.execute(
            update(_D)
            .where(lapsed, _D.c.state == DeliveryState.SENDING)
            .values(
                state=DeliveryState.UNCERTAIN,
                lease_until=None,
                smtp_message="the worker sending it stopped during the SMTP transaction; "
                "the server may have accepted the message",
                updated_at=now,
            )
            .returning(_D.c.address)
        )
        .scalars()
        .all()
    )
    db.execute(
        update(SendWorker.__table__)
        .where(
            SendWorker.issue_id == issue_id,
            SendWorker.state == WorkerState.RUNNING,
            SendWorker.lease_until < now,
        )
        .values(state=WorkerState.LOST)
    )
    return list(uncertain)


def live_workers(db: Connection | Session, issue_id: str, now: datetime) -> int:
    return (
        db.execute(
            select(func.count())
            .select_from(SendWorker)
            .where(
                SendWorker.issue_id == issue_id,
                SendWorker.state == WorkerState.RUNNING,
                SendWorker.lease_until >= now,
            )
        ).scalar()
        or 0
    )


def recover_crashed(session: Session, issue_id: str) -> list[str]:
    """Rows left ``sending`` by a process that died become ``uncertain``; returns them.
    Rows a dead worker had only claimed go back to the queue."""
    session.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue_id, Delivery.state == DeliveryState.CLAIMED)
        .values(state=DeliveryState.QUEUED, worker_id=None, lease_until=None)
    )
    rows = session.execute(
        select(Delivery.id, Delivery.address).where(
            Delivery.issue_id == issue_id, Delivery.state == DeliveryState.SENDING
        )
    ).all()
    if rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r.id for r in rows]))
            .values(
                state=DeliveryState.UNCERTAIN,
                smtp_message="the sending process stopped during the SMTP transaction; "
                "the server may have accepted the message",
                updated_at=utcnow(),
            )
        )
    return [r.address for r in rows]


@dataclass(frozen=True)
class Audience:
    """Who a send goes to: the active members of ``lists`` (every active subscriber when
    empty), less the members of ``exclude``."""

    lists: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    list_ids: tuple[int, ...] = ()
    exclude_ids: tuple[int, ...] = ()

    @property
    def line(self) -> str:
        """How the issue records it: "everyone", "lists: a, b; not: c"."""
        text = f"lists: {', '.join(self.lists)}" if self.lists else "everyone"
        return f"{text}; not: {', '.join(self.exclude)}" if self.exclude else text

    def resolve(self, session: Session) -> "Audience":
        """The same audience with the lists' ids (a missing list is NotFoundError)."""
        lists = tuple(sorted(set(self.lists)))
        exclude = tuple(sorted(set(self.exclude)))
        both = set(lists) & set(exclude)
        if both:
            raise InputError(f"list {sorted(both)[0]!r} is both sent to and excluded")
        return Audience(
            lists,
            exclude,
            tuple(get_list(session, name).id for name in lists),
            tuple(get_list(session, name).id for name in exclude),
        )

    def condition(self) -> Any:
        """The subscribers it selects (besides being active)."""
        member = list_members.c.subscriber_id == Subscriber.id
        parts = []
        if self.list_ids:
            parts.append(exists().where(member, list_members.c.list_id.in_(self.list_ids)))
        if self.exclude_ids:
            parts.append(~exists().where(member, list_members.c.list_id.in_(self.exclude_ids)))
        return and_(*parts) if parts else true()


def queue_recipients(session: Session, issue_id: str, audience: Audience | None = None) -> int:
    """One delivery row per active subscriber of the audience not yet queued for this
    issue, in one INSERT ... SELECT."""
    audience = audience or Audience()
    already = exists().where(Delivery.issue_id == issue_id, Delivery.subscriber_id == Subscriber.id)
    now = utcnow()
    columns = [
        "issue_id",
        "subscriber_id",
        "address",
        "state",
        "attempts",
        "queued_at",
        "updated_at",
    ]
    at = literal(now, UTCDateTime())
    result = session.execute(
        insert(Delivery).from_select(
            columns,
            select(
                literal(issue_id),
                Subscriber.id,
                Subscriber.email,
                literal(DeliveryState.QUEUED.value),
                literal(0),
                at,
                at,
            )
            .where(Subscriber.status == SubscriberStatus.ACTIVE, ~already, audience.condition())
            .order_by(Subscriber.id),
        )
    )
    return result.rowcount or 0
