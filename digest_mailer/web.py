"""The one-click unsubscribe and confirmation pages (`digest-mailer serve`).

A small Starlette application on the same store as the rest of the tool:

- ``GET /u/{token}``: names the newsletter and the (masked) address, one "Unsubscribe"
  button. A GET never changes anything: mail scanners and link previewers fetch links.
- ``POST /u/{token}``: unsubscribes (source ``web``) and offers "Resubscribe" for a
  mistaken click: an undo that works for 30 minutes, through a signed undo token bound to
  that very unsubscribe (see :func:`undo_token`). The RFC 8058 one-click POST (body
  ``List-Unsubscribe=One-Click``) unsubscribes and answers 200 with no redirect, whatever
  its Origin or cookies.
- ``GET /c/{token}`` shows a confirm button; ``POST /c/{token}`` activates a pending
  subscription (double opt-in); an expired confirmation says how to subscribe again.
- ``GET /healthz``: 200 when the database answers and holds an initialised store.

A forged, altered, expired or unknown unsubscribe token, like an unknown confirmation,
gets the same plain 404 page, before any byte of the request body is read. The token in
the URL is the only authority: no cookies, no JavaScript, no third-party assets.

Bounds against a hostile client (SECURITY.md lists them with their tests):

- :class:`Guard`, the outermost ASGI layer, sees every request: a body declared larger
  than 16 KB gets 413 at once, unread; a body that turns out larger (chunked) is read no
  further than 16 KB + 1 and gets 413; a body not in 10 s after the application started
  reading it gets 408; a request head over 16 KB gets 431 (h11's 400 when it comes in
  parts); beyond 128 requests at a time, 503. Every response, whoever made it (404, 405,
  413, 500...), carries :data:`HEADERS`, and one that leaves its request body unread
  closes the connection. A trailing slash is dropped here: nothing ever redirects (no
  Location built from a Host header).
- :func:`server_config` is the uvicorn configuration `serve` runs and the tests start:
  a request head must be complete within 10 s of the connection (or of the previous
  response), else the connection is closed (:class:`GuardedH11Protocol`); an idle
  keep-alive connection is closed after 5 s; beyond 512 open connections a new one is
  closed at once.
"""

import asyncio
import base64
import hashlib
import hmac
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import anyio
import h11
import uvicorn
from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest_mailer.composer import default_templates, render_template, template_environment
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.actions import InboxContext, confirm_token, token_hash
from digest_mailer.models import Confirmation, Event, Subscriber, utcnow
from digest_mailer.subscribers import set_status
from digest_mailer.tokens import read_token, signing_keys, token_id

MAX_TOKEN = 128
CONFIRM_TOKEN = re.compile(r"^[0-9a-f]{32}$")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
_RAW_HEADERS = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in HEADERS.items()]

# request bounds (see the module docstring)
MAX_BODY = 16 * 1024  # bytes of a request body: a form holds a few dozen
MAX_HEAD = 16 * 1024  # bytes of a request line and headers (h11's incomplete event size)
HEADER_TIMEOUT = 10.0  # seconds for a request head to arrive
BODY_TIMEOUT = 10.0  # seconds for a request body to arrive once its reading starts
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle keep-alive connection stays open
MAX_CONNECTIONS = 512  # open connections; more are closed at once
MAX_IN_FLIGHT = 128  # requests handled at once; more get 503

# the resubscribe button: an undo of one unsubscribe made on the page, for a while
UNDO_WINDOW = timedelta(minutes=30)
PAGE_UNSUBSCRIBE = "unsubscribe page"  # the detail of the event the page records
ONE_CLICK_UNSUBSCRIBE = "one-click unsubscribe (RFC 8058)"
RESUBSCRIBED = "resubscribed from the unsubscribe page"
_UNDO_TOKEN = re.compile(
    r"(0|[1-9a-f][0-9a-f]{0,15})\.(0|[1-9a-f][0-9a-f]{0,15})\.([A-Za-z0-9_-]{24})"
)


def mask(address: str) -> str:
    """``j***@corp.test``: enough for a reader to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


# --------------------------------------------------------------------------- undo tokens


def _minute(moment: datetime) -> int:
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


# --------------------------------------------------------------------------- the pages


class WebApp:
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
        self.env = template_environment(config)
        self.css = (default_templates() / "web" / "web.css").read_bytes()

    # -- responses
    def page(self, name: str, code: int = 200, **context: Any) -> HTMLResponse:
        nl = self.config.newsletter
        values = {
            "newsletter": nl.title,
            "request_address": nl.request_address,
            "language": nl.language,
            **context,
        }
        body = render_template(self.env, f"web/{name}.html.j2", values)
        return HTMLResponse(body, status_code=code, headers=HEADERS)

    def not_found(self) -> HTMLResponse:
        return self.page("not_found", 404)

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
                return self.not_found()
            person = session.get(Subscriber, subscriber_id)
            if person is None:
                return self.not_found()
            return self.page(
                "unsubscribe",
                address=mask(person.email),
                done=person.status != "active",
                status=person.status,
            )

    async def unsubscribe_post(self, request: Request) -> Response:
        token = request.path_params["token"]
        # the token first: a forged link gets its 404 before a byte of its body is read
        if await run_in_threadpool(self._subscriber_id, token) is None:
            return self.not_found()
        body = (await request.body())[:4096].decode("latin-1")  # Guard: at most 16 KB
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        one_click = form.get("List-Unsubscribe") == "One-Click"
        action = form.get("action", "unsubscribe")
        undo = form.get("undo", "")
        return await run_in_threadpool(self._unsubscribe, token, one_click, action, undo)

    def _unsubscribe(self, token: str, one_click: bool, action: str, undo: str) -> Response:
        with self.store.Session.begin() as session:
            subscriber_id = self._subscriber_id(token, session)
            if subscriber_id is None:
                return self.not_found()
            # locked (PostgreSQL; SQLite's BEGIN IMMEDIATE serialises already): a bounce
            # or staff cannot change the status between the checks and the change
            person = session.get(
                Subscriber, subscriber_id, with_for_update=True, populate_existing=True
            )
            if person is None:
                return self.not_found()
            if action == "resubscribe" and not one_click:
                if not self._undo(session, person, undo):
                    return self.page("undo_expired", 410)
                return self.page("resubscribed", address=mask(person.email), status=person.status)
            if person.status in ("active", "pending"):
                how = ONE_CLICK_UNSUBSCRIBE if one_click else PAGE_UNSUBSCRIBE
                set_status(
                    session,
                    person,
                    "unsubscribed",
                    actor="web",
                    detail=how,
                    reason=f"asked on the web ({how})",
                )
                session.flush()
            address = mask(person.email)
            offer = None if one_click else self._undo_offer(session, person)
        if one_click:
            return PlainTextResponse("Unsubscribed.\n", headers=HEADERS)
        return self.page("unsubscribed", address=address, undo=offer)

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
        return undo_token(self.secret, person.id, event.id, _minute(event.created_at))

    def _undo(self, session: Session, person: Subscriber, token: str) -> bool:
        """Resubscribes when ``token`` undoes the subscriber's latest change of status,
        an unsubscribe on this page less than 30 minutes ago; else changes nothing."""
        found = read_undo_token(self.secret, person.id, token)
        if found is None:
            return False
        event_id, minute = found
        if not 0 <= _minute(self.clock()) - minute <= UNDO_WINDOW.total_seconds() // 60:
            return False
        event = self._last_status_event(session, person.id)
        if event is None or event.id != event_id or _minute(event.created_at) != minute:
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
        ctx = InboxContext(self.config)
        with self.store.Session() as session:
            confirmation = self._confirmation(session, token)
            if confirmation is None:
                return self.not_found()
            person = session.get(Subscriber, confirmation.subscriber_id)
            assert person is not None
            if confirmation.confirmed_at is not None or person.status == "active":
                return self.page("confirmed", address=mask(person.email), already=True)
            if confirmation.expires_at <= ctx.now:
                return self.page("expired", 410)
            return self.page("confirm", address=mask(person.email))

    async def confirm_post(self, request: Request) -> Response:
        token = request.path_params["token"]
        # one form, lower-case hex as sent; the body is never read
        if not CONFIRM_TOKEN.fullmatch(token):
            return self.not_found()
        return await run_in_threadpool(self._confirm, token)

    def _confirm(self, token: str) -> Response:
        ctx = InboxContext(self.config)
        with self.store.Session.begin() as session:
            confirmation = self._confirmation(session, token)
            if confirmation is None:
                return self.not_found()
            person = session.get(Subscriber, confirmation.subscriber_id)
            assert person is not None
            if confirmation.confirmed_at is None and confirmation.expires_at <= ctx.now:
                return self.page("expired", 410)
            outcome = confirm_token(session, ctx, token, actor="web")
            already = outcome == "none: already confirmed"
            return self.page("confirmed", address=mask(person.email), already=already)

    def healthz(self, request: Request) -> Response:
        try:
            with self.store.engine.connect() as conn:
                conn.execute(text("SELECT version_num FROM alembic_version"))
        except SQLAlchemyError:
            return PlainTextResponse("database unreachable\n", 503, headers=HEADERS)
        return PlainTextResponse("ok\n", headers=HEADERS)

    def stylesheet(self, request: Request) -> Response:
        headers = {**HEADERS, "Cache-Control": "public, max-age=3600"}
        return Response(self.css, media_type="text/css", headers=headers)


# --------------------------------------------------------------------------- the ASGI guard


def _secured(headers: Any, close: bool) -> list[tuple[bytes, bytes]]:
    """``headers`` with every security header it lacks (one it sets itself, such as the
    stylesheet's Cache-Control, stays) and, with ``close``, ``Connection: close``."""
    out = list(headers)
    present = {name.lower() for name, _ in out}
    out += [(name, value) for name, value in _RAW_HEADERS if name not in present]
    if close and b"connection" not in present:
        out.append((b"connection", b"close"))
    return out


def _framing(scope: Scope) -> tuple[int | None, bool, bool]:
    """(declared Content-Length, chunked or otherwise streamed, malformed)."""
    length: int | None = None
    streamed = False
    for name, value in scope["headers"]:
        if name == b"content-length":
            digits = value.strip()
            if not digits.isdigit():
                return None, False, True
            number = int(digits) if len(digits) <= 18 else 10**18
            if length is not None and number != length:
                return None, False, True
            length = number
        elif name == b"transfer-encoding":
            streamed = True
    return length, streamed, False


def _head_size(scope: Scope) -> int:
    """About the bytes of the request line and headers."""
    size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
    return size + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _one_slash_less(scope: Scope) -> Scope:
    """``/u/TOKEN/`` is ``/u/TOKEN``: served as it is, never redirected."""
    path = scope["path"]
    if len(path) <= 1 or not path.endswith("/"):
        return scope
    scope = dict(scope)
    scope["path"] = path[:-1]
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw.endswith(b"/"):
        scope["raw_path"] = raw[:-1]
    return scope


class Guard:
    """Pure ASGI, around the whole application (routing, 404s, 405s, 500s included):
    bounds request bodies in size and time, caps the requests handled at once, drops a
    trailing slash, and adds :data:`HEADERS` to every response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body: int = MAX_BODY,
        body_timeout: float = BODY_TIMEOUT,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Exchange(self, _one_slash_less(scope), receive, send).run()


class _Exchange:
    """One request and its response as :class:`Guard` sees them."""

    def __init__(self, guard: Guard, scope: Scope, receive: Receive, send: Send) -> None:
        self.guard = guard
        self.scope = scope
        self._receive = receive
        self._send = send
        self.length, streamed, self.malformed = _framing(scope)
        self.complete = not streamed and not self.length  # the whole body has been read
        self.read = 0
        self.started = False  # the response has started
        self.answered = False  # the guard has answered in the application's place
        self.deadline: float | None = None  # for the body: set when the reading starts

    async def run(self) -> None:
        guard = self.guard
        if self.malformed:
            await self.answer(400, "Bad Request\n")
            return
        if _head_size(self.scope) > MAX_HEAD:  # arrived whole: h11 bounds only a partial one
            await self.answer(431, "Request Header Fields Too Large\n")
            return
        if self.length is not None and self.length > guard.max_body:
            await self.answer(413, "Content Too Large\n")  # not a byte of it read
            return
        if guard.in_flight >= guard.max_in_flight:
            await self.answer(503, "Busy: please try again in a minute.\n")
            return
        guard.in_flight += 1
        try:
            await guard.app(self.scope, self.receive, self.send)
        except Exception:
            if self.answered:
                return  # the application saw a disconnect where the guard answered
            if not self.started:
                await self.answer(500, "Internal Server Error\n")
            raise
        finally:
            guard.in_flight -= 1

    async def answer(self, status: int, body: str) -> None:
        """Answers in the application's place, closing the connection; what the
        application sends afterwards goes nowhere."""
        if self.answered:
            return
        self.answered = True
        if self.started:
            return  # too late to answer: the server closes the unfinished response
        self.started = True
        data = body.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(data)).encode()),
        ]
        start = {"type": "http.response.start", "status": status}
        await self._send({**start, "headers": _secured(headers, close=True)})
        await self._send({"type": "http.response.body", "body": data})

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        if self.complete:
            return await self._receive()
        if self.deadline is None:
            self.deadline = anyio.current_time() + self.guard.body_timeout
        message: Message | None = None
        # waiting for a client's bytes holds no request slot: the slots bound the work the
        # server does (database, threads); a slow body only holds its connection (capped)
        self.guard.in_flight -= 1
        try:
            with anyio.move_on_after(max(0.0, self.deadline - anyio.current_time())):
                message = await self._receive()
        finally:
            self.guard.in_flight += 1
        if message is None:
            await self.answer(408, "Request Timeout\n")
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self.read += len(message.get("body", b""))
            if self.read > self.guard.max_body:  # read no further
                await self.answer(413, "Content Too Large\n")
                return {"type": "http.disconnect"}
            if not message.get("more_body", False):
                self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.started = True
            # a body left unread closes the connection rather than be read to its end
            headers = _secured(message.get("headers", []), close=not self.complete)
            message = {**message, "headers": headers}
        await self._send(message)


class _GuardedStarlette(Starlette):
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
        return web.not_found()

    async def server_error(request: Request, exc: Exception) -> Response:
        return web.page("error", 500)

    routes = [
        Route("/u/{token}", web.unsubscribe_page, methods=["GET"]),
        Route("/u/{token}", web.unsubscribe_post, methods=["POST"]),
        Route("/c/{token}", web.confirm_page, methods=["GET"]),
        Route("/c/{token}", web.confirm_post, methods=["POST"]),
        Route("/healthz", web.healthz, methods=["GET"]),
        Route("/web.css", web.stylesheet, methods=["GET"]),
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


# --------------------------------------------------------------------------- the server


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the bounds uvicorn lacks: a request head must be
    complete ``header_timeout`` seconds after the connection opens (or after the previous
    response); beyond ``max_connections`` open connections a new one is closed at once;
    uvicorn's own 400 answer carries the security headers."""

    header_timeout: float = HEADER_TIMEOUT
    max_connections: int = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()
            return
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch_head()  # the next request head has its own time

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """A timer runs while the connection waits for (the rest of) a request head."""
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            self._stop_head_timer()
        elif self._head_timer is None:
            self._head_timer = self.loop.call_later(self.header_timeout, self._head_late)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        body = msg.encode("ascii")
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        event = h11.Response(
            status_code=400, headers=_secured(headers, close=True), reason=b"Bad Request"
        )
        for part in (event, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(part) or b"")
        self.transport.close()


def server_config(
    app: ASGIApp,
    host: str,
    port: int,
    *,
    header_timeout: float = HEADER_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
) -> uvicorn.Config:
    """The uvicorn settings `digest-mailer serve` runs with (the tests start the same,
    with a shorter ``header_timeout`` or fewer ``max_connections``)."""
    limits = {"header_timeout": float(header_timeout), "max_connections": max_connections}
    protocol = type("HTTPProtocol", (GuardedH11Protocol,), limits)
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,  # h11 with the head timeout, whatever else is installed
        ws="none",
        lifespan="off",
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT,
        h11_max_incomplete_event_size=MAX_HEAD,
        # uvicorn's limit_concurrency answers 503 without passing through Guard (so
        # without the security headers) and closes nothing: Guard caps the requests,
        # GuardedH11Protocol the connections
        limit_concurrency=None,
        timeout_graceful_shutdown=5,
        server_header=False,
        log_level="warning",
        access_log=False,
    )
