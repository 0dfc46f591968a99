"""The ASGI guard: the outermost layer of the web app, around routing, 404s, 405s and
500s alike (SECURITY.md lists its bounds with their tests).

- A body declared larger than :data:`MAX_BODY` (16 KB) gets 413 at once, unread; a body
  that turns out larger (chunked) is read no further than 16 KB + 1 and gets 413; a body
  not in :data:`BODY_TIMEOUT` (10 s) after the application started reading it gets 408;
  a request head over :data:`MAX_HEAD` (16 KB) gets 431 (h11's 400 when it comes in
  parts); beyond :data:`MAX_IN_FLIGHT` (128) requests at a time, 503.
- Every response, whoever made it, carries :data:`HEADERS`, and one that leaves its
  request body unread closes the connection.
- A trailing slash is dropped here: nothing ever redirects (no Location built from a
  Host header).

The bounds on connections (a request head's time, open connections, idle keep-alive)
are the server's: :mod:`digest_mailer.web.server`.
"""

from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# the security headers every response carries: no scripts, frames, referrers or caching
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
BODY_TIMEOUT = 10.0  # seconds for a request body to arrive once its reading starts
MAX_IN_FLIGHT = 128  # requests handled at once; more get 503


def secured(headers: Any, close: bool) -> list[tuple[bytes, bytes]]:
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
    """``/u/TOKEN/`` is ``/u/TOKEN``: served as it is, never redirected. The archive's
    pages are folders (``/archive/ID/``, their links relative): they keep their slash."""
    path = scope["path"]
    if len(path) <= 1 or not path.endswith("/") or path.startswith("/archive/"):
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
        await self._send({**start, "headers": secured(headers, close=True)})
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
            headers = secured(message.get("headers", []), close=not self.complete)
            message = {**message, "headers": headers}
        await self._send(message)
