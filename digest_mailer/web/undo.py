"""Undo tokens: the "Resubscribe" button after an unsubscribe on the web page.

An undo token is ``<event id>.<unix minute>.<signature>`` (hex, hex, base64url), bound
to one unsubscribe (the event that recorded it) of one subscriber. Signed like every
other token (:mod:`digest_mailer.tokens`), with a purpose of its own (``undo``) that
keeps it from passing for anything else. How long it works is the page's to decide
(:data:`~digest_mailer.web.app.UNDO_WINDOW`).
"""

import base64
import hashlib
import hmac
import re
from datetime import datetime

from digest_mailer.tokens import signing_keys

_UNDO_TOKEN = re.compile(
    r"(0|[1-9a-f][0-9a-f]{0,15})\.(0|[1-9a-f][0-9a-f]{0,15})\.([A-Za-z0-9_-]{24})"
)


def minute_of(moment: datetime) -> int:
    """The unix minute of ``moment``: the time an undo token carries."""
    return int(moment.timestamp() // 60)


def _undo_signature(key: bytes, subscriber_id: int, event_id: int, minute: int) -> str:
    message = f"undo\0{subscriber_id}:{event_id}:{minute}".encode()
    mac = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:24]


def undo_token(secret: bytes, subscriber_id: int, event_id: int, minute: int) -> str:
    """``<event id>.<unix minute>.<signature>`` (hex, hex, base64url): undoes the
    unsubscribe recorded as event ``event_id`` at ``minute``, for that subscriber only.
    Signed like every other token (the first of the secrets); a purpose of its own
    (``undo``) keeps it from passing for anything else."""
    key = signing_keys(secret)[0]
    return f"{event_id:x}.{minute:x}.{_undo_signature(key, subscriber_id, event_id, minute)}"


def read_undo_token(secret: bytes, subscriber_id: int, token: str) -> tuple[int, int] | None:
    """(event id, unix minute) of an undo token signed for ``subscriber_id`` with any of
    the secrets, else None. Whether it is still valid is for the caller to decide."""
    match = _UNDO_TOKEN.fullmatch(token or "")
    if match is None:
        return None
    event_id, minute = int(match.group(1), 16), int(match.group(2), 16)
    given = match.group(3).encode()
    valid = False
    for key in signing_keys(secret):  # every key is tried: the time does not tell which
        expected = _undo_signature(key, subscriber_id, event_id, minute).encode()
        valid |= hmac.compare_digest(expected, given)
    return (event_id, minute) if valid else None
