"""The uvicorn server `digest-mailer serve` runs (:func:`server_config`; the tests start
the same), with the bounds on connections uvicorn lacks (SECURITY.md lists them with
their tests): a request head must be complete within :data:`HEADER_TIMEOUT` (10 s) of
the connection (or of the previous response), else the connection is closed
(:class:`GuardedH11Protocol`); an idle keep-alive connection is closed after
:data:`KEEP_ALIVE_TIMEOUT` (5 s); beyond :data:`MAX_CONNECTIONS` (512) open connections a
new one is closed at once.

The bounds on requests are :class:`~digest_mailer.web.guard.Guard`'s.
"""

import asyncio
import socket
from typing import Any

import h11
import uvicorn
from starlette.types import ASGIApp
from uvicorn.protocols.http.h11_impl import H11Protocol

from digest_mailer.errors import InputError
from digest_mailer.web.guard import MAX_HEAD, secured

HEADER_TIMEOUT = 10.0  # seconds for a request head to arrive
KEEP_ALIVE_TIMEOUT = 5  # seconds an idle keep-alive connection stays open
MAX_CONNECTIONS = 512  # open connections; more are closed at once


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
            status_code=400, headers=secured(headers, close=True), reason=b"Bad Request"
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


def refuse_taken(host: str, port: int) -> None:
    """One clear line when the address cannot be listened on (in use, not local): checked
    before uvicorn starts, which would only log it."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except (OSError, OverflowError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise InputError(f"cannot listen on {host}:{port}: {why}") from None
