"""Reconnecting: one message sent through any :class:`~digest_mailer.transport.base.Transport`,
with the connection reopened (exponential backoff) while it is the problem.

Turns the transport's outcomes into the ones a send acts on: ``retry`` that outlasts
:data:`CONNECT_RETRIES` reconnects becomes ``unavailable`` (the send pauses), a
:class:`~digest_mailer.errors.TransportError` becomes ``fatal``, and an address no server
could take is ``failed`` with nothing sent.
"""

import asyncio

from digest_mailer.errors import TransportError, UnencodableAddress
from digest_mailer.kinds import OutcomeKind
from digest_mailer.transport.base import CommitPoint, Outcome, Transport

CONNECT_RETRIES = 3  # reconnects per message before the send pauses


async def send_with_reconnects(
    transport: Transport,
    envelope_from: str,
    address: str,
    data: bytes,
    backoff: float,
    commit: CommitPoint | None = None,
) -> Outcome:
    """Send, reconnecting with exponential backoff while the connection is the problem;
    ``unavailable`` when it stays down; ``fatal`` for what no retry can fix. An address
    that cannot be written for SMTP, or that needs SMTPUTF8 from a server without it, is
    ``failed`` (stage ``rcpt``, no code) with nothing sent; the caller goes on."""
    try:
        outcome = await transport.send(envelope_from, address, data, commit)
        for attempt in range(CONNECT_RETRIES):
            if outcome.kind != OutcomeKind.RETRY:
                return outcome
            await asyncio.sleep(backoff * 2**attempt)
            outcome = await transport.send(envelope_from, address, data, commit)
    except TransportError as exc:
        return Outcome(OutcomeKind.FATAL, None, str(exc))
    except UnencodableAddress as exc:  # a transport that leaves the check to us
        return unsendable(exc)
    if outcome.kind == OutcomeKind.RETRY:
        return Outcome(OutcomeKind.UNAVAILABLE, None, outcome.message)
    return outcome


def unsendable(exc: UnencodableAddress) -> Outcome:
    """The outcome of an address no SMTP server could take: failed, nothing sent. Not a
    bounce (no server refused it), so it does not count against the subscriber."""
    return Outcome(OutcomeKind.FAILED, None, f"not sent: {exc}", "rcpt")
