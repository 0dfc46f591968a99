"""Undo tokens: the "Resubscribe" button after an unsubscribe on the web page.

An undo token is ``<event id>.<unix minute>.<signature>`` (hex, hex, base64url), bound
to one unsubscribe (the event that recorded it) of one subscriber. Signed like every
other token (:mod:`digest_mailer.tokens`), with a purpose of its own (``undo``) that
keeps it from passing for anything else. How long it works is the page's to decide
(:data:`~digest_mailer.web.app.UNDO_WINDOW`).
"""

import re
from datetime import datetime

from digest_mailer.tokens import sign, signed_by_any, signing_keys

_UNDO_TOKEN = re.compile(
    r"(0|[1-9a-f][0-9a-f]{0,15})\.(0|[1-9a-f][0-9a-f]{0,15})\.([A-Za-z0-9_-]{24})"
)


def minute_of(moment: datetime) -> int:
    """The unix minute of ``moment``: the time an undo token carries."""
    return int(moment.timestamp() // 60)


def _undo_parts(subscriber_id: int, event_id: int, minute: int) -> tuple[str, str]:
    return ("undo", f"{subscriber_id}:{event_id}:{minute}")


def undo_token(secret: bytes, subscriber_id: int, event_id: int, minute: int) -> str:
    """``<event id>.<unix minute>.<signature>`` (hex, hex, base64url): undoes the
    unsubscribe recorded as event ``event_id`` at ``minute``, for that subscriber only.
    Signed like every other token (the first of the secrets); a purpose of its own
    (``undo``) keeps it from passing for anything else."""
    key = signing_keys(secret)[0]
    return f"{event_id:x}.{minute:x}.{sign(key, *_undo_parts(subscriber_id, event_id, minute))}"


def read_undo_token(secret: bytes, subscriber_id: int, token: str) -> tuple[int, int] | None:
    """(event id, unix minute) of an undo token signed for ``subscriber_id`` with any of
    the secrets, else None. Whether it is still valid is for the caller to decide."""
    match = _UNDO_TOKEN.fullmatch(token or "")
    if match is None:
        return None
    event_id, minute = int(match.group(1), 16), int(match.group(2), 16)
    valid = signed_by_any(secret, match.group(3), *_undo_parts(subscriber_id, event_id, minute))
    return (event_id, minute) if valid else None
