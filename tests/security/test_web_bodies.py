"""Threat: request bodies sent to use up the server's memory or time (web.py ``Guard``).

A body declared over 16 KB gets 413 before a byte of it is read, a chunked one is read no
further than 16 KB + 1, a forged link gets its 404 before its body is read, on every
route; a request head over 16 KB gets 400. Checked on the ASGI application (counting what
it pulls) and on a real uvicorn server started with the settings `serve` uses."""

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
import support
from conftest import NEWSLETTER, SECRET, write_config

from digest_mailer import subscribers as subs
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import Subscriber
from digest_mailer.tokens import make_token
from digest_mailer.web import HEADERS, MAX_BODY, create_app

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@pytest.fixture
def people(store: Store) -> dict[str, int]:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["jo@corp.test", "kai@corp.test"], allow_test_domains=True)
        return {p.email: p.id for p in subs.list_subscribers(session)}


def token(store: Store, subscriber_id: int) -> str:
    """The link the send puts in the subscriber's messages: signed with its link_salt."""
    with store.Session() as session:
        person = session.get(Subscriber, subscriber_id)
        salt = person.link_salt if person is not None else ""
    return make_token(SECRET.encode(), "unsubscribe", subscriber_id, salt)


def status_of(store: Store, address: str) -> str:
    with store.Session() as session:
        return subs.get_subscriber(session, address).status


class Sent:
    """What one request to the ASGI application pulled and what it answered."""

    def __init__(self) -> None:
        self.pulled = 0  # body bytes the application asked for
        self.calls = 0  # receive() calls
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""


def call(app, method: str, path: str, headers: dict[str, str], chunks: Iterator[bytes]) -> Sent:  # type: ignore[no-untyped-def]
    """One request straight to the ASGI application; the body comes from ``chunks``."""
    sent = Sent()

    async def receive() -> dict[str, object]:
        sent.calls += 1
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        sent.pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            sent.status = message["status"]  # type: ignore[assignment]
            sent.headers = {k.decode(): v.decode() for k, v in message["headers"]}  # type: ignore[attr-defined]
        else:
            sent.body += message.get("body", b"")  # type: ignore[operator]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }

    async def run() -> None:
        await app(scope, receive, send)

    anyio.run(run)
    return sent


def endless(size: int = 1000, total: int = 4 * 2**20) -> Iterator[bytes]:
    """A body that keeps coming (4 MB: a server that reads it all fails, not hangs)."""
    for _ in range(total // size):
        yield b"List-Unsubscribe=One-Click&" + b"x" * (size - 27)


def secured(sent: Sent) -> bool:
    return all(sent.headers.get(name.lower()) == value for name, value in HEADERS.items())


def test_a_forged_link_is_answered_before_its_body_is_read(
    store: Store, config: Config, people: dict[str, int]
) -> None:
    app = create_app(store, config, SECRET.encode())
    good = token(store, people["jo@corp.test"])
    altered = good[:-1] + ("A" if good[-1] != "A" else "B")
    forged = [altered, "garbage", "x" * 5000, token(store, 999)]  # 999: nobody
    for value in forged:
        body = iter([b"List-Unsubscribe=One-Click"])
        sent = call(app, "POST", f"/u/{value}", {**FORM, "content-length": "26"}, body)
        assert sent.status == 404 and b"Not found" in sent.body, value
        assert sent.calls == 0 and sent.pulled == 0, value
    for value in ("zz", "ab" * 17, "x" * 5000):
        sent = call(app, "POST", f"/c/{value}", {**FORM, "content-length": "4"}, iter([b"a=b"]))
        assert sent.status == 404 and sent.calls == 0, value
    assert status_of(store, "jo@corp.test") == "active"


def test_a_body_declared_over_16_kb_gets_413_unread_on_every_route(
    store: Store, config: Config, people: dict[str, int]
) -> None:
    app = create_app(store, config, SECRET.encode())
    good = token(store, people["jo@corp.test"])
    for method, path in [
        ("POST", f"/u/{good}"),
        ("POST", "/c/" + "ab" * 16),
        ("POST", "/nowhere"),
        ("PUT", f"/u/{good}"),
        ("GET", "/healthz"),
    ]:
        for length in (str(MAX_BODY + 1), "200000000", "9" * 5000):
            headers = {**FORM, "content-length": length}
            sent = call(app, method, path, headers, endless())
            assert sent.status == 413, (method, path, length)
            assert sent.calls == 0 and sent.pulled == 0  # not a byte read
            assert secured(sent) and sent.headers["connection"] == "close"
    assert status_of(store, "jo@corp.test") == "active"
    # 16 KB exactly is still a form
    body = b"action=unsubscribe&pad="
    body += b"x" * (MAX_BODY - len(body))
    headers = {**FORM, "content-length": str(len(body))}
    sent = call(app, "POST", f"/u/{good}", headers, iter([body[:9000], body[9000:]]))
    assert sent.status == 200 and b"You are unsubscribed" in sent.body
    assert sent.pulled == MAX_BODY and "connection" not in sent.headers
    assert status_of(store, "jo@corp.test") == "unsubscribed"


def test_a_chunked_body_is_read_no_further_than_16_kb(
    store: Store, config: Config, people: dict[str, int]
) -> None:
    app = create_app(store, config, SECRET.encode())
    good = token(store, people["jo@corp.test"])
    headers = {**FORM, "transfer-encoding": "chunked"}
    sent = call(app, "POST", f"/u/{good}", headers, endless(1000))
    assert sent.status == 413 and secured(sent) and sent.headers["connection"] == "close"
    assert MAX_BODY < sent.pulled <= MAX_BODY + 1000
    # a route that reads no body answers without reading it, and closes the connection
    sent = call(app, "POST", "/nowhere", headers, endless(1000))
    assert sent.status == 404 and sent.pulled == 0 and sent.headers["connection"] == "close"
    assert status_of(store, "jo@corp.test") == "active"


# --------------------------------------------------------------------------- a real server


def push(port: int, head: bytes, body: Iterator[bytes], limit: float = 10.0) -> tuple[bytes, int]:
    """Sends ``head`` then ``body`` until the server stops taking it; returns what the
    server answered (read to its end) and how many body bytes were sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=limit)
    sent = 0
    try:
        sock.sendall(head)
        deadline = time.monotonic() + limit
        for chunk in body:
            assert time.monotonic() < deadline, "the server kept reading"
            try:
                sock.sendall(chunk)
            except OSError:  # closed: the answer is already there
                break
            sent += len(chunk)
        answer = b""
        while True:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        return answer, sent
    finally:
        sock.close()


def megabytes(total: int, chunked: bool = False) -> Iterator[bytes]:
    piece = b"x" * 65536
    for _ in range(total * 16):
        yield b"10000\r\n" + piece + b"\r\n" if chunked else piece


def later(chunk: bytes) -> Iterator[bytes]:
    time.sleep(0.5)  # what came before is read alone
    yield chunk


@pytest.mark.slow
def test_a_real_server_refuses_a_flood_and_keeps_serving(
    store: Store, config: Config, people: dict[str, int]
) -> None:
    url = f"/u/{token(store, people['jo@corp.test'])}"
    with support.serving(create_app(store, config, SECRET.encode())) as port:
        started = time.monotonic()
        head = (
            f"POST {url} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 200000000\r\n\r\n"
        ).encode()
        answer, sent = push(port, head, megabytes(200))
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"content-security-policy: default-src 'none'" in answer.lower()
        assert sent < 50 * 2**20  # the server closed long before 200 MB
        head = head.replace(b"Content-Length: 200000000", b"Transfer-Encoding: chunked")
        answer, sent = push(port, head, megabytes(200, chunked=True))
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert sent < 50 * 2**20
        # a request head over 16 KB: h11 refuses it while incomplete (uvicorn's 400, with
        # the security headers), Guard when it came whole (431)
        head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"x" * 20000
        answer, _ = push(port, head, later(b"\r\n\r\n"))
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
        assert b"x-frame-options: deny" in answer.lower()
        answer, _ = push(port, head + b"\r\n\r\n", iter([]))
        assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), answer[:200]
        assert b"x-frame-options: deny" in answer.lower()
        assert time.monotonic() - started < 20
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok\n"
        reply = httpx.post(
            f"http://127.0.0.1:{port}{url}", content=b"List-Unsubscribe=One-Click", headers=FORM
        )
        assert reply.status_code == 200
    assert status_of(store, "jo@corp.test") == "unsubscribed"
