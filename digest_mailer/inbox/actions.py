"""Acting on the messages sent to the request address: record every message, double
opt-in, unsubscribe, replies, review.

Each message is recorded once (:class:`~digest_mailer.models.InboxMessage`), by its
Message-ID (or a hash of its bytes), so processing the same mailbox again changes nothing
and sends nothing twice. What it asks for is decided by :mod:`digest_mailer.inbox.classify`
before any transaction opens; here, inside one savepoint per message
(:mod:`digest_mailer.inbox.run`):

- ``subscribe``: the address becomes ``pending`` (a new address) and gets a confirmation
  whose subject carries a token; an active address gets no second confirmation; an
  address that left keeps its status until it confirms.
- ``confirm``: a token we issued, found in the store, makes its subscriber ``active``.
  Tokens expire after :data:`CONFIRM_DAYS` days; only their SHA-256 is stored. An
  unknown, expired or malformed token activates nobody and gets one reply saying how to
  subscribe again.
- ``unsubscribe``: the sender's address becomes ``unsubscribed`` at once, with an event
  naming the message, and gets one short acknowledgement.
- ``bounce``: handed to :mod:`digest_mailer.bounces.process`, which changes a subscriber
  only on proof.
- ``ignore`` changes nothing; ``review`` waits for staff (:func:`resolve_message`).

A message that could not be read or acted on is held for review with the error named
(:func:`hold_message`); the run goes on.
"""

import hashlib
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest_mailer.addresses import (
    MAX_ADDRESS,
    address_key,
    clip,
    display_name,
    mailbox_key,
    normalize_address,
)
from digest_mailer.bounces.process import BounceContext, handle_report
from digest_mailer.composer import template_environment
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.errors import DigestMailerError, InputError, NotFoundError
from digest_mailer.inbox.classify import (
    TOKEN_SHAPE,
    Incoming,
    Policy,
    Unreadable,
    Verdict,
    decide,
    message_key,
    parse,
    readable_text,
)
from digest_mailer.inbox.held import KEEP_RAW_BYTES, record_held
from digest_mailer.inbox.outbox import ReplyResult, queue_reply, reply_refused, send_replies
from digest_mailer.inbox.run import HeldMessage, RunResult, Steps, run_mailbox
from digest_mailer.inbox.sources import MessageSource
from digest_mailer.kinds import InboxState, Label
from digest_mailer.models import Confirmation, Delivery, InboxMessage, Reply, Subscriber, utcnow
from digest_mailer.subscribers import find_subscriber, record_event, set_status
from digest_mailer.tokens import make_token, read_token, signing_secret
from digest_mailer.transport import Transport

CONFIRM_DAYS = 7
EXCERPT_CHARS = 2000
ACTOR = "email-request"


@dataclass
class InboxResult:
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


class InboxContext:
    """What handling a message needs besides the session: config, our addresses, time."""

    def __init__(
        self, config: Config, *, now: datetime | None = None, dry_run: bool = False
    ) -> None:
        self.config = config
        self.now = now or utcnow()
        self.dry_run = dry_run  # replies are recorded but not built
        self.bounces = BounceContext(config, now=self.now)
        self.ours = self.bounces.ours
        self.policy = Policy(self.ours, config.inbox.authserv_id, config.inbox.max_message_bytes)
        self._env: Any = None

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


@dataclass
class Decided:
    """A message read and decided, with no database: what :func:`handle_decided` acts on."""

    raw: bytes
    key: str
    incoming: Incoming | None
    verdict: Verdict


def decide_message(raw: bytes, policy: Policy) -> Decided:
    """Read and decide one message (pure). A message that is not an email at all is
    decided ``review``."""
    try:
        incoming = parse(raw, max_bytes=policy.max_message_bytes)
    except Unreadable as exc:
        return Decided(
            raw, message_key(None, raw), None, Verdict(Label.REVIEW, f"unreadable: {exc}")
        )
    return Decided(raw, incoming.key, incoming, decide(incoming, policy))


def _already(session: Session, key: str) -> InboxMessage | None:
    """The record of a message with this key. Earlier messages of the run were flushed
    when their savepoints were released, so no autoflush is needed."""
    with session.no_autoflush:
        found = session.scalar(select(InboxMessage.id).where(InboxMessage.message_key == key))
        return session.get(InboxMessage, found) if found else None


def _record(ctx: InboxContext, decided: Decided, verdict: Verdict) -> InboxMessage:
    incoming = decided.incoming
    keep = verdict.label in (Label.BOUNCE, Label.REVIEW)
    return InboxMessage(
        message_key=decided.key,
        message_id=incoming.message_id if incoming else None,
        from_address=clip(incoming.sender if incoming else "", MAX_ADDRESS),
        subject=clip(incoming.subject if incoming else "", 1000),
        label=str(verdict.label),
        address=None,
        action="",
        reason=verdict.reason,
        excerpt=clip(verdict.own, EXCERPT_CHARS),
        state=InboxState.REVIEW if verdict.label == Label.REVIEW else InboxState.DONE,
        raw=decided.raw[:KEEP_RAW_BYTES] if keep else None,
        received_at=incoming.date if incoming else None,
        created_at=ctx.now,
    )


def handle_decided(
    session: Session, ctx: InboxContext, decided: Decided
) -> tuple[list[InboxResult], bool]:
    """Record one decided message and act on it; says whether it was acted on."""
    incoming, verdict = decided.incoming, decided.verdict
    message_id = incoming.message_id if incoming else None
    sender = incoming.sender if incoming else ""
    existing = _already(session, decided.key)
    if existing is not None and address_key(existing.from_address) != address_key(sender):
        # the same Message-ID from another sender is another message: a reused or guessed
        # Message-ID must not make a later request look "already processed"
        decided = replace(decided, key=f"{decided.key[:180]} {message_key(None, decided.raw)}")
        existing = _already(session, decided.key)
    if existing is not None:
        result = InboxResult(
            message_id, sender, existing.label, existing.address, "none: already processed",
            existing.reason,
        )  # fmt: skip
        return [result], False
    if verdict.label in (Label.SUBSCRIBE, Label.UNSUBSCRIBE) and verdict.target:
        try:
            verdict = replace(verdict, target=ctx.normalized(verdict.target))
        except DigestMailerError as exc:  # an address that is not valid: staff decide
            verdict = Verdict(Label.REVIEW, str(exc), None, verdict.own)
    record = _record(ctx, decided, verdict)
    session.add(record)
    acted = False
    if verdict.label in (Label.SUBSCRIBE, Label.UNSUBSCRIBE, Label.CONFIRM) and incoming:
        session.flush()  # replies and confirmations refer to the record's id
        address, action = _act(session, ctx, record, verdict, incoming)
        acted = True
    elif verdict.label == Label.BOUNCE and incoming is not None:
        found = handle_report(session, ctx.bounces, incoming)
        addresses = [b.address for b in found if b.address]
        address = clip(addresses[0], MAX_ADDRESS) if len(addresses) == 1 else None
        action = "; ".join(f"{b.address or '?'}: {b.action}" for b in found)[:2000]
        acted = True
    else:
        address, action = None, PASSIVE_ACTIONS.get(verdict.label, "none")
    record.address, record.action = address, action
    result = InboxResult(message_id, sender, record.label, address, action, record.reason)
    return [result], acted


PASSIVE_ACTIONS = {Label.REVIEW: "held for review", Label.IGNORE: "none"}


def hold_message(
    session: Session, ctx: InboxContext, uid: str, raw: bytes, decided: Decided | None, error: str
) -> tuple[list[InboxResult], HeldMessage]:
    """Record a message whose reading or acting failed as ``review``, the error named."""
    incoming = decided.incoming if decided else None
    key = decided.key if decided else message_key(None, raw)
    sender = incoming.sender if incoming else ""
    subject = incoming.subject if incoming else ""
    held = HeldMessage(uid, sender, subject, error)
    record_held(
        session, key=key, raw=raw, incoming=incoming, error=error, action="held for review",
        now=ctx.now,
    )  # fmt: skip
    message_id = incoming.message_id if incoming else None
    return [InboxResult(message_id, sender, Label.REVIEW, None, "held for review", error)], held


def _act(
    session: Session,
    ctx: InboxContext,
    record: InboxMessage,
    verdict: Verdict,
    incoming: Incoming,
) -> tuple[str | None, str]:
    if verdict.label == Label.CONFIRM:
        token = verdict.target or ""
        action = confirm_token(session, ctx, token, record, incoming)
        return clip(token, MAX_ADDRESS), action
    address = verdict.target
    assert address is not None
    if verdict.label == Label.SUBSCRIBE:
        same = address_key(address) == address_key(incoming.sender)
        name = incoming.sender_name if same else ""
        return address, start_subscription(session, ctx, address, name, record, incoming)
    subscriber = find_subscriber(session, address)
    if subscriber is not None and subscriber.status in ("active", "pending"):
        proof = verdict.authenticated and f"sender authenticated ({verdict.authenticated})"
        proof = proof or _unsubscribe_proof(session, ctx, subscriber, incoming)
        if not proof:
            return address, ask_to_confirm_unsubscribe(session, ctx, subscriber, record, incoming)
    return address, unsubscribe(session, ctx, address, record, incoming)


UNSUBSCRIBE_LINK = re.compile(r"/u/([0-9a-z]{1,13}-[A-Za-z0-9_-]{24})(?![A-Za-z0-9_-])")
_IDS = re.compile(r"<[^<>\s]{1,250}>")


def _unsubscribe_proof(
    session: Session, ctx: InboxContext, subscriber: Subscriber, incoming: Incoming
) -> str:
    """Why this message surely comes from the subscriber (''  when nothing shows it): it
    replies to a message we sent to that address (its In-Reply-To or References name our
    Message-ID), or it carries that subscriber's own signed unsubscribe link (a reply
    quoting the issue). A From header alone proves nothing: anyone can write one."""
    msg = incoming.message
    ids = _IDS.findall(f"{msg.get('In-Reply-To') or ''} {incoming.references}"[:20_000])[-50:]
    key = subscriber.email_key
    if ids:
        ours = session.scalar(
            select(Delivery.id).where(
                Delivery.message_id.in_(ids), Delivery.subscriber_id == subscriber.id
            )
        ) or session.scalar(
            select(Reply.id).where(Reply.message_id.in_(ids), Reply.address_key == key)
        )
        if ours:
            return "a reply to our message"
    text = incoming.subject + "\n" + readable_text(incoming.message)
    tokens = UNSUBSCRIBE_LINK.findall(text[:MAX_LINK_SEARCH])[:20]
    if tokens:
        try:
            secret = signing_secret(ctx.config)
        except DigestMailerError:
            return ""
        salt = subscriber.link_salt
        if any(read_token(secret, "unsubscribe", t, salt) == subscriber.id for t in tokens):
            return "carries the reader's own unsubscribe link"
    return ""


MAX_LINK_SEARCH = 1 << 20


def ask_to_confirm_unsubscribe(
    session: Session,
    ctx: InboxContext,
    subscriber: Subscriber,
    request: InboxMessage | None,
    incoming: Incoming | None,
) -> str:
    """An unsubscribe request nothing proves the subscriber sent: the subscriber is asked
    to confirm it (the signed one-click link, or a reply), and nothing changes until then."""
    origin = _origin(request, ACTOR)
    record_event(
        session, subscriber, "request", ACTOR,
        f"asked by email to unsubscribe ({origin}); nothing proves the sender owns the "
        "address, so the subscriber is asked to confirm",
    )  # fmt: skip
    refused = reply_refused(session, ctx.config, subscriber.email, "confirm_unsubscribe", ctx.now)
    if refused:
        return f"none: not proven; no confirmation sent ({refused})"
    nl = ctx.config.newsletter
    link = ""
    if nl.public_url:
        try:
            secret = signing_secret(ctx.config)
            token = make_token(secret, "unsubscribe", subscriber.id, subscriber.link_salt)
            link = f"{nl.public_url.rstrip('/')}/u/{token}"
        except DigestMailerError:
            link = ""
    queue_reply(
        session, ctx, "confirm_unsubscribe", subscriber.email, "",
        f"Confirm: stop sending {nl.title} to {subscriber.email}?",
        {"address": subscriber.email, "unsubscribe_url": link}, request, incoming,
    )  # fmt: skip
    return "none: not proven; asked the subscriber to confirm the unsubscribe"


# --------------------------------------------------------------------------- the actions


def _origin(request: InboxMessage | None, otherwise: str) -> str:
    """What an event names as the cause: the message, else who acted."""
    return f"message {request.message_id}" if request and request.message_id else otherwise


def start_subscription(
    session: Session,
    ctx: InboxContext,
    address: str,
    name: str,
    request: InboxMessage | None,
    incoming: Incoming | None,
) -> str:
    """Double opt-in: ``pending`` plus a confirmation, unless already active."""
    subscriber = find_subscriber(session, address)
    origin = _origin(request, "staff")
    if subscriber is not None and subscriber.status == "active":
        return "none: already subscribed"
    if subscriber is not None and subscriber.status in ("complained", "bounced") and request:
        # someone who reported us as spam, or whose mail bounced, gets no mail on a request
        # anyone could have written: staff decide
        request.state = InboxState.REVIEW
        return f"held for review: the address is {subscriber.status}; no confirmation sent"
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            email_key=address_key(address),
            name=display_name(name),
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
    refused = reply_refused(session, ctx.config, address, "confirm", ctx.now)
    if refused:
        return f"{subscriber.status}: no confirmation sent ({refused})"
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
        "",  # never a display name someone else may have written
        f"Confirm your subscription [token: {token}]",
        {"confirm_url": link, "token": token, "days": CONFIRM_DAYS, "address": address},
        request,
        incoming,
    )
    return f"{subscriber.status}: confirmation sent to {address}"


def confirm_token(
    session: Session,
    ctx: InboxContext,
    token: str,
    request: InboxMessage | None = None,
    incoming: Incoming | None = None,
    *,
    actor: str = ACTOR,
) -> str:
    """Activate the subscription a confirmation token names; says what happened. Only a
    token we issued and that is still valid activates anybody. A reply by email with an
    unknown, expired or malformed token gets one answer saying how to subscribe again."""
    confirmation = None
    if TOKEN_SHAPE.fullmatch(token or ""):
        confirmation = session.scalars(
            select(Confirmation).where(Confirmation.token_hash == token_hash(token))
        ).first()
    subscriber = session.get(Subscriber, confirmation.subscriber_id) if confirmation else None
    if confirmation is not None and subscriber is not None:
        if confirmation.confirmed_at is not None or subscriber.status == "active":
            return "none: already confirmed"
        if incoming is not None and mailbox_key(incoming.sender) != mailbox_key(subscriber.email):
            # a gateway, a helpdesk, a link scanner or a person the mail was forwarded to
            # echoed the token: only the address itself (or the web link) confirms
            return f"none: the token came back from {clip(incoming.sender, 80)}, not the address"
        if confirmation.expires_at > ctx.now:
            origin = _origin(request, actor)
            confirmation.confirmed_at = ctx.now
            set_status(session, subscriber, "active", actor=actor, detail=f"confirmed ({origin})")
            return "subscribed: confirmed"
        why = "none: expired token"
    elif TOKEN_SHAPE.fullmatch(token or ""):
        why = "none: unknown token"
    else:
        why = "none: malformed token"
    if incoming is None or not incoming.sender:
        return why
    try:
        address = ctx.normalized(incoming.sender)
    except DigestMailerError:
        return f"{why}; no reply (the sender's address is not valid)"
    refused = reply_refused(session, ctx.config, address, "unknown_token", ctx.now)
    if refused:
        return f"{why}; no reply ({refused})"
    title = ctx.config.newsletter.title
    queue_reply(
        session, ctx, "unknown_token", address, "", f"{title}: how to subscribe",
        {"days": CONFIRM_DAYS, "address": address}, request, incoming,
    )  # fmt: skip
    return f"{why}; told how to subscribe again"


def unsubscribe(
    session: Session,
    ctx: InboxContext,
    address: str,
    request: InboxMessage | None,
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
    refused = reply_refused(session, ctx.config, address, kind, ctx.now)
    if refused:
        return f"{action}; no acknowledgement ({refused})"
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


# --------------------------------------------------------------------------- the mailbox run


def process_inbox(
    store: Store,
    config: Config,
    source: MessageSource,
    *,
    dry_run: bool = False,
    make_transport: Callable[[], Transport] | None = None,
    now: datetime | None = None,
) -> tuple[RunResult[InboxResult], list[ReplyResult]]:
    """Read every message from ``source``, record and act on each (see
    :mod:`digest_mailer.inbox.run`), then send the replies. ``dry_run`` decides and
    reports, changes nothing and sends nothing."""
    ctx = InboxContext(config, now=now, dry_run=dry_run)
    steps: Steps[Decided, InboxResult] = Steps(
        decide=lambda raw: decide_message(raw, ctx.policy),
        act=lambda session, decided: handle_decided(session, ctx, decided),
        hold=lambda session, uid, raw, decided, error: hold_message(
            session, ctx, uid, raw, decided, error
        ),
    )
    run = run_mailbox(store, source, steps, dry_run=dry_run)
    if dry_run or make_transport is None:
        return run, []
    return run, send_replies(store, config, make_transport(), now=now)


# --------------------------------------------------------------------------- staff review


def review_queue(session: Session) -> Sequence[InboxMessage]:
    return session.scalars(
        select(InboxMessage)
        .where(InboxMessage.state == InboxState.REVIEW)
        .order_by(InboxMessage.id)
    ).all()


def list_messages(
    session: Session, *, label: str | None = None, limit: int = 100
) -> Sequence[InboxMessage]:
    query = select(InboxMessage).order_by(InboxMessage.id.desc()).limit(limit)
    if label:
        query = query.where(InboxMessage.label == label)
    return session.scalars(query).all()


RESOLUTIONS = ("subscribe", "unsubscribe", "ignore")


def resolve_message(
    session: Session,
    ctx: InboxContext,
    request_id: int,
    decision: str,
    address: str | None = None,
) -> InboxResult:
    """Staff settle a request held for review: subscribe (double opt-in, a confirmation
    is sent), unsubscribe (at once, acknowledged) or ignore."""
    if decision not in RESOLUTIONS:
        raise InputError(f"resolve with one of {', '.join(RESOLUTIONS)}, not {decision!r}")
    request = session.get(InboxMessage, request_id)
    if request is None:
        raise NotFoundError(
            f"no request with id {request_id} (see `digest-mailer requests review`)"
        )
    if request.state != InboxState.REVIEW:
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
    request.state, request.resolution = InboxState.RESOLVED, decision
    request.resolved_at = ctx.now
    request.address = target if decision != "ignore" else None
    request.action = f"resolved by staff: {action}"
    session.flush()
    return InboxResult(
        request.message_id,
        request.from_address,
        request.label,
        request.address,
        request.action,
        request.reason,
    )


def _incoming_of(request: InboxMessage) -> Incoming | None:
    """The original message again (kept for review), so the reply can refer to it."""
    if not request.raw:
        return None
    try:
        return parse(request.raw)
    except Unreadable:
        return None


def message_dict(request: InboxMessage) -> dict[str, Any]:
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


def handle_message(session: Session, ctx: InboxContext, raw: bytes) -> InboxResult:
    """Decide and act on one message in the caller's transaction (no savepoint: an
    error propagates). The mailbox run (:func:`process_inbox`) is what holds errors."""
    results, _ = handle_decided(session, ctx, decide_message(raw, ctx.policy))
    return results[0]
