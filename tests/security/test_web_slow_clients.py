"""Threat: clients holding the server's connections and requests (slowloris): a request
head that never ends or comes a byte at a time, an idle keep-alive connection, a body
that never comes, more connections or requests than the server can hold.

A real uvicorn server runs with the settings `serve` uses (web.server_config), its
header timeout shortened from 10 s to 2 s; the server closes every such connection within
the limit while /healthz keeps answering."""

import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import support
from conftest import NEWSLETTER, SECRET, write_config

from digest_mailer import subscribers as subs
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.tokens import make_token
from digest_mailer.web import (
    HEADER_TIMEOUT,
    HEADERS,
    MAX_CONNECTIONS,
    MAX_IN_FLIGHT,
    Guard,
    create_app,
    server_config,
)

LIMIT = 2.0  # the header timeout of these tests (serve: web.HEADER_TIMEOUT)
SLACK = 1.5  # how late a close may come: timers, a loaded test machine
SLOW_CLIENTS = 50


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@contextmanager
def serving(app, **limits: int) -> Iterator[int]:  # type: ignore[no-untyped-def]
    """The server with the header timeout cut to 2 s (and other ``limits``)."""
    with support.serving(app, **{"header_timeout": LIMIT, **limits}) as port:
        yield port


def closed(sock: socket.socket) -> bool:
    """Whether the server has closed the connection (what it sent before is read)."""
    try:
        while data := sock.recv(65536):
            del data
    except BlockingIOError:
        return False
    except OSError:
        return True
    return True


def test_the_server_settings_bound_heads_and_idle_connections() -> None:
    config = server_config(object(), "127.0.0.1", 8000)  # type: ignore[arg-type]
    assert HEADER_TIMEOUT == 10 and config.http.header_timeout == 10  # type: ignore[union-attr]
    assert config.timeout_keep_alive == 5 and config.h11_max_incomplete_event_size == 16384
    assert config.http.max_connections == MAX_CONNECTIONS == 512  # type: ignore[union-attr]
    assert MAX_IN_FLIGHT == 128
    assert server_config(object(), "h", 1, header_timeout=2).http.header_timeout == 2  # type: ignore[arg-type, union-attr]


@pytest.mark.slow
def test_fifty_slow_clients_are_cut_off_while_healthz_answers(store: Store, config: Config) -> None:
    with serving(create_app(store, config, SECRET.encode())) as port:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz").status_code == 200
        selector = selectors.DefaultSelector()
        opened: dict[socket.socket, float] = {}
        for n in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            # half send a partial head and then nothing; half trickle a byte now and
            # then, which must not restart the clock
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            sock.setblocking(False)
            opened[sock] = time.monotonic()
            selector.register(sock, selectors.EVENT_READ, n % 2 == 1)
        took: dict[int, float] = {}
        answers: list[int] = []
        deadline = time.monotonic() + LIMIT + SLACK + 1
        last_trickle = time.monotonic()
        try:
            while len(took) < SLOW_CLIENTS and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.05):
                    sock = key.fileobj  # type: ignore[assignment]
                    if closed(sock):  # type: ignore[arg-type]
                        took[key.fd] = time.monotonic() - opened[sock]  # type: ignore[index]
                        selector.unregister(sock)
                if time.monotonic() - last_trickle > 0.3:
                    last_trickle = time.monotonic()
                    for key in list(selector.get_map().values()):
                        if key.data:
                            try:
                                key.fileobj.send(b"x")  # type: ignore[union-attr]
                            except OSError:
                                pass
                    # meanwhile the pages keep answering
                    answers.append(httpx.get(f"{base}/healthz", timeout=2).status_code)
        finally:
            for sock in opened:
                sock.close()
            selector.close()
    assert len(took) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(took)} slow connections stayed open"
    assert all(LIMIT - 0.2 <= t <= LIMIT + SLACK for t in took.values()), sorted(took.values())
    assert answers and set(answers) == {200}, answers


@pytest.mark.slow
def test_idle_and_slow_keep_alive_connections_are_closed(store: Store, config: Config) -> None:
    with serving(create_app(store, config, SECRET.encode())) as port:
        for then in (b"", b"GET /healthz HTTP/1.1\r\nHost: 1"):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                answer = sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"ok\n")
                started = time.monotonic()
                sock.sendall(then)  # nothing, or the start of a next request head
                sock.settimeout(LIMIT + SLACK + 1)
                assert sock.recv(65536) == b"", "the server sent something"
                assert time.monotonic() - started <= LIMIT + SLACK
            finally:
                sock.close()


@pytest.mark.slow
def test_a_body_that_never_comes_gets_408(tmp_path: Path, store: Store, config: Config) -> None:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["jo@corp.test"], allow_test_domains=True)
        jo = subs.get_subscriber(session, "jo@corp.test")
        url = f"/u/{make_token(SECRET.encode(), 'unsubscribe', jo.id, jo.link_salt)}"
    app = create_app(store, config, SECRET.encode(), body_timeout=LIMIT)
    with serving(app) as port:
        sock = socket.create_connection(("127.0.0.1", port), timeout=LIMIT + SLACK + 1)
        try:
            sock.sendall(
                f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 100\r\n\r\nList-Unsub".encode()
            )
            started = time.monotonic()
            answer = b""
            while data := sock.recv(65536):
                answer += data
            assert time.monotonic() - started <= LIMIT + SLACK
        finally:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 408 ") and b"connection: close" in answer.lower()
    with store.Session() as session:
        assert subs.get_subscriber(session, "jo@corp.test").status == "active"


@pytest.mark.slow
def test_connections_beyond_the_cap_are_closed_at_once(store: Store, config: Config) -> None:
    with serving(create_app(store, config, SECRET.encode()), max_connections=5) as port:
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        try:
            extra = socket.create_connection(("127.0.0.1", port), timeout=1)
            started = time.monotonic()
            try:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                assert extra.recv(65536) == b""  # closed unanswered, not after the timeout
            except ConnectionResetError:
                pass
            finally:
                extra.close()
            assert time.monotonic() - started < 1
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)  # the server sees them go
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_requests_beyond_the_cap_get_503() -> None:
    answers: list[tuple[int, dict[bytes, bytes]]] = []

    async def main() -> None:
        release = anyio.Event()

        async def held(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
            await release.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        guard = Guard(held, max_in_flight=2)

        async def request() -> None:
            async def receive() -> dict[str, object]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, object]) -> None:
                if message["type"] == "http.response.start":
                    answers.append((message["status"], dict(message["headers"])))  # type: ignore[arg-type]

            scope = {"type": "http", "method": "GET", "path": "/healthz", "headers": []}
            await guard(scope, receive, send)

        async with anyio.create_task_group() as tasks:
            for _ in range(3):
                tasks.start_soon(request)
            with anyio.fail_after(5):
                while not answers:
                    await anyio.sleep(0.01)
            release.set()
        assert guard.in_flight == 0

    anyio.run(main)
    assert [status for status, _ in answers] == [503, 200, 200]
    busy = answers[0][1]
    assert busy[b"connection"] == b"close"
    assert all(busy[name.lower().encode()] == value.encode() for name, value in HEADERS.items())


def test_slow_bodies_hold_no_request_slot() -> None:
    """A reader's own valid link posted one byte at a time must not use up the request
    slots: waiting for a client's bytes holds its connection only."""
    answers: list[int] = []

    async def main() -> None:
        async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
            if scope["path"] == "/slow":
                await receive()  # the body never comes
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        guard = Guard(app, max_in_flight=2, body_timeout=1.0)

        async def request(path: str, body_never_comes: bool) -> None:
            async def receive() -> dict[str, object]:
                if body_never_comes:
                    await anyio.sleep(30)
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, object]) -> None:
                if message["type"] == "http.response.start":
                    answers.append(message["status"])  # type: ignore[arg-type]

            headers = [(b"content-length", b"100")] if body_never_comes else []
            scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
            await guard(scope, receive, send)

        async with anyio.create_task_group() as tasks:
            for _ in range(5):  # more slow bodies than slots
                tasks.start_soon(request, "/slow", True)
            await anyio.sleep(0.2)
            with anyio.fail_after(0.5):
                await request("/fast", False)  # answered at once, not 503
        assert guard.in_flight == 0

    anyio.run(main)
    assert answers[0] == 200  # the fast request, while five bodies were pending
    assert sorted(answers[1:]) == [408] * 5
