"""Confirmation tokens as they appear in a message: ``[token: …]`` in a subject (the
confirmation we send carries it there), ``/c/…`` in a link, and the shape of ours.

Pure: the classifier finds tokens with it (:func:`find_tokens`), the store
checks a token's shape with it before looking it up
(:mod:`digest_mailer.inbox.confirmations`).
"""

import re

from digest_mailer.inbox.reading import MAX_BODY, MAX_LINE

# our tokens: [token: 32 hex] in the subject, /c/32-hex in the link; anything token-like
# of another length is a confirmation attempt that can only fail
CONFIRM_TOKEN = re.compile(r"\[token:[ \t]{0,5}([0-9a-z]{1,64})[ \t]{0,5}\]", re.I)
CONFIRM_LINK = re.compile(r"(?:/|%2f)c(?:/|%2f)([0-9a-z]{1,64})(?![0-9a-z])", re.I)
TOKEN_SHAPE = re.compile(r"[0-9a-f]{32}")


def find_tokens(subject: str, body: str) -> list[str]:
    """The tokens in ``subject`` and ``body``, each once, in the order found."""
    found = [m.group(1).lower() for m in CONFIRM_TOKEN.finditer(subject[:MAX_LINE])]
    text = body[:MAX_BODY]
    found += [m.group(1).lower() for m in CONFIRM_TOKEN.finditer(text)]
    found += [m.group(1).lower() for m in CONFIRM_LINK.finditer(text)]
    return list(dict.fromkeys(found))
