"""Recording a message held for review because reading or acting on it failed: shared by
the request mailbox (:mod:`digest_mailer.inbox.actions`) and the bounce mailbox
(:mod:`digest_mailer.bounces.process`), so staff find both in ``requests review``."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.addresses import MAX_ADDRESS, clip
from digest_mailer.inbox.classify import Incoming
from digest_mailer.kinds import InboxState, Label
from digest_mailer.models import InboxMessage

KEEP_RAW_BYTES = 1 << 20  # reports and held messages larger than this are kept truncated


def record_held(
    session: Session,
    *,
    key: str,
    raw: bytes,
    incoming: Incoming | None,
    error: str,
    action: str,
    now: datetime,
) -> None:
    """A ``review`` record naming ``error``, with the message's bytes; nothing when a
    record with ``key`` exists already (the message was read before)."""
    if session.scalar(select(InboxMessage.id).where(InboxMessage.message_key == key)):
        return
    session.add(
        InboxMessage(
            message_key=key,
            message_id=incoming.message_id if incoming else None,
            from_address=clip(incoming.sender if incoming else "", MAX_ADDRESS),
            subject=clip(incoming.subject if incoming else "", 1000),
            label=Label.REVIEW,
            action=action,
            reason=error,
            excerpt="",
            state=InboxState.REVIEW,
            raw=raw[:KEEP_RAW_BYTES],
            received_at=incoming.date if incoming else None,
            created_at=now,
        )
    )
