"""Acting on the messages sent to the request address: record every message, act on
what it asks, hold what cannot be read or acted on.

Each message is recorded once (:class:`~digest_mailer.models.InboxMessage`), by its
Message-ID (or a hash of its bytes), so processing the same mailbox again changes nothing
and sends nothing twice. What it asks for is decided by :mod:`digest_mailer.inbox.classify`
before any transaction opens; here, inside one savepoint per message
(:mod:`digest_mailer.inbox.run`):

- ``subscribe``, ``confirm``, ``unsubscribe``: double opt-in, confirmation and
  unsubscribe, each with its reply (:mod:`digest_mailer.inbox.subscriptions`). An
  unsubscribe changes a subscription at once only when something proves the subscriber
  sent it (:func:`_unsubscribe_proof`); otherwise the subscriber is asked to confirm.
- ``bounce``: handed to :mod:`digest_mailer.bounces.process`, which changes a subscriber
  only on proof.
- ``ignore`` changes nothing; ``review`` waits for staff
  (:func:`~digest_mailer.inbox.review.resolve_message`).

A message that could not be read or acted on is held for review with the error named
(:func:`hold_message`); the run goes on (:func:`process_inbox`), and the replies are
sent after it (:mod:`digest_mailer.inbox.outbox`).

This module is the public entry of the request actions: the names of
:mod:`~digest_mailer.inbox.context`, :mod:`~digest_mailer.inbox.confirmations`,
:mod:`~digest_mailer.inbox.subscriptions` and :mod:`~digest_mailer.inbox.review` are
importable from here too.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.addresses import MAX_ADDRESS, address_key, clip
from digest_mailer.bounces.process import handle_report
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.errors import DigestMailerError, InputError, NotFoundError
from digest_mailer.inbox.classify import (
    Incoming,
    Policy,
    Unreadable,
    Verdict,
    decide,
    message_key,
    parse,
    readable_text,
)
from digest_mailer.inbox.confirmations import CONFIRM_DAYS, token_hash
from digest_mailer.inbox.context import InboxContext, InboxResult
from digest_mailer.inbox.held import KEEP_RAW_BYTES, record_held
from digest_mailer.inbox.outbox import ReplyResult, send_replies
from digest_mailer.inbox.review import (
    RESOLUTIONS,
    list_messages,
    message_dict,
    resolve_message,
    review_queue,
)
from digest_mailer.inbox.run import HeldMessage, RunResult, Steps, run_mailbox
from digest_mailer.inbox.sources import MessageSource
from digest_mailer.inbox.subscriptions import (
    ACTOR,
    ask_to_confirm_unsubscribe,
    confirm_token,
    start_subscription,
    unsubscribe,
)
from digest_mailer.kinds import InboxState, Label
from digest_mailer.models import Delivery, InboxMessage, Reply, Subscriber
from digest_mailer.subscribers import find_subscriber
from digest_mailer.tokens import read_token, signing_secret
from digest_mailer.transport import Transport

__all__ = [  # with the parts' names, importable from here as before the split
    "ACTOR", "CONFIRM_DAYS", "EXCERPT_CHARS", "MAX_LINK_SEARCH", "PASSIVE_ACTIONS",
    "RESOLUTIONS", "UNSUBSCRIBE_LINK", "Decided", "InboxContext", "InboxResult",
    "InputError", "NotFoundError", "ask_to_confirm_unsubscribe", "confirm_token",
    "decide_message", "handle_decided", "handle_message", "hold_message", "list_messages",
    "message_dict", "process_inbox", "resolve_message", "review_queue", "send_replies",
    "start_subscription", "token_hash", "unsubscribe",
]  # fmt: skip

EXCERPT_CHARS = 2000

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


def handle_message(session: Session, ctx: InboxContext, raw: bytes) -> InboxResult:
    """Decide and act on one message in the caller's transaction (no savepoint: an
    error propagates). The mailbox run (:func:`process_inbox`) is what holds errors."""
    results, _ = handle_decided(session, ctx, decide_message(raw, ctx.policy))
    return results[0]
