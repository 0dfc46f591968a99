"""Transports move one finished message to one recipient: SMTP, a folder of .eml files, or
an in-memory capture. They know nothing about issues or subscribers, and import nothing
from the store.

- :mod:`~digest_mailer.transport.base`: the :class:`Outcome` of a send and its kinds, the
  commit point, the :class:`Transport` protocol, the envelope in its wire form,
  :func:`run_coroutine`;
- :mod:`~digest_mailer.transport.smtp`: the SMTP client (:class:`SMTPTransport`);
- :mod:`~digest_mailer.transport.files`: :class:`FileTransport` and
  :class:`CaptureTransport`;
- :mod:`~digest_mailer.transport.retry`: reconnecting while the connection is the problem.

Every name is importable from here, as it was before the package was split.
"""

from digest_mailer.errors import TransportError
from digest_mailer.transport.base import (
    NEEDS_SMTPUTF8,
    CommitPoint,
    Envelope,
    Outcome,
    Transport,
    dot_stuffed,
    run_coroutine,
    wire_envelope,
)
from digest_mailer.transport.files import (
    MAX_NAME,
    Captured,
    CaptureTransport,
    FileTransport,
    safe_file_name,
)
from digest_mailer.transport.retry import CONNECT_RETRIES, send_with_reconnects, unsendable
from digest_mailer.transport.smtp import (
    MAX_LINE,
    Reply,
    SMTPSettings,
    SMTPTransport,
    refuse_clear_text_login,
)

__all__ = [
    "CONNECT_RETRIES",
    "MAX_LINE",
    "MAX_NAME",
    "NEEDS_SMTPUTF8",
    "CaptureTransport",
    "Captured",
    "CommitPoint",
    "Envelope",
    "FileTransport",
    "Outcome",
    "Reply",
    "SMTPSettings",
    "SMTPTransport",
    "Transport",
    "TransportError",
    "dot_stuffed",
    "refuse_clear_text_login",
    "run_coroutine",
    "safe_file_name",
    "send_with_reconnects",
    "unsendable",
    "wire_envelope",
]
