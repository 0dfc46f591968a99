"""Confirmation tokens in the store: what one does when it comes back.

A subscription request gets a token in its confirmation
(:func:`~digest_mailer.inbox.subscriptions.start_subscription`); only its SHA-256 is
stored (:func:`token_hash`), and it expires after :data:`CONFIRM_DAYS` days. The token
comes back on the web page (``POST /c/TOKEN``) or in a reply by email, and
:func:`redeem` is the one place it activates a subscription: only a token we issued,
still valid, and (by email) coming back from the address itself.

Sends nothing and needs no mail server: the answer to a failed token by email is
:func:`~digest_mailer.inbox.subscriptions.confirm_token`'s, so the web pages use this
module without the send engine.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.addresses import clip, mailbox_key
from digest_mailer.inbox.confirm_tokens import TOKEN_SHAPE
from digest_mailer.models import Confirmation, Subscriber
from digest_mailer.subscribers import set_status

CONFIRM_DAYS = 7


def token_hash(token: str) -> str:
    return hashlib.sha256(token.strip().lower().encode("ascii", "replace")).hexdigest()


@dataclass(frozen=True)
class Redeemed:
    """What a token did. ``outcome`` says it as the actions report it; ``failed``: the
    token activated nobody because it is expired, unknown or malformed (a sender who
    sent it by email is then told how to subscribe again); ``activated``: the subscriber
    this token made active (None otherwise), whom the caller welcomes
    (:func:`~digest_mailer.welcome.welcome_confirmed`)."""

    outcome: str
    failed: bool = False
    activated: Subscriber | None = field(default=None, compare=False)


def redeem(
    session: Session,
    token: str,
    now: datetime,
    *,
    actor: str,
    origin: str,
    sender: str | None = None,
) -> Redeemed:
    """Activate the subscription a confirmation token names, if the token is ours and
    still valid. ``origin`` is what the event names as the cause (the message, or who
    acted); ``sender`` the address an email carrying the token came from (None: the web
    link), which must be the subscriber's own."""
    confirmation = None
    if TOKEN_SHAPE.fullmatch(token or ""):
        confirmation = session.scalars(
            select(Confirmation).where(Confirmation.token_hash == token_hash(token))
        ).first()
    subscriber = session.get(Subscriber, confirmation.subscriber_id) if confirmation else None
    if confirmation is not None and subscriber is not None:
        if confirmation.confirmed_at is not None or subscriber.status == "active":
            return Redeemed("none: already confirmed")
        if sender is not None and mailbox_key(sender) != mailbox_key(subscriber.email):
            # a gateway, a helpdesk, a link scanner or a person the mail was forwarded to
            # echoed the token: only the address itself (or the web link) confirms
            return Redeemed(f"none: the token came back from {clip(sender, 80)}, not the address")
        if confirmation.expires_at > now:
            confirmation.confirmed_at = now
            set_status(session, subscriber, "active", actor=actor, detail=f"confirmed ({origin})")
            return Redeemed("subscribed: confirmed", activated=subscriber)
        return Redeemed("none: expired token", failed=True)
    if TOKEN_SHAPE.fullmatch(token or ""):
        return Redeemed("none: unknown token", failed=True)
    return Redeemed("none: malformed token", failed=True)
