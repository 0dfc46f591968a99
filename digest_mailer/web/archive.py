"""The public archive under ``serve``: ``/archive/``, ``/archive/ID/`` and the Atom feed.

The pages are the ones ``archive export`` writes (:class:`~digest_mailer.archive.site.
ArchiveSite`); only published issues are shown, and an unknown or unpublished id is the
same plain 404 as any other. The feed is at ``/feed.atom`` and ``/archive/feed.atom``;
its links resolve against the archive (``xml:base``). Archive pages may be indexed by
search engines (the other pages say ``noindex``).

Nothing here reads a token or a subscriber: the archive holds nothing personal.
"""

from collections.abc import Callable

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from digest_mailer.archive.paths import archive_slug
from digest_mailer.archive.site import ArchiveSite
from digest_mailer.archive.store import published_body, published_issues
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.web.guard import HEADERS
from digest_mailer.web.pages import Pages

MAX_SLUG = 120  # characters of an archive path segment; a longer one is a 404 unread
# public pages, the same for everyone: shared caches may keep them a few minutes (an
# unpublished issue is gone from them within that time)
PUBLIC = {**HEADERS, "Cache-Control": "public, max-age=300"}


class ArchiveRoutes:
    """Reads the published issues per request: a publish or unpublish shows at once."""

    def __init__(self, store: Store, config: Config, pages: Pages) -> None:
        self.store = store
        self.pages = pages
        public = config.newsletter.public_url
        self.site = ArchiveSite(config, f"{public.rstrip('/')}/archive/" if public else "")
        self.xml_base = self.site.base or "/archive/"

    def _read(self, work: Callable[[Session], Response]) -> Response:
        with self.store.Session() as session:
            return work(session)

    def index(self, request: Request) -> Response:
        return self._read(
            lambda session: HTMLResponse(
                self.site.index_page(published_issues(session, bodies=False)), headers=PUBLIC
            )
        )

    def issue(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        if len(slug) > MAX_SLUG:
            return self.missing()

        def page(session: Session) -> Response:
            issues = published_issues(session, bodies=False)
            for position, issue in enumerate(issues):
                if archive_slug(issue.issue_id) == slug:
                    body = published_body(session, issue.issue_id)
                    if body is None:  # unpublished between the two reads
                        break
                    issue.body_html, issue.body_text = body
                    html = self.site.issue_page(issues, position)
                    return HTMLResponse(html, headers=PUBLIC)
            return self.missing()

        return self._read(page)

    def feed(self, request: Request) -> Response:
        return self._read(
            lambda session: Response(
                self.site.feed(published_issues(session), xml_base=self.xml_base),
                media_type="application/atom+xml",
                headers=PUBLIC,
            )
        )

    def missing(self) -> Response:
        """No published issue here: the same 404 for unknown and unpublished ids."""
        return self.pages.page("archive_missing", 404)

    def to_slash(self, request: Request) -> Response:
        """``/archive`` and ``/archive/ID``: the relative links need the slash."""
        path = request.url.path
        if len(path) > MAX_SLUG + 10:
            return self.missing()
        return RedirectResponse(path + "/", status_code=308, headers=HEADERS)

    def routes(self) -> list[Route]:
        return [
            Route("/archive/", self.index, methods=["GET"]),
            Route("/archive", self.to_slash, methods=["GET"]),
            Route("/feed.atom", self.feed, methods=["GET"]),
            Route("/archive/feed.atom", self.feed, methods=["GET"]),
            Route("/archive/web.css", self.pages.stylesheet, methods=["GET"]),
            Route("/archive/{slug}/", self.issue, methods=["GET"]),
            Route("/archive/{slug}", self.to_slash, methods=["GET"]),
        ]
