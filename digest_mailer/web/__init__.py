"""The readers' pages (`digest-mailer serve`): one-click unsubscribe, confirmation, the
signup form and the public archive.

A small Starlette application on the same store as the rest of the tool, in these parts:

- :mod:`~digest_mailer.web.app`: the routes (``/u/{token}``, ``/c/{token}``,
  ``/healthz``) and :func:`create_app`;
- :mod:`~digest_mailer.web.signup`: ``/subscribe``, the form's double opt-in and its
  bot defences;
- :mod:`~digest_mailer.web.archive`: ``/archive/``, ``/archive/ID/`` and the Atom feed
  (pages rendered by :mod:`digest_mailer.archive.site`);
- :mod:`~digest_mailer.web.clicks`: ``/r/{token}``, the counted links of an issue (a 302
  to the link's recorded URL; opt-in, ``[tracking] clicks``);
- :mod:`~digest_mailer.web.pages`: rendering the pages and the stylesheet;
- :mod:`~digest_mailer.web.undo`: the signed tokens of the "Resubscribe" button;
- :mod:`~digest_mailer.web.guard` and :mod:`~digest_mailer.web.server`: the bounds
  against a hostile client, on requests (size, time, how many at once, the security
  headers) and on connections (:func:`server_config`, the uvicorn settings `serve` runs).

The web app uses the store and the templates, never the send engine: importing it loads
no SMTP transport.

This package is the public entry: the names below are importable from here.
"""

from digest_mailer.web.app import (
    CONFIRM_TOKEN,
    MAX_TOKEN,
    ONE_CLICK_UNSUBSCRIBE,
    PAGE_UNSUBSCRIBE,
    RESUBSCRIBED,
    UNDO_WINDOW,
    WebApp,
    create_app,
)
from digest_mailer.web.guard import (
    BODY_TIMEOUT,
    HEADERS,
    MAX_BODY,
    MAX_HEAD,
    MAX_IN_FLIGHT,
    Guard,
)
from digest_mailer.web.pages import Pages, mask
from digest_mailer.web.server import (
    HEADER_TIMEOUT,
    KEEP_ALIVE_TIMEOUT,
    MAX_CONNECTIONS,
    GuardedH11Protocol,
    server_config,
)
from digest_mailer.web.undo import read_undo_token, undo_token

__all__ = [
    "BODY_TIMEOUT", "CONFIRM_TOKEN", "HEADERS", "HEADER_TIMEOUT", "KEEP_ALIVE_TIMEOUT",
    "MAX_BODY", "MAX_CONNECTIONS", "MAX_HEAD", "MAX_IN_FLIGHT", "MAX_TOKEN",
    "ONE_CLICK_UNSUBSCRIBE", "PAGE_UNSUBSCRIBE", "RESUBSCRIBED", "UNDO_WINDOW", "Guard",
    "GuardedH11Protocol", "Pages", "WebApp", "create_app", "mask", "read_undo_token",
    "server_config", "undo_token",
]  # fmt: skip
