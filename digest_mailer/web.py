"""The one-click unsubscribe and confirmation pages (`digest-mailer serve`).

A small Starlette application on the same store as the rest of the tool:

- ``GET /u/{token}``: names the newsletter and the (masked) address, one "Unsubscribe"
  button. A GET never changes anything: mail scanners and link previewers fetch links.
- ``POST /u/{token}``: unsubscribes (source ``web``) and offers "resubscribe" for a
  mistaken click. The RFC 8058 one-click POST (body ``List-Unsubscribe=One-Click``)
  unsubscribes and answers 200 with no redirect, whatever its Origin or cookies.
- ``GET /c/{token}`` shows a confirm button; ``POST /c/{token}`` activates a pending
  subscription (double opt-in); an expired confirmation says how to subscribe again.
- ``GET /healthz``: 200 when the database answers and holds an initialised store.

A forged, altered, expired or unknown unsubscribe token, like an unknown confirmation,
gets the same plain 404 page. The token in the URL is the only authority: no cookies, no
JavaScript, no third-party assets; every response carries a strict Content-Security-Policy.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from digest_mailer.composer import default_templates, render_template, template_environment
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox.actions import InboxContext, confirm_token, token_hash
from digest_mailer.models import Confirmation, Subscriber
from digest_mailer.subscribers import set_status
from digest_mailer.tokens import read_token

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


def mask(address: str) -> str:
    """``j***@corp.test``: enough for a reader to recognise, little for anyone else."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


class WebApp:
    def __init__(self, store: Store, config: Config, secret: bytes) -> None:
        self.store = store
        self.config = config
        self.secret = secret
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

    def _subscriber_id(self, token: str) -> int | None:
        if len(token) > MAX_TOKEN:
            return None
        return read_token(self.secret, "unsubscribe", token)

    # -- routes
    def unsubscribe_page(self, request: Request) -> Response:
        subscriber_id = self._subscriber_id(request.path_params["token"])
        if subscriber_id is None:
            return self.not_found()
        with self.store.Session() as session:
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
        body = (await request.body())[:4096].decode("latin-1")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        one_click = form.get("List-Unsubscribe") == "One-Click"
        action = form.get("action", "unsubscribe")
        token = request.path_params["token"]
        return await run_in_threadpool(self._unsubscribe, token, one_click, action)

    def _unsubscribe(self, token: str, one_click: bool, action: str) -> Response:
        subscriber_id = self._subscriber_id(token)
        if subscriber_id is None:
            return self.not_found()
        with self.store.Session.begin() as session:
            person = session.get(Subscriber, subscriber_id)
            if person is None:
                return self.not_found()
            if action == "resubscribe" and not one_click:
                if person.status == "unsubscribed":
                    set_status(
                        session,
                        person,
                        "active",
                        actor="web",
                        detail="resubscribed from the unsubscribe page",
                    )
                return self.page("resubscribed", address=mask(person.email), status=person.status)
            if person.status in ("active", "pending"):
                how = "one-click unsubscribe (RFC 8058)" if one_click else "unsubscribe page"
                set_status(
                    session,
                    person,
                    "unsubscribed",
                    actor="web",
                    detail=how,
                    reason=f"asked on the web ({how})",
                )
            address = mask(person.email)
        if one_click:
            return PlainTextResponse("Unsubscribed.\n", headers=HEADERS)
        return self.page("unsubscribed", address=address, token=token)

    def _confirmation(self, session: Any, token: str) -> Confirmation | None:
        if not CONFIRM_TOKEN.match(token.lower()):
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
        return await run_in_threadpool(self._confirm, request.path_params["token"])

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


def create_app(store: Store, config: Config, secret: bytes) -> Starlette:
    web = WebApp(store, config, secret)

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
    return Starlette(routes=routes, exception_handlers=handlers)
