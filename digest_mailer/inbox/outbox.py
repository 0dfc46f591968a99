"""The outbox of automatic replies: confirmations, acknowledgements, "unknown code", and
the welcome mail.

A reply is queued (:func:`~digest_mailer.inbox.replies.queue_reply`, within the caps of
:func:`~digest_mailer.inbox.replies.reply_refused`) in the same transaction as the
decision that needs it and sent (:func:`send_replies`) after that commits: each is
committed ``sending`` before the end of its DATA and with its outcome after, like the send
log, so a crash neither loses a reply nor sends one twice. Replies to requests carry
``Auto-Submitted: auto-replied`` and ``In-Reply-To`` (the welcome mail is built by
:mod:`digest_mailer.welcome`); every message is DKIM-signed here, as it goes out, when
``[dkim]`` is set.

The queue's names (:mod:`digest_mailer.inbox.replies`, which imports no send engine so
the web pages can queue mail) are importable from here too.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.replies import REPLY_INTERVAL, add_reply, queue_reply, reply_refused
from digest_mailer.models import Reply, utcnow
from digest_mailer.send.envelope import envelope_sender
from digest_mailer.signing import DkimSigner
from digest_mailer.transport import Outcome, Transport, run_coroutine
from digest_mailer.transport.retry import send_with_reconnects

__all__ = [  # the queue's names, importable from here as before the split
    "MAX_REPLY_ATTEMPTS", "REPLY_INTERVAL", "ReplyResult", "add_reply", "queue_reply",
    "reply_refused", "send_replies",
]  # fmt: skip

MAX_REPLY_ATTEMPTS = 5


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
