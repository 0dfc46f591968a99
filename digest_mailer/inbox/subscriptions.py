"""What a request does to a subscription, each with its reply: double opt-in
(:func:`start_subscription`), confirmation (:func:`confirm_token`), unsubscribe
(:func:`unsubscribe`), and an unsubscribe nothing proves the subscriber sent
(:func:`ask_to_confirm_unsubscribe`).

- Subscribing: the address becomes ``pending`` (a new address) and gets a confirmation
  whose subject carries a token; an active address gets no second confirmation; an
  address that left keeps its status until it confirms.
- Confirming: a token we issued, found in the store, makes its subscriber ``active``
  (:mod:`digest_mailer.inbox.confirmations`) and queues their welcome mail, once ever
  (:mod:`digest_mailer.welcome`). An unknown, expired or malformed token activates nobody
  and gets one reply saying how to subscribe again.
- Unsubscribing: the address becomes ``unsubscribed`` at once, with an event naming the
  message, and gets one short acknowledgement.

Used by the mailbox run (:mod:`digest_mailer.inbox.actions`) and by staff settling a
request (:mod:`digest_mailer.inbox.review`). Replies are queued in the caller's
transaction (:func:`~digest_mailer.inbox.outbox.queue_reply`), within their caps.
"""

import secrets
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session

if TYPE_CHECKING:  # the web's signup form calls start_subscription: no mail reading here
    from digest_mailer.inbox.context import InboxContext

from digest_mailer.addresses import address_key, display_name
from digest_mailer.errors import DigestMailerError
from digest_mailer.inbox.classify import Incoming
from digest_mailer.inbox.confirmations import CONFIRM_DAYS, redeem, token_hash
from digest_mailer.inbox.replies import queue_reply, reply_refused
from digest_mailer.kinds import InboxState, ReplyKind
from digest_mailer.models import Confirmation, InboxMessage, Subscriber
from digest_mailer.subscribers import find_subscriber, record_event, set_status
from digest_mailer.tokens import make_token, signing_secret
from digest_mailer.welcome import welcome_confirmed

ACTOR = "email-request"


def _origin(request: InboxMessage | None, otherwise: str) -> str:
    """What an event names as the cause: the message, else who acted."""
    return f"message {request.message_id}" if request and request.message_id else otherwise


def start_subscription(
    session: Session,
    ctx: "InboxContext",
    address: str,
    name: str,
    request: InboxMessage | None,
    incoming: Incoming | None,
    *,
    actor: str = ACTOR,
    origin: str = "",
) -> str:
    """Double opt-in: ``pending`` plus a confirmation, unless already active.

    ``actor`` is the new subscriber's source and the events' actor; ``origin`` what the
    events name as the cause (default: the request's message, else staff). The signup
    form (:mod:`digest_mailer.web.signup`) calls this with ``actor="web"`` and no request.
    ``ctx`` needs only ``config``, ``env``, ``now`` and ``dry_run``.
    """
    subscriber = find_subscriber(session, address)
    origin = origin or _origin(request, "staff")
    if subscriber is not None and subscriber.status == "active":
        return "none: already subscribed"
    if subscriber is not None and subscriber.status in ("complained", "bounced"):
        # someone who reported us as spam, or whose mail bounced, gets no mail on a request
        # anyone could have written: staff decide (a request by email waits in review; a
        # form post, which has no place there, is noted in the history)
        if request is not None:
            request.state = InboxState.REVIEW
            return f"held for review: the address is {subscriber.status}; no confirmation sent"
        if actor != ACTOR:  # the signup form
            record_event(
                session,
                subscriber,
                "request",
                actor,
                f"asked to subscribe ({origin}); no confirmation sent: the address is "
                f"{subscriber.status} (staff decide)",
            )
            return f"none: {subscriber.status}; no confirmation sent"
    if subscriber is None:
        subscriber = Subscriber(
            email=address,
            email_key=address_key(address),
            name=display_name(name),
            status="pending",
            source=actor,
            created_at=ctx.now,
            updated_at=ctx.now,
        )
        session.add(subscriber)
        session.flush()
        record_event(
            session,
            subscriber,
            "status",
            actor,
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
            actor,
            f"asked to subscribe again ({origin}); active once confirmed",
        )
    refused = reply_refused(session, ctx.config, address, ReplyKind.CONFIRM, ctx.now)
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
        ReplyKind.CONFIRM,
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
    ctx: "InboxContext",
    token: str,
    request: InboxMessage | None = None,
    incoming: Incoming | None = None,
    *,
    actor: str = ACTOR,
) -> str:
    """Activate the subscription a confirmation token names; says what happened. Only a
    token we issued and that is still valid activates anybody
    (:func:`~digest_mailer.inbox.confirmations.redeem`), and the subscriber it activates
    gets the welcome mail, as a reply to ``incoming``. A reply by email with an unknown,
    expired or malformed token gets one answer saying how to subscribe again."""
    sender = incoming.sender if incoming is not None else None
    origin = _origin(request, actor)
    redeemed = redeem(session, token, ctx.now, actor=actor, origin=origin, sender=sender)
    why = redeemed.outcome
    if redeemed.activated is not None:
        welcome_confirmed(
            session, ctx.config, redeemed.activated, actor=actor, origin=origin, now=ctx.now,
            env=ctx.env, incoming=incoming, dry_run=ctx.dry_run,
        )  # fmt: skip
    if not redeemed.failed or incoming is None or not incoming.sender:
        return why
    try:
        address = ctx.normalized(incoming.sender)
    except DigestMailerError:
        return f"{why}; no reply (the sender's address is not valid)"
    refused = reply_refused(session, ctx.config, address, ReplyKind.UNKNOWN_TOKEN, ctx.now)
    if refused:
        return f"{why}; no reply ({refused})"
    title = ctx.config.newsletter.title
    queue_reply(
        session, ctx, ReplyKind.UNKNOWN_TOKEN, address, "", f"{title}: how to subscribe",
        {"days": CONFIRM_DAYS, "address": address}, request, incoming,
    )  # fmt: skip
    return f"{why}; told how to subscribe again"


def unsubscribe(
    session: Session,
    ctx: "InboxContext",
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
        action, kind = "none: not subscribed", ReplyKind.NOT_SUBSCRIBED
        subject = f"{title}: not subscribed"
    else:
        kind, subject = ReplyKind.UNSUBSCRIBED, f"You are unsubscribed from {title}"
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


def ask_to_confirm_unsubscribe(
    session: Session,
    ctx: "InboxContext",
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
    refused = reply_refused(
        session, ctx.config, subscriber.email, ReplyKind.CONFIRM_UNSUBSCRIBE, ctx.now
    )
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
        session, ctx, ReplyKind.CONFIRM_UNSUBSCRIBE, subscriber.email, "",
        f"Confirm: stop sending {nl.title} to {subscriber.email}?",
        {"address": subscriber.email, "unsubscribe_url": link}, request, incoming,
    )  # fmt: skip
    return "none: not proven; asked the subscriber to confirm the unsubscribe"
