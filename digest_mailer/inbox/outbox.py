"""The outbox of automatic replies: confirmations, acknowledgements, "unknown code".

A reply is queued (:func:`queue_reply`) in the same transaction as the decision that
needs it and sent (:func:`send_replies`) after that commits: each is committed
``sending`` before the end of its DATA and with its outcome after, like the send log, so a
crash neither loses a reply nor sends one twice. Replies carry ``Auto-Submitted:
auto-replied`` and ``In-Reply-To``.

Caps (:func:`reply_refused`): one reply an hour per mailbox (``+tag`` variants count as
one), and replies to addresses nobody proved (confirmations, "not subscribed", "confirm
your unsubscribe", "unknown code") at most ``[inbox] confirmations_per_hour_per_domain``
an hour per recipient domain and ``confirmations_per_hour`` in all, so nobody can use the
request address to flood a mailbox or a domain.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import format_datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from digest_mailer.addresses import address_key, domain_key, mailbox_key, wire_address
from digest_mailer.composer import one_line, render_template
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.classify import Incoming, bare_subject
from digest_mailer.message import domain_of, format_recipient, make_message_id
from digest_mailer.models import InboxMessage, Reply, utcnow
from digest_mailer.send.envelope import envelope_sender
from digest_mailer.signing import DkimSigner
from digest_mailer.transport import Outcome, Transport, run_coroutine
from digest_mailer.transport.retry import send_with_reconnects

REPLY_INTERVAL = timedelta(hours=1)
MAX_REPLY_ATTEMPTS = 5


def reply_refused(session: Session, config: Config, address: str, kind: str, now: datetime) -> str:
    """Why no reply of ``kind`` may go to ``address`` now ('' when one may). One query over
    the last hour's replies (``created_at`` is indexed)."""
    domain = domain_key(address)
    unproven = Reply.kind != "unsubscribed"  # anyone can forge the sender of these
    with session.no_autoflush:  # replies are flushed as they are queued
        to_mailbox, to_domain, in_all = session.execute(
            select(
                func.count(Reply.id).filter(Reply.mailbox_key == mailbox_key(address)),
                func.count(Reply.id).filter(unproven, Reply.domain == domain),
                func.count(Reply.id).filter(unproven),
            ).where(Reply.created_at > now - REPLY_INTERVAL)
        ).one()
    if to_mailbox:
        return "this mailbox had a reply within the hour"
    if kind == "unsubscribed":  # the owner proved the address: always acknowledged
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
        created_at=ctx.now,
    )
    session.add(reply)
    session.flush()
    return reply


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
    # a non-ASCII local part is written raw (RFC 6532), sent with SMTPUTF8
    return msg.as_bytes(policy=SMTPUTF8 if wire_address(address).utf8 else SMTP)


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
