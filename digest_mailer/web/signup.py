"""The public signup form: ``GET /subscribe`` and ``POST /subscribe`` (double opt-in).

``GET /subscribe`` shows a form (email, an optional name, "Subscribe") with a signed form
token; ``POST /subscribe`` starts the same double opt-in as a subscribe request by email:
a *pending* subscriber (source ``web``) and a confirmation with a ``/c/TOKEN`` link, queued
in the outbox (:mod:`digest_mailer.inbox.replies`, caps included) and sent by the next
``digest-mailer requests process``. Only the confirmation activates anybody: its link (the
``/c/TOKEN`` pages of :mod:`digest_mailer.web.app`) or a reply to it.

**Nothing reveals who subscribes.** Every accepted POST gets the same page, byte for byte,
and the work behind it runs after that page has been sent (a background task), so neither
the page nor its timing tells a new address from a subscribed one. What happens behind:

=====================  =====================================================================
the address is         a POST (that passes every check below) does
=====================  =====================================================================
new                    ``pending`` subscriber + confirmation mail
``pending``            a new confirmation mail (the one-an-hour cap per mailbox applies)
``active``             nothing: no change, no event, no mail (its name is not touched)
``unsubscribed``       status kept; a ``request`` event and a confirmation mail; only the
                       confirmation re-activates
``bounced``,           status kept; a ``request`` event for staff; no mail (by email such a
``complained``         request is held for review; here nobody could be shown it)
=====================  =====================================================================

**Checks, in this order** (no third-party service, no JavaScript, no cookies):

1. per client (the ASGI client host; IPv6 by /64): :data:`CLIENT_LIMIT` POSTs per
   :data:`CLIENT_WINDOW`, else 429 with ``Retry-After``;
2. the honeypot (a field hidden by CSS and from assistive technology): filled, the
   success page and nothing else;
3. the signed form token (:func:`form_token`: when the form was served, HMAC-signed with
   the app's secret like every other token). It is also the CSRF token. Missing (or the
   browser says ``Sec-Fetch-Site: cross-site``): the form is shown again, pre-filled, with a
   fresh token and one button (status 200) and nothing happens; see below. Forged,
   altered, younger than :data:`FORM_MIN_AGE` or older than :data:`FORM_MAX_AGE`: the form
   again with a fresh token and one clear message, status 400;
4. the address (email-validator, as everywhere in the tool; internationalised addresses
   welcome): a bad one gets the form again, its values kept, one message, status 400;
5. per target mailbox (``+tag`` variants are one): :data:`TARGET_LIMIT` per
   :data:`TARGET_WINDOW`; over it, the success page and nothing else.

**A form on another website** (README: "Signup form on your website") cannot carry a
signed token. Its POST is answered with this site's own form, pre-filled, with a fresh
token and a "Subscribe" button: a person presses once more, a bot that posts blindly (or
cannot wait :data:`FORM_MIN_AGE`) gets no further. A valid token posted from a foreign
page (``Sec-Fetch-Site: cross-site``, which browsers send) is treated the same way, so a
page elsewhere cannot make its visitors' browsers subscribe addresses.

The limits live in this process's memory, each bounded to :data:`MAX_TRACKED` keys (the
least recently seen are forgotten first); several server processes each count their own.
The request body is bounded by the guard (16 KB, :mod:`digest_mailer.web.guard`).
"""

import ipaddress
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qsl

from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from digest_mailer.addresses import (
    MAX_ADDRESS,
    mailbox_key,
    normalize_address,
    wire_address,
)
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.errors import DigestMailerError
from digest_mailer.inbox.confirmations import CONFIRM_DAYS
from digest_mailer.inbox.subscriptions import start_subscription
from digest_mailer.tokens import sign, signed_by_any, signing_keys
from digest_mailer.web.pages import Pages

log = logging.getLogger(__name__)

ACTOR = "web"  # the subscriber's source and the events' actor

# the signed form token: how soon and how late after the form was served a POST counts
FORM_MIN_AGE = timedelta(seconds=2)  # faster than a person fills in a form
FORM_MAX_AGE = timedelta(days=1)

# rate limits, in memory (fixed windows)
CLIENT_LIMIT = 10  # POSTs per client address (IPv6: per /64) ...
CLIENT_WINDOW = timedelta(minutes=10)  # ... in this window; then 429
TARGET_LIMIT = 3  # accepted requests per target mailbox (+tag variants are one) ...
TARGET_WINDOW = timedelta(hours=24)  # ... in this window; then silently nothing
MAX_TRACKED = 10_000  # keys each limiter remembers (about 2 MB at most)

# the form
MAX_FIELDS = 20  # form fields read; a body with more is not a form of ours
HONEYPOT = "comment"  # the field people never see nor fill
MAX_ECHO = 400  # characters of an entered value shown again in the form

MESSAGES = {
    "fast": "That was quicker than a person fills in a form. Please check your details "
    "and press Subscribe again.",
    "old": "This form was opened more than a day ago. Please check your details and press "
    "Subscribe again.",
    "invalid": "This form could not be checked. Please check your details and press "
    "Subscribe again.",
    "unreadable": "The form could not be read. Please fill it in again.",
    "empty": "Enter your email address.",
    "address": "Enter a valid email address, such as name@example.org.",
}


# --------------------------------------------------------------------------- form tokens

_FORM_TOKEN = re.compile(r"(0|[1-9a-f][0-9a-f]{0,15})\.([A-Za-z0-9_-]{24})")


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


FORM_PURPOSE = "signup-form"


def form_token(secret: bytes, now: datetime) -> str:
    """``<unix milliseconds, hex>.<signature>``: when the form was served, signed like
    every other token (the first of the secrets) with a purpose of its own."""
    millis = _millis(now)
    return f"{millis:x}.{sign(signing_keys(secret)[0], FORM_PURPOSE, millis)}"


def form_served_at(secret: bytes, token: str) -> datetime | None:
    """When the form carrying ``token`` was served, if any of the secrets signed it;
    None for anything forged, altered or not in its one canonical form."""
    match = _FORM_TOKEN.fullmatch(token) if len(token) <= 64 else None
    if match is None:
        return None
    millis = int(match.group(1), 16)
    if not signed_by_any(secret, match.group(2), FORM_PURPOSE, millis) or millis > 2**53:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC)


def check_form_token(secret: bytes, token: str, now: datetime) -> str:
    """``ok``, ``missing``, ``invalid``, ``fast`` (under :data:`FORM_MIN_AGE`, or from
    the future) or ``old`` (over :data:`FORM_MAX_AGE`)."""
    if not token:
        return "missing"
    served = form_served_at(secret, token)
    if served is None:
        return "invalid"
    age = now - served
    if age < FORM_MIN_AGE:
        return "fast"
    return "old" if age > FORM_MAX_AGE else "ok"


# --------------------------------------------------------------------------- rate limits


class RateLimiter:
    """At most ``limit`` hits per key in a fixed window of ``window`` from its first hit,
    remembering at most ``capacity`` keys (the least recently seen are forgotten first, so
    memory stays bounded whatever the keys)."""

    def __init__(self, limit: int, window: timedelta, capacity: int = MAX_TRACKED) -> None:
        self.limit = limit
        self.window = window
        self.capacity = capacity
        self._hits: OrderedDict[str, tuple[datetime, int]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, now: datetime) -> bool:
        """Counts one hit; False when the key is over its limit (that hit not counted)."""
        with self._lock:
            start, count = self._hits.pop(key, (now, 0))
            if not start <= now < start + self.window:
                start, count = now, 0
            allowed = count < self.limit
            self._hits[key] = (start, count + allowed)
            while len(self._hits) > self.capacity:
                self._hits.popitem(last=False)
            return allowed

    def retry_after(self, key: str, now: datetime) -> timedelta:
        """How long until ``key`` may hit again (zero when it may now)."""
        with self._lock:
            start, count = self._hits.get(key, (now, 0))
        if count < self.limit or not start <= now < start + self.window:
            return timedelta(0)
        return start + self.window - now

    def __len__(self) -> int:
        return len(self._hits)


def client_key(host: str) -> str:
    """What the per-client limit counts by: the address, an IPv6 one by its /64 (one
    subscriber line holds a whole /64); anything else (no address) as it is, cut."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


# --------------------------------------------------------------------------- reading the form


def read_form(body: bytes) -> dict[str, str] | None:
    """The fields of a form-encoded body (the first value of each), read as UTF-8 with
    anything else replaced; None when it has more than :data:`MAX_FIELDS` fields."""
    text = body.decode("utf-8", "replace")
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, encoding="utf-8", errors="replace",
            max_num_fields=MAX_FIELDS,
        )  # fmt: skip
    except ValueError:
        return None
    form: dict[str, str] = {}
    for name, value in pairs:
        form.setdefault(name, value)
    return form


def echo(value: str) -> str:
    """An entered value as the form shows it again: printable characters, cut."""
    return "".join(ch for ch in value[: MAX_ECHO * 4] if ch.isprintable())[:MAX_ECHO]


def valid_address(config: Config, entered: str) -> tuple[str | None, str | None]:
    """(the address in the store's form, None) or (None, the message key of why not).
    An address must also have a form for the envelope (IDNA), or no mail could reach it."""
    if not entered.strip():
        return None, "empty"
    if "\ufffd" in entered:  # bytes that were not UTF-8: no address anybody typed
        return None, "address"
    try:
        address = normalize_address(
            entered, allow_test_domains=config.subscribers.allow_test_domains
        )
        wire_address(address)
    except DigestMailerError:  # InputError, UnencodableAddress
        return None, "address"
    if len(address) > MAX_ADDRESS:
        return None, "address"
    return address, None


# --------------------------------------------------------------------------- the store


@dataclass
class SignupContext:
    """What :func:`~digest_mailer.inbox.replies.queue_reply` needs of its caller."""

    config: Config
    env: Any
    now: datetime
    dry_run: bool = False


def start_web_subscription(session: Session, ctx: SignupContext, address: str, name: str) -> str:
    """Double opt-in from the form: the very
    :func:`~digest_mailer.inbox.subscriptions.start_subscription` a request by email runs,
    as actor ``web`` with no request (see the table in the module docstring). Says what
    happened, for the log."""
    return start_subscription(
        session, ctx, address, name, None, None, actor=ACTOR, origin="on the signup form"
    )  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the routes


class _Site(Protocol):
    """What the signup form takes from :class:`~digest_mailer.web.app.WebApp`."""

    store: Store
    config: Config
    secret: bytes
    clock: Callable[[], datetime]
    pages: Pages


class Signup:
    """``GET /subscribe`` and ``POST /subscribe``, with their limits (one set per app)."""

    def __init__(
        self,
        store: Store,
        config: Config,
        secret: bytes,
        pages: Pages,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.config = config
        self.secret = secret
        self.pages = pages
        self.clock = clock
        self.clients = RateLimiter(CLIENT_LIMIT, CLIENT_WINDOW)
        self.targets = RateLimiter(TARGET_LIMIT, TARGET_WINDOW)

    def routes(self) -> list[Route]:
        return [
            Route("/subscribe", self.form_page, methods=["GET"]),
            Route("/subscribe", self.submit, methods=["POST"]),
        ]

    # -- pages
    def _form(
        self,
        code: int = 200,
        *,
        email: str = "",
        name: str = "",
        confirm: bool = False,
        form_error: str | None = None,
        email_error: str | None = None,
    ) -> HTMLResponse:
        """The form, with a fresh token, the entered values and at most one message
        about the form and one about the address."""
        return self.pages.page(
            "subscribe",
            code,
            token=form_token(self.secret, self.clock()),
            email=echo(email),
            person_name=echo(name),
            confirm=confirm,
            form_error=MESSAGES.get(form_error or ""),
            email_error=MESSAGES.get(email_error or ""),
        )

    def _sent(self) -> HTMLResponse:
        """The one answer to every accepted POST, whatever the address's state."""
        return self.pages.page("subscribe_sent", days=CONFIRM_DAYS)

    def _limited(self, client: str) -> HTMLResponse:
        wait = self.clients.retry_after(client, self.clock())
        seconds = max(1, int(wait.total_seconds() + 0.999))
        page = self.pages.page("subscribe_limited", 429, minutes=(seconds + 59) // 60)
        page.headers["Retry-After"] = str(seconds)
        return page

    # -- routes
    def form_page(self, request: Request) -> Response:
        return self._form()

    async def submit(self, request: Request) -> Response:
        client = client_key(request.client.host if request.client else "")
        if not self.clients.hit(client, self.clock()):
            return self._limited(client)
        form = read_form(await request.body())  # the guard bounds it (16 KB)
        if form is None:
            return self._form(400, form_error="unreadable")
        email, name = form.get("email", ""), form.get("name", "")
        if form.get(HONEYPOT, "").strip():
            return self._sent()  # a bot: it learns nothing
        now = self.clock()
        verdict = check_form_token(self.secret, form.get("token", ""), now)
        if verdict == "ok" and request.headers.get("sec-fetch-site") == "cross-site":
            verdict = "missing"  # a token carried by a page elsewhere counts for nothing
        address, problem = valid_address(self.config, email)
        if verdict == "missing":  # a form elsewhere: ours, pre-filled, one press away
            return self._form(
                400 if problem else 200, email=email, name=name, confirm=True,
                email_error=problem,
            )  # fmt: skip
        if verdict != "ok" or address is None:
            form_error = None if verdict == "ok" else verdict
            return self._form(
                400, email=email, name=name, form_error=form_error, email_error=problem
            )
        page = self._sent()
        if self.targets.hit(mailbox_key(address), now):
            # after the page has gone out: its time says nothing about the address
            page.background = BackgroundTask(self._subscribe, address, name, now)
        return page

    def _subscribe(self, address: str, name: str, now: datetime) -> None:
        """The double opt-in, in a transaction of its own (run after the answer)."""
        ctx = SignupContext(self.config, self.pages.env, now)
        for attempt in (1, 2):
            try:
                with self.store.Session.begin() as session:
                    outcome = start_web_subscription(session, ctx, address, name)
                log.info("signup form: %s", outcome)
                return
            except IntegrityError:  # the same new address twice at once: once more
                if attempt == 2:
                    log.exception("signup form: the request could not be recorded")
            except (SQLAlchemyError, DigestMailerError):
                log.exception("signup form: the request could not be recorded")
                return


def signup_routes(web: _Site) -> list[Route]:
    """The signup form's routes on ``web``'s store, secret, pages and clock."""
    return Signup(web.store, web.config, web.secret, web.pages, web.clock).routes()
