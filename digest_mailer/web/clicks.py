"""``GET /r/{token}``: a counted link of an issue ([tracking] clicks), answered with a
302 to the link's URL.

The token names an issue and a link number (:mod:`digest_mailer.clicks.links`), never a
person. The URL is looked up in ``link_clicks`` (recorded when the issue was sent) and
the token's signature is checked against it; only then is there a redirect, and its
Location is always that stored http(s) URL, never anything from the request. A forged,
altered, truncated, overlong or unknown token, a token for another issue's link or for
another URL, gets the same 404 page as every other bad token, with no Location.

- The answer does not wait for the count: it is sent first, and the count (one atomic
  ``UPDATE … SET clicks = clicks + 1``) is written right after it, in the background.
  When that write fails (the database busy beyond its wait, or gone), the reader still
  got their redirect; the failure is logged and that click is not counted.
- When the link's URL cannot be read (the database is down), there is no redirect to
  guess: the error page (500), as for every other page.
- ``HEAD`` answers the same redirect and counts nothing (link checkers).
- Link scanners that fetch links with GET before the reader does (Microsoft Safe Links
  and the like) are counted: with no person behind a count there is nothing to tell
  them apart by. The counts are of requests to the link, not of readers.
"""

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from digest_mailer.clicks.links import PATH, read_link, token_matches, trackable
from digest_mailer.clicks.store import count_click, link_url
from digest_mailer.db import Store
from digest_mailer.errors import DigestMailerError
from digest_mailer.models import utcnow
from digest_mailer.web.guard import HEADERS
from digest_mailer.web.pages import Pages

log = logging.getLogger(__name__)


class ClickRoutes:
    """The redirect on ``store``; ``secret`` checks the tokens (every rotated secret)."""

    def __init__(
        self,
        store: Store,
        secret: bytes,
        pages: Pages,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.secret = secret
        self.pages = pages
        self.clock = clock

    def follow(self, request: Request) -> Response:
        token = request.path_params["token"]
        link = read_link(token)  # the one canonical form, bounded: no database otherwise
        if link is None:
            return self.pages.not_found()
        issue_id, number = link
        with self.store.Session() as session:
            url = link_url(session, issue_id, number)
        if url is None or not trackable(url):
            return self.pages.not_found()
        if not token_matches(self.secret, token, issue_id, number, url):
            return self.pages.not_found()
        answer = Response(status_code=302, headers={**HEADERS, "Location": url})
        if request.method == "GET":  # a HEAD (a link checker) counts nothing
            answer.background = BackgroundTask(self._count, issue_id, number)
        return answer

    def _count(self, issue_id: str, number: int) -> None:
        """After the answer went out: one more click, in a transaction of its own."""
        try:
            with self.store.Session.begin() as session:
                count_click(session, issue_id, number, self.clock())
        except (SQLAlchemyError, DigestMailerError):
            log.exception("click on link %d of issue %s not counted", number, issue_id)

    def routes(self) -> list[Route]:
        return [Route(PATH + "{token}", self.follow, methods=["GET", "HEAD"])]


class _Site(Protocol):
    """What the redirect takes from :class:`~digest_mailer.web.app.WebApp`."""

    store: Store
    secret: bytes
    pages: Pages
    clock: Callable[[], datetime]


def click_routes(web: _Site) -> list[Route]:
    """The counted links' route on ``web``'s store, secret, pages and clock."""
    return ClickRoutes(web.store, web.secret, web.pages, web.clock).routes()
