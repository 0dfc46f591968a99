"""Sending an issue: exactly once to every active subscriber, with a durable send log.

The database is the source of truth. Each delivery row is committed as ``sending`` before
its message can be accepted (the transport's commit point, just before the end-of-data
dot) and with its outcome after it. One event loop in the caller's thread owns the
database and drives ``[smtp] connections`` SMTP connections, each with at most one message
in hand. So at most ``connections`` rows are ever ``sending``: after a crash those become
``uncertain`` and are not resent unless asked; every other recipient is sent exactly once.
Outcomes and the next claims share one commit (group commit), which keeps the guarantee
and makes the database cost per message small.

The sender knows transports only through :class:`~digest_mailer.transport.Transport` and
the outcome kinds; it knows nothing of SMTP itself.
"""

import asyncio
import hashlib
import heapq
import itertools
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Row,
    and_,
    bindparam,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from digest_mailer.addresses import UnencodableAddress, wire_address
from digest_mailer.bounces.scoring import (
    is_recipient_refusal,
    issue_bounce_counts,
    refusal_status,
    score_pending,
)
from digest_mailer.composer import ComposedIssue
from digest_mailer.config import Config
from digest_mailer.db import FastStatement, Store, driver_transaction
from digest_mailer.errors import InputError, NotFoundError, SendRefused
from digest_mailer.lease import LeaseKeeper, refuse_while_held
from digest_mailer.lint import lint
from digest_mailer.message import MessageTemplate, make_message_id
from digest_mailer.models import (
    DELIVERY_STATES,
    Bounce,
    Delivery,
    Issue,
    SendWorker,
    Subscriber,
    TestSend,
    UTCDateTime,
    list_members,
    utcnow,
)
from digest_mailer.signing import DkimSigner
from digest_mailer.subscribers import address_key, get_list, normalize_address
from digest_mailer.tokens import make_token, verp_address
from digest_mailer.transport import (
    CommitPoint,
    Outcome,
    Transport,
    TransportError,
    run_coroutine,
)

CANDIDATE_BATCH = 1000
CONNECT_RETRIES = 3  # reconnects per message before the send pauses


# --------------------------------------------------------------------------- preparing


def envelope_sender(
    config: Config, secret: bytes | None = None, delivery_id: int | None = None
) -> str:
    """MAIL FROM (the Return-Path): with ``[newsletter] bounce_address`` set, a VERP
    address naming the delivery (``bounces+TOKEN@domain``) when there is one, else the
    bounce address itself; without it, the From address."""
    bounce = config.newsletter.bounce_address
    if not bounce:
        return config.newsletter.from_address
    if secret is None or delivery_id is None:
        return bounce
    return verp_address(secret, bounce, delivery_id)


def unsubscribe_url(
    config: Config, secret: bytes, subscriber_id: int | None, salt: str = ""
) -> str | None:
    """The signed one-click link for a subscriber (bound to its ``link_salt``), or None
    (mailto only)."""
    base = config.newsletter.public_url.rstrip("/")
    if not base or subscriber_id is None:
        return None
    return f"{base}/u/{make_token(secret, 'unsubscribe', subscriber_id, salt)}"


def get_issue(session: Session, issue_id: str) -> Issue:
    issue = session.get(Issue, issue_id)
    if issue is None:
        known = session.scalars(select(Issue.id).order_by(Issue.created_at)).all()
        hint = f" (issues: {', '.join(known)})" if known else ""
        raise NotFoundError(f"no issue {issue_id!r} in the send log{hint}")
    return issue


def record_issue(session: Session, composed: ComposedIssue) -> Issue:
    """The issue's row, created on first use; a draft may change freely."""
    issue = session.get(Issue, composed.issue_id)
    now = utcnow()
    if issue is None:
        issue = Issue(
            id=composed.issue_id,
            subject=composed.subject,
            fingerprint=composed.fingerprint,
            state="draft",
            skipped_test=False,
            note="",
            created_at=now,
            updated_at=now,
        )
        session.add(issue)
    elif issue.state in ("draft", "tested") and issue.fingerprint != composed.fingerprint:
        issue.fingerprint = composed.fingerprint
        issue.subject = composed.subject
        issue.state = "draft"
        issue.updated_at = now
    session.flush()
    return issue


def refuse_reused_id(issue: Issue, composed: ComposedIssue) -> None:
    """An issue whose send finished is never sent again under its id with other text: a
    new issue saved with the same file name (or Vol:) would otherwise be swallowed."""
    if issue.state != "sent" or issue.fingerprint == composed.fingerprint:
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
) -> SendPlan:
    """Check that the send may start (or resume), recover a crashed run, queue recipients.

    ``worker``: start or join a send shared by several processes (PostgreSQL; see
    :mod:`digest_mailer.workers`); only rows of workers whose lease ran out are recovered.
    ``audience``: the lists to send to (default: every active subscriber). A send of the
    issue to an audience it has not had yet queues those not yet sent to.
    """
    refuse_on_lint_errors(composed)
    if session.get_bind().dialect.name == "postgresql":
        lock_issue(session, composed.issue_id)  # SQLite's BEGIN IMMEDIATE serialises already
    refuse_while_held(session, composed.issue_id, joining_as_worker=worker)
    issue = record_issue(session, composed)
    refuse_reused_id(issue, composed)  # --allow-changed is for a send still in progress
    notes: list[str] = []
    resuming = issue.state in ("sending", "paused", "sent")
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
    if not resuming and issue.tested_fingerprint != composed.fingerprint:
        if not skip_test:
            raise SendRefused(
                f"no successful test send of this version of issue {issue.id}: run "
                f"`digest-mailer send {composed.source.path} --test` first (or --skip-test)"
            )
        issue.skipped_test = True
        notes.append("started without a test send (--skip-test)")
    if worker:
        recovered = expire_leases(session, issue.id, utcnow())
    else:
        recovered = recover_crashed(session, issue.id)
    requeued = 0
    if resend_uncertain:
        requeued = session.execute(
            update(Delivery)
            .where(Delivery.issue_id == issue.id, Delivery.state == "uncertain")
            .values(state="queued", updated_at=utcnow())
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
        issue.state, issue.updated_at = "sending", utcnow()
        if resuming:
            notes.append(f"{added} more recipient(s): {audience.line}")
    open_rows = session.scalar(
        select(func.count())
        .select_from(Delivery)
        .where(
            Delivery.issue_id == issue.id,
            Delivery.state.in_(("queued", "deferred", "claimed", "sending")),
        )
    )
    if resuming and not open_rows and issue.state != "sent":
        issue.state, issue.finished_at = "sent", issue.finished_at or utcnow()
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
    lapsed = and_(_DELIVERIES.c.issue_id == issue_id, _DELIVERIES.c.lease_until < now)
    db.execute(
        update(_DELIVERIES)
        .where(lapsed, _DELIVERIES.c.state == "claimed")
        .values(state="queued", worker_id=None, lease_until=None)
    )
    uncertain = (
        db.execute(
            update(_DELIVERIES)
            .where(lapsed, _DELIVERIES.c.state == "sending")
            .values(
                state="uncertain",
                lease_until=None,
                smtp_message="the worker sending it stopped during the SMTP transaction; "
                "the server may have accepted the message",
                updated_at=now,
            )
            .returning(_DELIVERIES.c.address)
        )
        .scalars()
        .all()
    )
    db.execute(
        update(SendWorker.__table__)
        .where(
            SendWorker.issue_id == issue_id,
            SendWorker.state == "running",
            SendWorker.lease_until < now,
        )
        .values(state="lost")
    )
    return list(uncertain)


def live_workers(db: Connection | Session, issue_id: str, now: datetime) -> int:
    return (
        db.execute(
            select(func.count())
            .select_from(SendWorker)
            .where(
                SendWorker.issue_id == issue_id,
                SendWorker.state == "running",
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
        .where(Delivery.issue_id == issue_id, Delivery.state == "claimed")
        .values(state="queued", worker_id=None, lease_until=None)
    )
    rows = session.execute(
        select(Delivery.id, Delivery.address).where(
            Delivery.issue_id == issue_id, Delivery.state == "sending"
        )
    ).all()
    if rows:
        session.execute(
            update(Delivery)
            .where(Delivery.id.in_([r.id for r in rows]))
            .values(
                state="uncertain",
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
                literal("queued"),
                literal(0),
                at,
                at,
            )
            .where(Subscriber.status == "active", ~already, audience.condition())
            .order_by(Subscriber.id),
        )
    )
    return result.rowcount or 0


# --------------------------------------------------------------------------- test sends


@dataclass
class TestResult:
    __test__ = False
    address: str
    outcome: Outcome


def test_recipients(
    session: Session, config: Config, to: Iterable[str] = ()
) -> list[tuple[str, str, int | None, str]]:
    """(address, name, subscriber id, link salt) for a test send: given addresses, else the
    seed list."""
    given = list(to)
    if given:
        allow = config.subscribers.allow_test_domains
        out = []
        for address in given:
            normalized = normalize_address(address, allow_test_domains=allow)
            out.append((normalized, "", None, ""))
        return out
    seed = get_list(session, config.seed.list)
    rows = session.execute(
        select(Subscriber.email, Subscriber.name, Subscriber.id, Subscriber.link_salt)
        .join(list_members, list_members.c.subscriber_id == Subscriber.id)
        .where(list_members.c.list_id == seed.id, Subscriber.status == "active")
        .order_by(Subscriber.email_key)
    ).all()
    if not rows:
        raise InputError(
            f"the seed list {seed.name!r} has no active members: add some with "
            f"`digest-mailer subscribers add ADDRESS --list {seed.name}` or use --to ADDRESS"
        )
    return [(r.email, r.name, r.id, r.link_salt) for r in rows]


def test_send(
    session: Session,
    composed: ComposedIssue,
    config: Config,
    transport: Transport,
    secret: bytes,
    recipients: list[tuple[str, str, int | None]],
) -> list[TestResult]:
    """Send ``[TEST]`` copies; log them as test sends of this fingerprint. Never touches
    deliveries. When all are accepted the issue counts as tested. Closes ``transport``."""
    refuse_on_lint_errors(composed)
    issue = record_issue(session, composed)
    refuse_reused_id(issue, composed)
    template = MessageTemplate(
        composed, config, subject_prefix="[TEST] ", signer=DkimSigner.from_config(config)
    )
    messages: list[tuple[str, str, bytes | Outcome]] = []
    for address, name, subscriber_id, salt in recipients:
        message_id = make_message_id(template.domain, "test", composed.issue_id)
        url = template.unsubscribe_target(unsubscribe_url(config, secret, subscriber_id, salt))
        try:
            data: bytes | Outcome = template.render(address, name, message_id, url)
        except UnencodableAddress as exc:  # that address fails alone
            data = unsendable(exc)
        messages.append((address, message_id, data))

    async def deliver_all() -> list[Outcome]:
        outcomes = []
        try:
            for address, _, data in messages:
                if isinstance(data, Outcome):
                    outcomes.append(data)
                    continue
                outcomes.append(
                    await send_with_reconnects(
                        transport,
                        envelope_sender(config),
                        address,
                        data,
                        config.smtp.retry_base_seconds,
                    )
                )
        finally:
            await transport.close()
        return outcomes

    results = []
    for (address, message_id, _), outcome in zip(
        messages, run_coroutine(deliver_all()), strict=True
    ):
        session.add(
            TestSend(
                issue_id=issue.id,
                fingerprint=composed.fingerprint,
                address=address,
                state=outcome.kind,
                smtp_code=outcome.code,
                smtp_message=outcome.message,
                message_id=message_id,
                created_at=utcnow(),
            )
        )
        results.append(TestResult(address, outcome))
    if results and all(r.outcome.kind == "sent" for r in results):
        issue.tested_fingerprint = composed.fingerprint
        if issue.state == "draft":
            issue.state = "tested"
        issue.updated_at = utcnow()
    session.flush()
    return results


# --------------------------------------------------------------------------- dry run


def dry_run(
    session: Session,
    composed: ComposedIssue,
    config: Config,
    transport: Transport,
    secret: bytes,
) -> int:
    """Write every message the send would make through ``transport`` (then closed);
    changes nothing. Returns how many were written: an address that cannot be written for
    SMTP (its send would fail it) is left out."""
    template = MessageTemplate(composed, config, signer=DkimSigner.from_config(config))
    sent_already = select(Delivery.subscriber_id).where(
        Delivery.issue_id == composed.issue_id,
        Delivery.state.in_(("sent", "uncertain", "failed", "skipped")),
        Delivery.subscriber_id.is_not(None),
    )
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.link_salt)
        .where(Subscriber.status == "active", Subscriber.id.not_in(sent_already))
        .order_by(Subscriber.id)
        .execution_options(yield_per=CANDIDATE_BATCH)
    )

    async def write_all() -> int:
        count = 0
        for row in rows:
            message_id = make_message_id(template.domain, composed.issue_id, "dry", row.id)
            url = template.unsubscribe_target(
                unsubscribe_url(config, secret, row.id, row.link_salt)
            )
            try:
                data = template.render(row.email, row.name, message_id, url)
            except UnencodableAddress:
                continue
            outcome = await transport.send(envelope_sender(config), row.email, data)
            count += outcome.kind == "sent"
        await transport.close()
        return count

    return run_coroutine(write_all())


# --------------------------------------------------------------------------- the send loop


@dataclass
class _Job:
    delivery_id: int
    subscriber_id: int | None
    address: str
    name: str
    salt: str = ""  # the subscriber's link_salt
    message_id: str = ""
    claimed: "asyncio.Future[bool] | None" = None
    data: "asyncio.Future[bytes] | None" = None  # the message, rendered (and signed) ahead
    refusal: Outcome | None = None  # the address cannot be sent to: fail it, send nothing

    async def commit_point(self) -> bool:
        """Before the final dot: wait until the claim is committed (True) or refused."""
        assert self.claimed is not None
        return await asyncio.shield(self.claimed)


def _refused(job: _Job) -> bool:
    """The row's claim was refused (the subscriber is no longer active)."""
    return job.claimed is not None and job.claimed.done() and not job.claimed.result()


@dataclass
class SendReport:
    issue_id: str
    state: str
    counts: dict[str, int]
    paused_reason: str = ""


ProgressCallback = Callable[[int, int], None]


async def send_with_reconnects(
    transport: Transport,
    envelope_from: str,
    address: str,
    data: bytes,
    backoff: float,
    commit: CommitPoint | None = None,
) -> Outcome:
    """Send, reconnecting with exponential backoff while the connection is the problem;
    ``unavailable`` when it stays down; ``fatal`` for what no retry can fix. An address
    that cannot be written for SMTP, or that needs SMTPUTF8 from a server without it, is
    ``failed`` (stage ``rcpt``, no code) with nothing sent; the caller goes on."""
    try:
        outcome = await transport.send(envelope_from, address, data, commit)
        for attempt in range(CONNECT_RETRIES):
            if outcome.kind != "retry":
                return outcome
            await asyncio.sleep(backoff * 2**attempt)
            outcome = await transport.send(envelope_from, address, data, commit)
    except TransportError as exc:
        return Outcome("fatal", None, str(exc))
    except UnencodableAddress as exc:  # a transport that leaves the check to us
        return unsendable(exc)
    if outcome.kind == "retry":
        return Outcome("unavailable", None, outcome.message)
    return outcome


def unsendable(exc: UnencodableAddress) -> Outcome:
    """The outcome of an address no SMTP server could take: failed, nothing sent. Not a
    bounce (no server refused it), so it does not count against the subscriber."""
    return Outcome("failed", None, f"not sent: {exc}", "rcpt")


class _SendLoop:
    """One thread, one event loop: the database steps run between SMTP events, so the
    connections never wait for a lock held by the bookkeeping, nor it for them.

    :class:`digest_mailer.workers.WorkerLoop` shares a send between processes; it
    overrides the hooks marked below."""

    # hook: the state of a row waiting for a retry within this run
    RETRY_STATE = "deferred"

    def __init__(
        self,
        store: Store,
        issue_id: str,
        config: Config,
        make_transport: Callable[[], Transport],
        template: MessageTemplate,
        secret: bytes,
        progress: ProgressCallback | None,
        stop: threading.Event,
    ) -> None:
        self.store = store
        self.Session = store.Session
        self.conn: Connection | None = None
        self.issue_id = issue_id
        self.config = config
        self.template = template
        self.make_transport = make_transport
        self.secret = secret
        self.progress = progress
        self.stop = stop
        self.connections = config.smtp.connections
        self.max_attempts = config.smtp.max_attempts
        self.retry_base = config.smtp.retry_base_seconds
        rate = config.smtp.max_per_second
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_slot = 0.0
        self.candidates: deque[_Job] = deque()
        self.last_id = 0
        self.exhausted = False
        self.retry_heap: list[tuple[float, int, _Job]] = []
        self.run_attempts: Counter[int] = Counter()
        self.in_flight = 0
        self.done = 0
        self.total = 0
        self.paused_reason = ""
        self.fatal = ""
        self.seq = itertools.count()
        self.signing: ThreadPoolExecutor | None = None

    # -- candidates
    def _refill(self) -> None:
        if self.exhausted:
            return
        assert self.conn is not None
        with self.conn.begin():
            rows = self._candidate_rows()
        if len(rows) < CANDIDATE_BATCH:
            self.exhausted = True
        for row in rows:
            self.candidates.append(
                _Job(row.id, row.subscriber_id, row.address, row.name or "", row.link_salt or "")
            )
            self.last_id = row.id

    def _candidate_rows(self) -> Sequence[Row[Any]]:
        assert self.conn is not None
        return self.conn.execute(
            select(
                Delivery.id,
                Delivery.subscriber_id,
                Delivery.address,
                Subscriber.name,
                Subscriber.link_salt,
            )
            .outerjoin(Subscriber, Subscriber.id == Delivery.subscriber_id)
            .where(
                Delivery.issue_id == self.issue_id,
                Delivery.state.in_(("queued", "deferred")),
                Delivery.id > self.last_id,
            )
            .order_by(Delivery.id)
            .limit(CANDIDATE_BATCH)
        ).all()

    def _pending(self) -> bool:
        return bool(self.candidates or not self.exhausted or self.retry_heap)

    def _stopping(self) -> bool:
        return bool(self.paused_reason or self.fatal or self.stop.is_set())

    # -- the next messages for free connections (in memory; candidates are prefetched)
    def _pick(self, now: float) -> list[_Job]:
        picked: list[_Job] = []
        free = 0 if self._stopping() else self.connections - self.in_flight
        while free > 0:
            if self.interval and now < self.next_slot:
                break
            if self.retry_heap and self.retry_heap[0][0] <= now:
                job = heapq.heappop(self.retry_heap)[2]
            elif self.candidates:
                job = self.candidates.popleft()
            else:
                break
            self._prepare(job)
            picked.append(job)
            free -= 1
            if self.interval:
                self.next_slot = max(self.next_slot, now) + self.interval
        return picked

    def _prepare(self, job: _Job) -> None:
        """Render a message before its connection needs it: with DKIM, on the signing
        threads (OpenSSL releases the GIL), for the next messages too, so that signing
        overlaps the SMTP round trips. A retry sends the same message again."""
        if job.data is not None or job.refusal is not None:
            return
        job.message_id = make_message_id(self.template.domain, self.issue_id, job.delivery_id)
        if not job.address.isascii():
            try:
                wire_address(job.address)  # cached: render and the transport reuse it
            except UnencodableAddress as exc:
                job.refusal = unsendable(exc)
                return
        url = self.template.unsubscribe_target(
            unsubscribe_url(self.config, self.secret, job.subscriber_id, job.salt)
        )
        args = (job.address, job.name, job.message_id, url)
        loop = asyncio.get_running_loop()
        if self.signing is None:
            job.data = loop.create_future()
            try:
                job.data.set_result(self.template.render(*args))
            except Exception as exc:  # as on the signing threads: its connection reports it
                job.data.set_exception(exc)
        else:
            job.data = loop.run_in_executor(self.signing, self.template.render, *args)

    def _prepare_ahead(self) -> None:
        if self.signing is not None:
            for job in itertools.islice(self.candidates, self.connections):
                self._prepare(job)

    # -- hooks
    def _statements(self) -> tuple[Any, Any]:
        """The statements that claim a row for its SMTP transaction, or skip it."""
        return _CLAIM, _SKIP

    def _claim_params(self, now: datetime) -> dict[str, Any]:
        return {}

    # -- one group commit: outcomes that came in, new claims
    def _commit(self, finished: list[tuple[_Job, Outcome]], picked: list[_Job]) -> list[bool]:
        """Record outcomes and claim the picked rows as ``sending`` in one transaction.

        The picked messages are already travelling: each sends its final dot only after
        this commit says yes (see :meth:`_Job.commit_point`). A crash before the commit
        leaves their rows ``queued``, and no server can have accepted a message without
        its dot. So at most one row per connection is ever ``sending``.
        """
        assert self.conn is not None
        now = utcnow()
        with driver_transaction(self.conn) as cursor:
            if finished:
                self._record(cursor, finished, now)
            verdicts = [self._claim(cursor, job, now) for job in picked]
        if len(self.candidates) < 2 * self.connections:
            self._refill()
        return verdicts

    def _claim(self, cursor: Any, job: _Job, now: datetime) -> bool:
        params = {"b_id": job.delivery_id, "message_id": job.message_id, "now": now}
        params.update(self._claim_params(now))
        if self.claim.execute(cursor, params) == 1:
            return True
        self.skip.execute(cursor, params)
        return False

    def _record(self, cursor: Any, finished: list[tuple[_Job, Outcome]], now: datetime) -> None:
        rows = []
        bounces = []
        clock = time.monotonic()
        for job, outcome in finished:
            kind = outcome.kind
            if kind == "cancelled" or (kind not in ("unavailable", "fatal") and _refused(job)):
                continue  # its claim was refused, nothing was sent: already marked skipped
            state = kind
            if kind == "deferred":
                self.run_attempts[job.delivery_id] += 1
                tries = self.run_attempts[job.delivery_id]
                if tries < self.max_attempts:
                    due = clock + self.retry_base * 2 ** (tries - 1)
                    heapq.heappush(self.retry_heap, (due, next(self.seq), job))
                    state = self.RETRY_STATE
                else:
                    self.done += 1
            elif kind in ("unavailable", "fatal"):
                state = "queued"  # never transmitted: goes back for the next run
                if kind == "fatal":
                    self.fatal = self.fatal or outcome.message
                else:
                    self.paused_reason = self.paused_reason or outcome.message
            else:
                self.done += 1
                if is_recipient_refusal(outcome):  # scored after the loop (score_pending)
                    bounces.append(self._bounce_row(job, outcome, now))
            rows.append(
                {
                    "b_id": job.delivery_id,
                    "state": state,
                    "smtp_code": outcome.code,
                    "smtp_message": outcome.message or None,
                    "sent_at": now if kind == "sent" else None,
                    "updated_at": now,
                }
            )
        self.record.executemany(cursor, rows)
        if bounces:
            self.bounce.executemany(cursor, bounces)

    @staticmethod
    def _bounce_row(job: _Job, outcome: Outcome, now: datetime) -> dict[str, Any]:
        return {
            "report_key": f"smtp:{job.delivery_id}",
            "report_message_id": None,
            "address": address_key(job.address),
            "subscriber_id": job.subscriber_id,
            "delivery_id": job.delivery_id,
            "kind": "hard",
            "status": refusal_status(outcome),
            "diagnostic": f"refused at send time: {outcome.code} {outcome.message}"[:1000],
            "matched_by": "send",
            "score_added": 0.0,
            "action": "",
            "occurred_at": now,
            "created_at": now,
        }

    # -- run
    def run(self) -> SendReport:
        with self.Session.begin() as session:
            score_pending(session, self.config)  # refusals a crashed run recorded
            self.total = (
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.issue_id == self.issue_id,
                        Delivery.state.in_(("queued", "deferred")),
                    )
                )
                or 0
            )
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            issue.state = "sending"
            issue.started_at = issue.started_at or utcnow()
            issue.updated_at = utcnow()
        with self.store.engine.connect() as conn:
            self.conn = conn
            claim, skip = self._statements()
            self.claim = FastStatement(claim, conn.dialect)
            self.skip = FastStatement(skip, conn.dialect)
            self.record = FastStatement(_RECORD, conn.dialect)
            self.bounce = FastStatement(_BOUNCE, conn.dialect)
            run_coroutine(self._main())
        return self._finish()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        results: asyncio.Queue[tuple[_Job, Outcome]] = asyncio.Queue()
        jobs: asyncio.Queue[_Job | None] = asyncio.Queue()

        async def connection() -> None:
            """One SMTP connection: takes a message, sends it, reports; until told to stop."""
            transport = self.make_transport()
            try:
                while (job := await jobs.get()) is not None:
                    try:
                        if job.refusal is not None:
                            results.put_nowait((job, job.refusal))  # nothing goes out
                            continue
                        assert job.data is not None
                        outcome = await send_with_reconnects(
                            transport,
                            envelope_sender(self.config, self.secret, job.delivery_id),
                            job.address,
                            await job.data,
                            self.retry_base,
                            job.commit_point,
                        )
                    except Exception as exc:  # a bug must not lose the row: report it
                        message = f"internal error: {type(exc).__name__}: {exc}"
                        outcome = Outcome("fatal", None, message)
                    results.put_nowait((job, outcome))
            finally:
                await transport.close()

        self.signing = (
            ThreadPoolExecutor(min(self.connections + 1, os.cpu_count() or 1), "dkim")
            if self.template.signer is not None
            else None
        )
        connections = [asyncio.create_task(connection()) for _ in range(self.connections)]
        finished: list[tuple[_Job, Outcome]] = []
        try:
            self._refill()
            while True:
                now = time.monotonic()
                picked = self._pick(now)
                self._prepare_ahead()
                for job in picked:
                    job.claimed = loop.create_future()
                    jobs.put_nowait(job)
                self.in_flight += len(picked)
                if picked:
                    await asyncio.sleep(0)  # let them put MAIL FROM on the wire first
                try:
                    verdicts = self._commit(finished, picked)
                except BaseException:
                    for job in picked:
                        if job.claimed is not None and not job.claimed.done():
                            job.claimed.set_result(False)
                    raise
                for job, ok in zip(picked, verdicts, strict=True):
                    if not ok:
                        self.done += 1
                    assert job.claimed is not None
                    job.claimed.set_result(ok)
                if self.progress:
                    self.progress(self.done, self.total)
                if self.in_flight == 0 and (self._stopping() or not self._pending()):
                    return
                finished = await self._wait(results, now)
        finally:
            for _ in connections:
                jobs.put_nowait(None)
            await asyncio.gather(*connections, return_exceptions=True)
            if self.signing is not None:
                self.signing.shutdown(cancel_futures=True)

    async def _wait(
        self, results: asyncio.Queue[tuple[_Job, Outcome]], now: float
    ) -> list[tuple[_Job, Outcome]]:
        """Until a message is done, a retry or a rate slot is due (when a connection is
        free to take it), or 0.5 s have passed (so that a stop request is noticed)."""
        wake = [now + 0.5]
        if self.in_flight < self.connections and not self._stopping():
            if self.retry_heap:
                wake.append(self.retry_heap[0][0])
            if self.interval and self.next_slot > now:
                wake.append(self.next_slot)
        timeout = min(wake) - time.monotonic()
        finished = []
        if timeout <= 0:
            await asyncio.sleep(0)  # always let the connections run
        else:
            try:
                async with asyncio.timeout(timeout):
                    finished.append(await results.get())
            except TimeoutError:
                return []
        while not results.empty():
            finished.append(results.get_nowait())
        self.in_flight -= len(finished)
        return finished

    def _finish(self) -> SendReport:
        with self.Session.begin() as session:
            score_pending(session, self.config)
            counts = delivery_counts(session, self.issue_id)
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            open_rows = counts["queued"] + counts["deferred"] + counts["sending"]
            if open_rows == 0 and not (self.paused_reason or self.fatal):
                issue.state = "sent"
                issue.finished_at = utcnow()
            else:
                issue.state = "paused"
            issue.updated_at = utcnow()
            state = issue.state
        reason = self.fatal or self.paused_reason
        if not reason and self.stop.is_set() and state != "sent":
            reason = "stopped by request"
        if not reason and counts["deferred"]:
            reason = (
                f"{counts['deferred']} recipient(s) were refused temporarily "
                f"{self.max_attempts} times"
            )
        return SendReport(self.issue_id, state, counts, reason)


_DELIVERIES = Delivery.__table__
_CLAIMABLE = and_(
    _DELIVERIES.c.id == bindparam("b_id"),
    or_(_DELIVERIES.c.state == "queued", _DELIVERIES.c.state == "deferred"),
)


def claim_statements(claimable: Any, **values: Any) -> tuple[Any, Any]:
    """The statements that turn one claimable row ``sending`` (only while its subscriber
    is still active; ``values`` are set too) or ``skipped`` (when no longer active)."""
    claim = (
        update(_DELIVERIES)
        .where(
            claimable,
            exists().where(
                Subscriber.__table__.c.id == _DELIVERIES.c.subscriber_id,
                Subscriber.__table__.c.status == "active",
            ),
        )
        .values(
            state="sending",
            attempts=_DELIVERIES.c.attempts + 1,
            message_id=bindparam("message_id"),
            updated_at=bindparam("now", type_=UTCDateTime()),
            **values,
        )
    )
    skip = (
        update(_DELIVERIES)
        .where(claimable)
        .values(
            state="skipped",
            smtp_message="not sent: the subscriber is no longer active",
            updated_at=bindparam("now", type_=UTCDateTime()),
        )
    )
    return claim, skip


_CLAIM, _SKIP = claim_statements(_CLAIMABLE)
# A refusal of the recipient, recorded with its outcome; scored by score_pending.
_BOUNCE_COLUMNS = (
    "report_key",
    "report_message_id",
    "address",
    "subscriber_id",
    "delivery_id",
    "kind",
    "status",
    "diagnostic",
    "matched_by",
    "score_added",
    "action",
    "occurred_at",
    "created_at",
)
_BOUNCE = insert(Bounce.__table__).values({c: bindparam(c) for c in _BOUNCE_COLUMNS})
# One statement for a batch of outcomes (executemany); compiled once.
_RECORD = (
    update(_DELIVERIES)
    .where(_DELIVERIES.c.id == bindparam("b_id"))
    .values(
        state=bindparam("state"),
        smtp_code=bindparam("smtp_code"),
        smtp_message=bindparam("smtp_message"),
        sent_at=func.coalesce(bindparam("sent_at", type_=UTCDateTime()), _DELIVERIES.c.sent_at),
        updated_at=bindparam("updated_at", type_=UTCDateTime()),
    )
)


def run_send(
    store: Store,
    issue_id: str,
    config: Config,
    template: MessageTemplate,
    make_transport: Callable[[], Transport],
    secret: bytes,
    *,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    lease: str | None = None,
) -> SendReport:
    """Send every queued or deferred delivery of ``issue_id``; commits as it goes.
    ``lease``: the id :func:`digest_mailer.lease.take_lease` gave; it is renewed while the
    send runs and ended with it."""
    loop = _SendLoop(
        store,
        issue_id,
        config,
        make_transport,
        template,
        secret,
        progress,
        stop or threading.Event(),
    )
    if lease is None:
        return loop.run()
    with LeaseKeeper(store, lease, config.workers.lease_seconds) as keeper:
        report = loop.run()
        keeper.final_state = "finished" if report.state == "sent" else "stopped"
    return report


# --------------------------------------------------------------------------- reports


def delivery_counts(session: Session, issue_id: str) -> dict[str, int]:
    counts = dict.fromkeys(DELIVERY_STATES, 0)
    for state, n in session.execute(
        select(Delivery.state, func.count())
        .where(Delivery.issue_id == issue_id)
        .group_by(Delivery.state)
    ):
        counts[state] = n
    return counts


def issue_status(session: Session, issue_id: str | None = None) -> list[dict[str, object]]:
    issues = (
        [get_issue(session, issue_id)]
        if issue_id
        else session.scalars(select(Issue).order_by(Issue.created_at)).all()
    )
    out = []
    for issue in issues:
        tests = session.scalar(
            select(func.count()).select_from(TestSend).where(TestSend.issue_id == issue.id)
        )
        out.append(
            {
                "issue": issue.id,
                "subject": issue.subject,
                "fingerprint": issue.fingerprint,
                "state": issue.state,
                "tested": issue.tested_fingerprint == issue.fingerprint,
                "test_sends": tests or 0,
                "skipped_test": issue.skipped_test,
                "counts": delivery_counts(session, issue.id),
                # subscribers whose delivery of this issue bounced, or who complained
                "bounces": issue_bounce_counts(session, issue.id),
                "audiences": issue.audiences.splitlines(),
                "workers": worker_status(session, issue.id),
                "started_at": issue.started_at.isoformat() if issue.started_at else None,
                "finished_at": issue.finished_at.isoformat() if issue.finished_at else None,
                "note": issue.note,
            }
        )
    return out


def worker_status(session: Session, issue_id: str) -> list[dict[str, object]]:
    """The workers that took part in an issue's send, each with its delivery counts."""
    per_worker: dict[str, dict[str, int]] = {}
    for worker_id, state, n in session.execute(
        select(Delivery.worker_id, Delivery.state, func.count())
        .where(Delivery.issue_id == issue_id, Delivery.worker_id.is_not(None))
        .group_by(Delivery.worker_id, Delivery.state)
    ):
        per_worker.setdefault(worker_id, dict.fromkeys(DELIVERY_STATES, 0))[state] = n
    now = utcnow()
    out = []
    for w in session.scalars(
        select(SendWorker).where(SendWorker.issue_id == issue_id).order_by(SendWorker.started_at)
    ):
        state = w.state
        if state == "running" and w.lease_until < now:
            state = "lost"
        out.append(
            {
                "id": w.id,
                "kind": w.kind,
                "host": w.host,
                "pid": w.pid,
                "connections": w.connections,
                "state": state,
                "started_at": w.started_at.isoformat(),
                "heartbeat_at": w.heartbeat_at.isoformat(),
                "counts": per_worker.get(w.id, dict.fromkeys(DELIVERY_STATES, 0)),
            }
        )
    return out


LOG_FIELDS = ("address", "state", "attempts", "code", "message", "time", "message_id")


def delivery_log(
    session: Session, issue_id: str, state: str | None = None
) -> Iterable[dict[str, object]]:
    get_issue(session, issue_id)
    query = select(Delivery).where(Delivery.issue_id == issue_id).order_by(Delivery.id)
    if state:
        query = query.where(Delivery.state == state)
    for d in session.scalars(query.execution_options(yield_per=CANDIDATE_BATCH)):
        yield {
            "address": d.address,
            "state": d.state,
            "attempts": d.attempts,
            "code": d.smtp_code,
            "message": d.smtp_message or "",
            "time": (d.sent_at or d.updated_at).isoformat(),
            "message_id": d.message_id or "",
        }
