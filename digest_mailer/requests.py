"""Acting on email requests: record every message, double opt-in, unsubscribe, replies.

Each message read from the request mailbox is recorded once, by its Message-ID (or a
hash of its bytes), so processing the same mailbox again changes nothing and sends
nothing twice. What it asks for is decided by :mod:`digest_mailer.classify`; here:

- ``subscribe``: the address becomes ``pending`` (a new address) and gets a confirmation
  whose subject carries a token; an active address gets no second confirmation; an
  address that left keeps its status until it confirms.
- ``confirm``: a reply carrying a valid token (or the web link) makes it ``active``.
  Tokens expire after :data:`CONFIRM_DAYS` days; only their SHA-256 is stored.
- ``unsubscribe``: the sender's address becomes ``unsubscribed`` at once, with an event
  naming the message, and gets one short acknowledgement.
- ``bounce``: handed to :mod:`digest_mailer.bounces` (scored, possibly ``bounced`` or
  ``complained``); the report is kept.
- ``ignore`` changes nothing; ``review`` waits for staff (:func:`resolve_request`).

Replies go through an outbox (:class:`~digest_mailer.models.Reply`): queued in the same
transaction as the decision, sent after it commits. They carry ``Auto-Submitted:
auto-replied`` and ``In-Reply-To``; no address gets more than one per hour.
"""

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest_mailer.bounces import BounceContext, handle_report
from digest_mailer.classify import (
    Incoming,
    OurAddresses,
    Unreadable,
    Verdict,
    bare_subject,
    decide,
    message_key,
    parse,
)
from digest_mailer.composer import one_line, render_template, template_environment
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.errors import DigestMailerError, InputError, NotFoundError
from digest_mailer.inbox import MessageSource, process_in_chunks
from digest_mailer.message import domain_of, format_recipient, make_message_id
from digest_mailer.models import Confirmation, EmailRequest, Reply, Subscriber, utcnow
from digest_mailer.sender import envelope_sender, send_with_reconnects
from digest_mailer.signing import DkimSigner
from digest_mailer.subscribers import (
    address_key,
    find_subscriber,
    normalize_address,
    record_event,
    set_status,
)
from digest_mailer.transport import Outcome, Transport, run_coroutine

CONFIRM_DAYS = 7
REPLY_INTERVAL = timedelta(hours=1)
MAX_REPLY_ATTEMPTS = 5
KEEP_RAW_BYTES = 1 << 20  # reports larger than this are kept truncated
EXCERPT_CHARS = 2000
ACTOR = "email-request"


@dataclass
class RequestResult:
    """What happened to one message; ``address`` is the address whose subscription
    changes (the token for ``confirm``)."""

    message_id: str | None
    sender: str
    label: str
    address: str | None
    action: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "from": self.sender,
            "label": self.label,
            "address": self.address,
            "action": self.action,
            "reason": self.reason,
        }


class RequestContext:
    """What handling a message needs besides the session: config, our addresses, time."""

    def __init__(self, config: Config, *, now: datetime | None = None) -> None:
        nl = config.newsletter
        self.config = config
        self.now = now or utcnow()
        self.ours = OurAddresses.of(
            nl.from_address, nl.request_address, nl.reply_to, nl.bounce_address
        )
        self._env: Any = None
        self.recorded: dict[str, EmailRequest] = {}  # by message key, this run
        self.bounces = BounceContext(config, now=self.now)

    @property
    def env(self) -> Any:
        if self._env is None:
            self._env = template_environment(self.config)
        return self._env

    def normalized(self, address: str) -> str:
        return normalize_address(
            address, allow_test_domains=self.config.subscribers.allow_test_domains
        )


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().lower().encode("ascii", "replace")).hexdigest()


# --------------------------------------------------------------------------- one message


def handle_message(session: Session, ctx: RequestContext, raw: bytes) -> RequestResult:
    """Record one message and act on it. Never raises for a bad message: what cannot be
    read is recorded as ``review`` with the reason."""
    try:
        incoming: Incoming | None = parse(raw)
    except Unreadable as exc:
        incoming = None
        key, message_id, sender = message_key(None, raw), None, ""
        verdict = Verdict("review", f"unreadable message: {exc}")
    else:
        key, message_id, sender = incoming.key, incoming.message_id, incoming.sender
        try:
            verdict = decide(incoming, ctx.ours)
        except Exception as exc:  # a message the parser accepted but cannot take apart
            verdict = Verdict("review", f"could not be read: {type(exc).__name__}: {exc}")
    existing = ctx.recorded.get(key)
    if existing is None:
        with session.no_autoflush:  # new records are inserted in batches, not one by one
            found = session.execute(
                select(EmailRequest.id).where(EmailRequest.message_key == key)
            ).first()
        existing = session.get(EmailRequest, found[0]) if found else None
    if existing is not None:
        return RequestResult(
            message_id,
            sender,
            existing.label,
            existing.address,
            "none: already processed",
            existing.reason,
        )
    request = EmailRequest(
        message_key=key,
        message_id=message_id,
        from_address=sender[:320],
        subject=(incoming.subject if incoming else "")[:1000],
        label=verdict.label,
        address=None,
        action="",
        reason=verdict.reason,
        excerpt=verdict.own[:EXCERPT_CHARS],
        state="review" if verdict.label == "review" else "done",
        raw=raw[:KEEP_RAW_BYTES] if verdict.label in ("bounce", "review") else None,
        received_at=incoming.date if incoming else None,
        created_at=ctx.now,
    )
    session.add(request)
    ctx.recorded[key] = request
    if verdict.label in ("subscribe", "unsubscribe") and verdict.target:
        try:
            verdict = replace(verdict, target=ctx.normalized(verdict.target))
        except DigestMailerError as exc:  # an address that is not valid: staff decide
            request.label, request.state, request.reason = "review", "review", str(exc)
            request.raw = raw[:KEEP_RAW_BYTES]  # kept, as for every message held for review
            verdict = Verdict("review", str(exc))
    if verdict.label in ("subscribe", "unsubscribe", "confirm") and incoming is not None:
        session.flush()
        address, action = _act(session, ctx, request, verdict, incoming)
    elif verdict.label == "bounce" and incoming is not None:
        found = handle_report(session, ctx.bounces, incoming)
        addresses = [b.address for b in found if b.address]
        address = addresses[0] if len(addresses) == 1 else None
        action = "; ".join(f"{b.address or '?'}: {b.action}" for b in found)[:2000]
    else:  # nothing to act on: the insert waits for the next flush (inserts are batched)
        address, action = None, PASSIVE_ACTIONS[verdict.label]
    request.address, request.action = address, action
    return RequestResult(message_id, sender, request.label, address, action, request.reason)


PASSIVE_ACTIONS = {
    "review": "held for review",
    "ignore": "none",
}


def _act(
    session: Session,
    ctx: RequestContext,
    request: EmailRequest,
    verdict: Verdict,
    incoming: Incoming,
) -> tuple[str | None, str]:
    if verdict.label == "confirm":
        assert verdict.target is not None
        return verdict.target, confirm_token(session, ctx, verdict.target, request, incoming)
    address = verdict.target
    assert address is not None
    if verdict.label == "subscribe":
        name = incoming.sender_name if address_key(address) == address_key(incoming.sender) else ""
        return address, start_subscription(session, ctx, address, name, request, incoming)
    return address, unsubscribe(session, ctx, address, request, incoming)


# --------------------------------------------------------------------------- the actions


def _origin(request: EmailRequest | None, otherwise: str) -> str:
    """What an event names as the cause: the message, else who acted."""
    return f"message {request.message_id}" if request and request.message_id else otherwise


def start_subscription(
    session: Session,
    ctx: RequestContext,
    address: str,
    name: str,
    request: EmailRequest | None,
    incoming: Incoming | None,
) -> str:
    """Double opt-in: ``pending`` plus a confirmation, unless already active."""
    subscriber = find_subscriber(session, address)
    origin = _origin(request, "staff")
    if subscriber is not None and subscriber.status == "active":
        return "none: already subscribed"
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            email_key=address_key(address),
            name=one_line(name)[:200],
            status="pending",
            source=ACTOR,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        session.add(subscriber)
        session.flush()
        record_event(
            session,
            subscriber,
            "status",
            ACTOR,
            f"subscription requested ({origin})",
            None,
            "pending",
        )
    elif subscriber.status != "pending":
        # keeps its status (not mailed either way) until the person confirms
        record_event(
            session,
            subscriber,
            "request",
            ACTOR,
            f"asked to subscribe again ({origin}); active once confirmed",
        )
    if _replied_recently(session, address, ctx.now):
        return "pending: no confirmation sent (this address had a reply within the hour)"
    token = secrets.token_hex(16)
    session.add(
        Confirmation(
            subscriber_id=subscriber.id,
            token_hash=token_hash(token),
            request_id=request.id if request else None,
            created_at=ctx.now,
            expires_at=ctx.now + timedelta(days=CONFIRM_DAYS),
        )
    )
    nl = ctx.config.newsletter
    link = f"{nl.public_url.rstrip('/')}/c/{token}" if nl.public_url else ""
    queue_reply(
        session,
        ctx,
        "confirm",
        address,
        subscriber.name,
        f"Confirm your subscription [token: {token}]",
        {"confirm_url": link, "token": token, "days": CONFIRM_DAYS, "address": address},
        request,
        incoming,
    )
    return f"pending: confirmation sent to {address}"


def confirm_token(
    session: Session,
    ctx: RequestContext,
    token: str,
    request: EmailRequest | None = None,
    incoming: Incoming | None = None,
    *,
    actor: str = ACTOR,
) -> str:
    """Activate the subscription a confirmation token names; says what happened."""
    confirmation = session.scalars(
        select(Confirmation).where(Confirmation.token_hash == token_hash(token))
    ).first()
    if confirmation is None:
        if request is not None:
            request.state = "review"
        return "none: unknown confirmation token"
    subscriber = session.get(Subscriber, confirmation.subscriber_id)
    assert subscriber is not None
    if confirmation.confirmed_at is not None or subscriber.status == "active":
        return "none: already confirmed"
    if confirmation.expires_at <= ctx.now:
        again = start_subscription(session, ctx, subscriber.email, "", request, incoming)
        return f"confirmation expired; {again}"
    origin = _origin(request, actor)
    confirmation.confirmed_at = ctx.now
    set_status(session, subscriber, "active", actor=actor, detail=f"confirmed ({origin})")
    return "subscribed: confirmed"


def unsubscribe(
    session: Session,
    ctx: RequestContext,
    address: str,
    request: EmailRequest | None,
    incoming: Incoming | None,
) -> str:
    """Unsubscribe at once and acknowledge (also when the address was not on the list,
    so the person knows to write from the address that receives the digest)."""
    subscriber = find_subscriber(session, address)
    origin = _origin(request, "staff")
    title = ctx.config.newsletter.title
    if subscriber is None:
        action, kind, subject = "none: not subscribed", "not_subscribed", f"{title}: not subscribed"
    else:
        kind, subject = "unsubscribed", f"You are unsubscribed from {title}"
        # outstanding confirmations must not bring the address back
        session.execute(
            update(Confirmation)
            .where(
                Confirmation.subscriber_id == subscriber.id,
                Confirmation.confirmed_at.is_(None),
                Confirmation.expires_at > ctx.now,
            )
            .values(expires_at=ctx.now)
        )
        if subscriber.status in ("active", "pending"):
            set_status(
                session,
                subscriber,
                "unsubscribed",
                actor=ACTOR,
                detail=f"unsubscribe request ({origin})",
                reason="asked by email",
            )
            action = "unsubscribed"
        else:
            action = f"none: already {subscriber.status}"
    if _replied_recently(session, address, ctx.now):
        return f"{action}; no acknowledgement (this address had a reply within the hour)"
    queue_reply(
        session,
        ctx,
        kind,
        address,
        subscriber.name if subscriber else "",
        subject,
        {"address": address},
        request,
        incoming,
    )
    return f"{action}; acknowledgement sent"


# --------------------------------------------------------------------------- replies


def _replied_recently(session: Session, address: str, now: datetime) -> bool:
    return (
        session.scalars(
            select(Reply.id).where(
                Reply.address_key == address_key(address), Reply.created_at > now - REPLY_INTERVAL
            )
        ).first()
        is not None
    )


def queue_reply(
    session: Session,
    ctx: RequestContext,
    kind: str,
    address: str,
    name: str,
    subject: str,
    context: dict[str, Any],
    request: EmailRequest | None,
    incoming: Incoming | None,
) -> Reply:
    """Build a reply from ``templates/requests/KIND.{txt,html}.j2`` into the outbox."""
    nl = ctx.config.newsletter
    values = {
        "newsletter": nl.title,
        "request_address": nl.request_address,
        "postal_address": nl.postal_address,
        "their_subject": bare_subject(incoming.subject) if incoming else "",
        **context,
    }
    text = render_template(ctx.env, f"requests/{kind}.txt.j2", values)
    html = render_template(ctx.env, f"requests/{kind}.html.j2", values)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = Address(display_name=one_line(nl.from_name), addr_spec=nl.request_address)
    msg["To"] = format_recipient(address, name)
    msg["Subject"] = one_line(subject)
    msg["Date"] = format_datetime(ctx.now)
    message_id = make_message_id(domain_of(nl.request_address), "reply", kind)
    msg["Message-ID"] = message_id
    if incoming is not None and incoming.message_id:
        msg["In-Reply-To"] = incoming.message_id
        msg["References"] = one_line(f"{incoming.references} {incoming.message_id}".strip())
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    reply = Reply(
        request_id=request.id if request else None,
        address=address,
        address_key=address_key(address),
        kind=kind,
        subject=subject,
        message_id=message_id,
        data=msg.as_bytes(policy=SMTP),
        state="queued",
        attempts=0,
        created_at=ctx.now,
    )
    session.add(reply)
    session.flush()
    return reply


@dataclass
class ReplyResult:
    address: str
    kind: str
    outcome: Outcome


def send_replies(
    store: Store, config: Config, transport: Transport, *, now: datetime | None = None
) -> list[ReplyResult]:
    """Send the outbox: each reply is committed ``sending`` before the end of its DATA and
    with its outcome after, like the send log; a crash leaves it ``uncertain``, never sent
    twice. Temporary failures stay ``deferred`` for the next run. Closes ``transport``."""
    signer = DkimSigner.from_config(config)
    with store.Session.begin() as session:
        session.execute(update(Reply).where(Reply.state == "sending").values(state="uncertain"))
        pending = session.execute(
            select(Reply.id, Reply.address, Reply.kind, Reply.data)
            .where(Reply.state.in_(("queued", "deferred")), Reply.data.is_not(None))
            .order_by(Reply.id)
        ).all()
    envelope = envelope_sender(config)

    def mark(reply_id: int, **values: Any) -> None:
        with store.Session.begin() as session:
            session.execute(update(Reply).where(Reply.id == reply_id).values(**values))

    async def deliver() -> list[ReplyResult]:
        results = []
        try:
            for reply_id, address, kind, data in pending:

                async def commit(reply_id: int = reply_id) -> bool:
                    mark(reply_id, state="sending", attempts=Reply.attempts + 1)
                    return True

                if signer is not None:
                    data = signer.sign(data)
                outcome = await send_with_reconnects(
                    transport, envelope, address, data, config.smtp.retry_base_seconds, commit
                )
                _record_reply(store, reply_id, outcome, now or utcnow())
                results.append(ReplyResult(address, kind, outcome))
                if outcome.kind in ("unavailable", "fatal"):
                    break  # the server is gone: the rest wait for the next run
        finally:
            await transport.close()
        return results

    return run_coroutine(deliver())


def _record_reply(store: Store, reply_id: int, outcome: Outcome, now: datetime) -> None:
    with store.Session.begin() as session:
        reply = session.get(Reply, reply_id)
        assert reply is not None
        state = {"sent": "sent", "failed": "failed", "uncertain": "uncertain"}.get(outcome.kind)
        if state is None:  # deferred, a lost connection, a cancelled commit
            state = "failed" if reply.attempts >= MAX_REPLY_ATTEMPTS else "deferred"
        reply.state = state
        reply.smtp_code, reply.smtp_message = outcome.code, outcome.message[:1000]
        if state == "sent":
            reply.sent_at = now
        if state in ("sent", "failed", "uncertain"):
            reply.data = None  # the token inside is no longer needed


# --------------------------------------------------------------------------- the mailbox run


def process_source(
    store: Store,
    config: Config,
    source: MessageSource,
    *,
    dry_run: bool = False,
    make_transport: Callable[[], Transport] | None = None,
    now: datetime | None = None,
) -> tuple[list[RequestResult], list[ReplyResult]]:
    """Read every message from ``source``, record and act on each, then send the replies.

    Decisions commit in chunks; a message is marked processed at its source only after
    its chunk committed, so a crash loses nothing (and repeats nothing: the message key
    makes the second reading a no-op). ``dry_run`` decides and reports, changes nothing
    and sends nothing."""
    ctx = RequestContext(config, now=now)
    results = process_in_chunks(
        store, source, lambda session, raw: [handle_message(session, ctx, raw)], dry_run=dry_run
    )
    if dry_run or make_transport is None:
        return results, []
    return results, send_replies(store, config, make_transport(), now=now)


# --------------------------------------------------------------------------- staff review


def review_queue(session: Session) -> Sequence[EmailRequest]:
    return session.scalars(
        select(EmailRequest).where(EmailRequest.state == "review").order_by(EmailRequest.id)
    ).all()


def list_requests(
    session: Session, *, label: str | None = None, limit: int = 100
) -> Sequence[EmailRequest]:
    query = select(EmailRequest).order_by(EmailRequest.id.desc()).limit(limit)
    if label:
        query = query.where(EmailRequest.label == label)
    return session.scalars(query).all()


RESOLUTIONS = ("subscribe", "unsubscribe", "ignore")


def resolve_request(
    session: Session,
    ctx: RequestContext,
    request_id: int,
    decision: str,
    address: str | None = None,
) -> RequestResult:
    """Staff settle a request held for review: subscribe (double opt-in, a confirmation
    is sent), unsubscribe (at once, acknowledged) or ignore."""
    if decision not in RESOLUTIONS:
        raise InputError(f"resolve with one of {', '.join(RESOLUTIONS)}, not {decision!r}")
    request = session.get(EmailRequest, request_id)
    if request is None:
        raise NotFoundError(
            f"no request with id {request_id} (see `digest-mailer requests review`)"
        )
    if request.state != "review":
        raise InputError(
            f"request {request_id} is not waiting for review (it was {request.state}: "
            f"{request.label}, {request.action})"
        )
    target = address or request.from_address
    action = "none"
    if decision != "ignore":
        if not target:
            raise InputError(f"request {request_id} has no sender address: give --address")
        target = ctx.normalized(target)
        incoming = _incoming_of(request)
        if decision == "subscribe":
            action = start_subscription(session, ctx, target, "", request, incoming)
        else:
            action = unsubscribe(session, ctx, target, request, incoming)
    request.state, request.resolution, request.resolved_at = "resolved", decision, ctx.now
    request.address = target if decision != "ignore" else None
    request.action = f"resolved by staff: {action}"
    session.flush()
    return RequestResult(
        request.message_id,
        request.from_address,
        request.label,
        request.address,
        request.action,
        request.reason,
    )


def _incoming_of(request: EmailRequest) -> Incoming | None:
    """The original message again (kept for review), so the reply can refer to it."""
    if not request.raw:
        return None
    try:
        return parse(request.raw)
    except Unreadable:
        return None


def request_dict(request: EmailRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "message_id": request.message_id,
        "from": request.from_address,
        "subject": request.subject,
        "label": request.label,
        "state": request.state,
        "address": request.address,
        "action": request.action,
        "reason": request.reason,
        "excerpt": request.excerpt,
        "received_at": request.received_at.isoformat() if request.received_at else None,
        "created_at": request.created_at.isoformat(),
    }
