"""Staff review of the request mailbox: what waits for them (:func:`review_queue`), what
came in (:func:`list_messages`), and settling a request held for review
(:func:`resolve_message`): subscribe (double opt-in, a confirmation is sent),
unsubscribe (at once, acknowledged) or ignore.
"""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.errors import InputError, NotFoundError
from digest_mailer.inbox.classify import Incoming, Unreadable, parse
from digest_mailer.inbox.context import InboxContext, InboxResult
from digest_mailer.inbox.subscriptions import start_subscription, unsubscribe
from digest_mailer.kinds import InboxState
from digest_mailer.models import InboxMessage


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
