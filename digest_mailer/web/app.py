"""The routes of the one-click unsubscribe and confirmation pages (`digest-mailer serve`).

A small Starlette application on the same store as the rest of the tool:

- ``GET /u/{token}``: names the newsletter and the (masked) address, one "Unsubscribe"
  button. A GET never changes anything: mail scanners and link previewers fetch links.
- ``POST /u/{token}``: unsubscribes (source ``web``) and offers "Resubscribe" for a
  mistaken click: an undo that works for 30 minutes, through a signed undo token bound to
  that very unsubscribe (:mod:`digest_mailer.web.undo`). The RFC 8058 one-click POST
  (body ``List-Unsubscribe=One-Click``) unsubscribes and answers 200 with no redirect,
  whatever its Origin or cookies. A link from an issue also carries ``?i=ISSUE.SIG``
  (:func:`~digest_mailer.tokens.issue_mark`): when its signature holds for that reader,
  the unsubscribe's event names the issue (``Event.issue_id``, for the reports); when it
  is missing, forged or altered, the unsubscribe is the same and names no issue. The page's
  form posts to the same address, query included.
- ``GET /c/{token}`` shows a confirm button; ``POST /c/{token}`` activates a pending
  subscription (double opt-in, :mod:`digest_mailer.inbox.confirmations`) and queues the
  reader's welcome mail in the outbox (:mod:`digest_mailer.welcome`); an expired
  confirmation says how to subscribe again.
- ``GET /healthz``: 200 when the database answers and holds an initialised store.

A forged, altered, expired or unknown unsubscribe token, like an unknown confirmation,
gets the same plain 404 page, before any byte of the request body is read. The token in
the URL is the only authority: no cookies, no JavaScript, no third-party assets.

The application sits behind :class:`~digest_mailer.web.guard.Guard` (:func:`create_app`);
its pages are rendered by :mod:`digest_mailer.web.pages`.
"""

import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.confirmations import redeem, token_hash
from digest_mailer.models import Confirmation, Event, Subscriber, utcnow
from digest_mailer.subscribers import set_status
from digest_mailer.tokens import read_issue_mark, read_token, token_id
from digest_mailer.web.archive import ArchiveRoutes
from digest_mailer.web.clicks import click_routes
from digest_mailer.web.guard import BODY_TIMEOUT, HEADERS, Guard
from digest_mailer.web.pages import Pages, mask
from digest_mailer.web.signup import signup_routes
from digest_mailer.web.undo import minute_of, read_undo_token, undo_token
from digest_mailer.welcome import welcome_confirmed

MAX_TOKEN = 128  # characters of an unsubscribe token; a longer one is a 404 unread
CONFIRM_TOKEN = re.compile(r"^[0-9a-f]{32}$")

# the resubscribe button: an undo of one unsubscribe made on the page, for a while
UNDO_WINDOW = timedelta(minutes=30)
PAGE_UNSUBSCRIBE = "unsubscribe page"  # the detail of the event the page records
ONE_CLICK_UNSUBSCRIBE = "one-click unsubscribe (RFC 8058)"
ISSUE_PARAM = "i"  # the link's signed issue: ?i=ISSUE.SIG
RESUBSCRIBED = "resubscribed from the unsubscribe page"


class WebApp:
    """The routes, on the store: a token is checked before anything else is read."""

    def __init__(
        self,
        store: Store,
        config: Config,
        secret: bytes,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.config = config
        self.secret = secret
        self.clock = clock
        self.pages = Pages(config)

    def _subscriber_id(self, token: str, session: Session | None = None) -> int | None:
        """The one place a token becomes a subscriber id (None: 404). ``session`` is the
        caller's open session, when it has one, for checks that look the subscriber up."""
        if len(token) > MAX_TOKEN:
            return None
        number = token_id(token)  # canonical form only; no database for a malformed one
        if number is None:
            return None

        def verify(db: Session) -> int | None:
            # the link is bound to the person's random value: a purged person's link, or
            # one for an id that never existed, is the same 404 as a forged one
            salt = db.scalar(select(Subscriber.link_salt).where(Subscriber.id == number))
            return None if salt is None else read_token(self.secret, "unsubscribe", token, salt)

        if session is not None:
            return verify(session)
        with self.store.Session() as own:
            return verify(own)

    # -- routes
    def unsubscribe_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        with self.store.Session() as session:
            subscriber_id = self._subscriber_id(token, session)
            if subscriber_id is None:
                return self.pages.not_found()
            person = session.get(Subscriber, subscriber_id)
            if person is None:
                return self.pages.not_found()
            return self.pages.page(
                "unsubscribe",
                address=mask(person.email),
                done=person.status != "active",
                status=person.status,
            )

    async def unsubscribe_post(self, request: Request) -> Response:
        token = request.path_params["token"]
        # the token first: a forged link gets its 404 before a byte of its body is read
        if await run_in_threadpool(self._subscriber_id, token) is None:
            return self.pages.not_found()
        body = (await request.body())[:4096].decode("latin-1")  # Guard: at most 16 KB
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        one_click = form.get("List-Unsubscribe") == "One-Click"
        action = form.get("action", "unsubscribe")
        undo = form.get("undo", "")
        marks = request.query_params.getlist(ISSUE_PARAM)
        mark = marks[0] if len(marks) == 1 else ""  # two or more: none is believed
        return await run_in_threadpool(self._unsubscribe, token, one_click, action, undo, mark)

    def _unsubscribe(
        self, token: str, one_click: bool, action: str, undo: str, mark: str = ""
    ) -> Response:
        with self.store.Session.begin() as session:
            subscriber_id = self._subscriber_id(token, session)
            if subscriber_id is None:
                return self.pages.not_found()
            # the issue whose link this is, when its signature holds for this reader
            issue_id = read_issue_mark(self.secret, mark, subscriber_id)
            # locked (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises already): a bounce
            # or staff cannot change the status between the checks and the change
            person = session.get(
                Subscriber, subscriber_id, with_for_update=True, populate_existing=True
            )
            if person is None:
                return self.pages.not_found()
            if action == "resubscribe" and not one_click:
                if not self._undo(session, person, undo):
                    return self.pages.page("undo_expired", 410)
                return self.pages.page(
                    "resubscribed", address=mask(person.email), status=person.status
                )
            if person.status in ("active", "pending"):
                how = ONE_CLICK_UNSUBSCRIBE if one_click else PAGE_UNSUBSCRIBE
                set_status(
                    session,
                    person,
                    "unsubscribed",
                    actor="web",
                    detail=how,
                    reason=f"asked on the web ({how})",
                    issue_id=issue_id,
                )
                session.flush()
            address = mask(person.email)
            offer = None if one_click else self._undo_offer(session, person)
        if one_click:
            return PlainTextResponse("Unsubscribed.\n", headers=HEADERS)
        return self.pages.page("unsubscribed", address=address, undo=offer)

    # -- the undo of an unsubscribe
    def _last_status_event(self, session: Session, subscriber_id: int) -> Event | None:
        return session.scalars(
            select(Event)
            .where(Event.subscriber_id == subscriber_id, Event.new_status.is_not(None))
            .order_by(Event.id.desc())
            .limit(1)
        ).first()

    def _undoable(self, person: Subscriber, event: Event | None) -> bool:
        """Whether the subscriber's latest change of status is an unsubscribe on this page
        less than 30 minutes ago, and nothing (staff, a bounce, a complaint) came after."""
        return (
            person.status == "unsubscribed"
            and event is not None
            and event.new_status == "unsubscribed"
            and event.actor == "web"
            and event.detail == PAGE_UNSUBSCRIBE
            and self.clock() - event.created_at <= UNDO_WINDOW
        )

    def _undo_offer(self, session: Session, person: Subscriber) -> str | None:
        """The undo token for the subscriber's page unsubscribe, while it can be undone."""
        event = self._last_status_event(session, person.id)
        if event is None or not self._undoable(person, event):
            return None
        return undo_token(self.secret, person.id, event.id, minute_of(event.created_at))

    def _undo(self, session: Session, person: Subscriber, token: str) -> bool:
        """Resubscribes when ``token`` undoes the subscriber's latest change of status,
        an unsubscribe on this page less than 30 minutes ago; else changes nothing."""
        found = read_undo_token(self.secret, person.id, token)
        if found is None:
            return False
        event_id, minute = found
        if not 0 <= minute_of(self.clock()) - minute <= UNDO_WINDOW.total_seconds() // 60:
            return False
        event = self._last_status_event(session, person.id)
        if event is None or event.id != event_id or minute_of(event.created_at) != minute:
            return False
        if not self._undoable(person, event):
            return False
        set_status(session, person, "active", actor="web", detail=RESUBSCRIBED)
        return True

    # -- confirmations
    def _confirmation(self, session: Any, token: str) -> Confirmation | None:
        if not CONFIRM_TOKEN.fullmatch(token):  # one form: lower-case hex, as sent
            return None
        return session.scalars(
            select(Confirmation).where(Confirmation.token_hash == token_hash(token))
        ).first()

    def confirm_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = utcnow()
        with self.store.Session() as session:
            confirmation = self._confirmation(session, token)
            if confirmation is None:
                return self.pages.not_found()
            person = session.get(Subscriber, confirmation.subscriber_id)
            assert person is not None
            if confirmation.confirmed_at is not None or person.status == "active":
                return self.pages.page("confirmed", address=mask(person.email), already=True)
            if confirmation.expires_at <= now:
                return self.pages.page("expired", 410)
            return self.pages.page("confirm", address=mask(person.email))

    async def confirm_post(self, request: Request) -> Response:
        token = request.path_params["token"]
        # one form, lower-case hex as sent; the body is never read
        if not CONFIRM_TOKEN.fullmatch(token):
            return self.pages.not_found()
        return await run_in_threadpool(self._confirm, token)

    def _confirm(self, token: str) -> Response:
        now = utcnow()
        with self.store.Session.begin() as session:
            confirmation = self._confirmation(session, token)
            if confirmation is None:
                return self.pages.not_found()
            person = session.get(Subscriber, confirmation.subscriber_id)
            assert person is not None
            if confirmation.confirmed_at is None and confirmation.expires_at <= now:
                return self.pages.page("expired", 410)
            redeemed = redeem(session, token, now, actor="web", origin="web")
            if redeemed.activated is not None:  # queued; `requests process` sends it
                welcome_confirmed(
                    session, self.config, redeemed.activated, actor="web", origin="web",
                    now=now, secret=self.secret, env=self.pages.env,
                )  # fmt: skip
            already = redeemed.outcome == "none: already confirmed"
            return self.pages.page("confirmed", address=mask(person.email), already=already)

    def healthz(self, request: Request) -> Response:
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT version_num FROM alembic_version"))
        except SQLAlchemyError:
            return PlainTextResponse("database unreachable\n", 503, headers=HEADERS)
        return PlainTextResponse("ok\n", headers=HEADERS)


class _GuardedStarlette(Starlette):
    """Starlette with :class:`Guard` outside its whole middleware stack (its error pages
    included)."""

    guard_options: dict[str, Any] = {}  # noqa: RUF012 (replaced, never changed)

    def build_middleware_stack(self) -> ASGIApp:
        return Guard(super().build_middleware_stack(), **self.guard_options)


def create_app(
    store: Store,
    config: Config,
    secret: bytes,
    *,
    body_timeout: float = BODY_TIMEOUT,
    clock: Callable[[], datetime] = utcnow,
) -> Starlette:
    """The pages behind :class:`Guard`. ``clock`` (now, in UTC) times undo tokens."""
    web = WebApp(store, config, secret, clock=clock)

    async def not_found(request: Request, exc: Exception) -> Response:
        return web.pages.not_found()

    async def server_error(request: Request, exc: Exception) -> Response:
        return web.pages.page("error", 500)

    routes = [
        Route("/u/{token}", web.unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", web.unsubscribe_post, methods=["POST"]),
        Route("/c/{token}", web.confirm_page, methods=["GET"]),
        Route("/c/{token}", web.confirm_post, methods=["POST"]),
        Route("/healthz", web.healthz, methods=["GET"]),
        Route("/web.css", web.pages.stylesheet, methods=["GET"]),
        *ArchiveRoutes(store, config, web.pages).routes(),
        *signup_routes(web),
        *click_routes(web),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        404: not_found,
        405: not_found,
        500: server_error,
    }
    application = _GuardedStarlette(routes=routes, exception_handlers=handlers)
    application.router.redirect_slashes = False
    application.guard_options = {"body_timeout": body_timeout}
    return application
