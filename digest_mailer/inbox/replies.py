"""Queueing automatic replies in the outbox, and their caps; sending them is
:mod:`digest_mailer.inbox.outbox`.

A reply is queued (:func:`queue_reply`, or :func:`add_reply` for a message built
elsewhere, such as the welcome mail of :mod:`digest_mailer.welcome`) in the same
transaction as the decision that needs it, and sent after that commits. Nothing here
sends or imports the send engine, so the web pages can queue mail too.

Caps (:func:`reply_refused`): one reply an hour per mailbox (``+tag`` variants count as
one), and replies to addresses nobody proved (confirmations, "not subscribed", "confirm
your unsubscribe", "unknown code") at most ``[inbox] confirmations_per_hour_per_domain``
an hour per recipient domain and ``confirmations_per_hour`` in all, so nobody can use the
request address to flood a mailbox or a domain. The welcome mail goes once per subscriber
ever (``subscribers.welcomed_at``): it is not counted against these caps.
"""

from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest_mailer.addresses import address_key, domain_key, mailbox_key, wire_address
from digest_mailer.composer import one_line, render_template
from digest_mailer.config import Config
from digest_mailer.inbox.classify import Incoming, bare_subject
from digest_mailer.kinds import ReplyKind
from digest_mailer.message import domain_of, format_recipient, make_message_id
from digest_mailer.models import InboxMessage, Reply

REPLY_INTERVAL = timedelta(hours=1)


def reply_refused(session: Session, config: Config, address: str, kind: str, now: datetime) -> str:
    """Why no reply of ``kind`` may go to ``address`` now ('' when one may). One query over
    the last hour's replies (``created_at`` is indexed)."""
    domain = domain_key(address)
    unproven = Reply.kind != ReplyKind.UNSUBSCRIBED  # anyone can forge the sender of these
    with session.no_autoflush:  # replies are flushed as they are queued
        to_mailbox, to_domain, in_all = session.execute(
            select(
                func.count(Reply.id).filter(Reply.mailbox_key == mailbox_key(address)),
                func.count(Reply.id).filter(unproven, Reply.domain == domain),
                func.count(Reply.id).filter(unproven),
            ).where(
                Reply.created_at > now - REPLY_INTERVAL,
                Reply.kind != ReplyKind.WELCOME,  # once per subscriber ever: capped apart
            )
        ).one()
    if to_mailbox:
        return "this mailbox had a reply within the hour"
    if kind == ReplyKind.UNSUBSCRIBED:  # the owner proved the address: always acknowledged
        return ""
    box = config.inbox
    if to_domain >= box.confirmations_per_hour_per_domain:
        return (
            f"{box.confirmations_per_hour_per_domain} confirmations went to {domain} in the "
            "last hour ([inbox] confirmations_per_hour_per_domain)"
        )
    if in_all >= box.confirmations_per_hour:
        return (
            f"{box.confirmations_per_hour} confirmations went out in the last hour "
            "([inbox] confirmations_per_hour)"
        )
    return ""


def add_reply(
    session: Session,
    *,
    kind: str,
    address: str,
    subject: str,
    message_id: str,
    data: bytes | None,
    now: datetime,
    request: InboxMessage | None = None,
) -> Reply:
    """Put a built message (``data``: None for a dry run, which records the reply so the
    caps count it but builds nothing) in the outbox, ``queued``."""
    reply = Reply(
        request_id=request.id if request else None,
        address=address,
        address_key=address_key(address),
        mailbox_key=mailbox_key(address),
        domain=domain_key(address),
        kind=kind,
        subject=subject,
        message_id=message_id,
        data=data,
        state="queued",
        attempts=0,
        created_at=now,
    )
    session.add(reply)
    session.flush()
    return reply


def queue_reply(
    session: Session,
    ctx: Any,
    kind: str,
    address: str,
    name: str,
    subject: str,
    context: dict[str, Any],
    request: InboxMessage | None,
    incoming: Incoming | None,
) -> Reply:
    """Build a reply from ``templates/requests/KIND.{txt,html}.j2`` into the outbox.
    ``ctx`` gives ``config``, ``env`` (the templates), ``now`` and ``dry_run``: a dry run
    records the reply (so the caps count it) without building a message nobody sends."""
    nl = ctx.config.newsletter
    message_id = make_message_id(domain_of(nl.request_address), "reply", kind)
    data = (
        None
        if getattr(ctx, "dry_run", False)
        else _build(ctx, kind, address, name, subject, context, incoming, message_id)
    )
    return add_reply(
        session,
        kind=kind,
        address=address,
        subject=subject,
        message_id=message_id,
        data=data,
        now=ctx.now,
        request=request,
    )


def _build(
    ctx: Any,
    kind: str,
    address: str,
    name: str,
    subject: str,
    context: dict[str, Any],
    incoming: Incoming | None,
    message_id: str,
) -> bytes:
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
    msg["Message-ID"] = message_id
    if incoming is not None and incoming.message_id:
        msg["In-Reply-To"] = incoming.message_id
        msg["References"] = one_line(f"{incoming.references} {incoming.message_id}".strip())
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    return serialize(msg, address)


def serialize(msg: EmailMessage, address: str) -> bytes:
    """The message's bytes, CRLF line ends; a non-ASCII local part of the recipient is
    written raw (RFC 6532), which the transport sends with SMTPUTF8."""
    return msg.as_bytes(policy=SMTPUTF8 if wire_address(address).utf8 else SMTP)
