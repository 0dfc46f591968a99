"""Threat: responses an attacker shapes: a redirect to the host named in his Host header
(``/u/TOKEN/`` used to answer 307 to ``http://evil.test/u/TOKEN``), and answers without
the security headers (404, 405, 413, 500, a redirect) that a page could be framed or
sniffed through.

Nothing redirects (a trailing slash is served as if absent) and every response, whoever
makes it (the pages, Starlette's routing, web.Guard, uvicorn's 400), carries web.HEADERS."""

import socket
from pathlib import Path

import httpx
import pytest
import support
from conftest import NEWSLETTER, SECRET, write_config
from starlette.testclient import TestClient

from digest_mailer import db
from digest_mailer import subscribers as subs
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import Subscriber
from digest_mailer.tokens import make_token
from digest_mailer.web import HEADERS, create_app

EVIL = {"Host": "evil.test"}


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@pytest.fixture
def people(store: Store) -> dict[str, int]:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["jo@corp.test", "kai@corp.test"], allow_test_domains=True)
        return {p.email: p.id for p in subs.list_subscribers(session)}


@pytest.fixture
def client(store: Store, config: Config) -> TestClient:
    return TestClient(create_app(store, config, SECRET.encode()), follow_redirects=False)


def token(store: Store, subscriber_id: int) -> str:
    """The link the send puts in the subscriber's messages: signed with its link_salt."""
    with store.Session() as session:
        person = session.get(Subscriber, subscriber_id)
        salt = person.link_salt if person is not None else ""
    return make_token(SECRET.encode(), "unsubscribe", subscriber_id, salt)


def status_of(store: Store, address: str) -> str:
    with store.Session() as session:
        return subs.get_subscriber(session, address).status


def missing_headers(reply: httpx.Response, own: tuple[str, ...] = ()) -> list[str]:
    return [
        name
        for name, value in HEADERS.items()
        if name not in own and reply.headers.get(name) != value
    ]


def test_a_trailing_slash_is_served_never_redirected(
    client: TestClient, store: Store, people: dict[str, int]
) -> None:
    jo = token(store, people["jo@corp.test"])
    page = client.get(f"/u/{jo}/", headers=EVIL)
    assert page.status_code == 200 and "j***@corp.test" in page.text
    assert "location" not in page.headers and not missing_headers(page)
    done = client.post(f"/u/{jo}/", data={"action": "unsubscribe"}, headers=EVIL)
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert status_of(store, "jo@corp.test") == "unsubscribed"
    assert client.get("/healthz/", headers=EVIL).text == "ok\n"
    assert client.get(f"/c/{'ab' * 16}/", headers=EVIL).status_code == 404  # unknown


def test_nothing_redirects_whatever_the_host(
    client: TestClient, store: Store, people: dict[str, int]
) -> None:
    jo = token(store, people["jo@corp.test"])
    paths = [
        f"/u/{jo}",
        f"/u/{jo}/",
        f"/u/{jo}//",
        f"//u/{jo}",
        "/u/",
        "/u",
        "/c/",
        f"/c/{'ab' * 16}/",
        "/healthz/",
        "/web.css/",
        "/",
        "//evil.test/",
        "/%2F%2Fevil.test",
        "/nowhere/",
    ]
    for path in paths:
        for method in ("GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS"):
            for host in ("evil.test", "evil.test:8080", "127.0.0.1"):
                reply = client.request(method, path, headers={"Host": host})
                where = (method, path, host)
                assert not 300 <= reply.status_code < 400, where
                assert "location" not in reply.headers, where
                assert "evil.test" not in reply.text, where
                assert not missing_headers(reply, own=("Cache-Control",)), where


def test_every_response_carries_the_security_headers(
    tmp_path: Path, client: TestClient, store: Store, config: Config, people: dict[str, int]
) -> None:
    jo = token(store, people["jo@corp.test"])
    replies = {
        "page": client.get(f"/u/{jo}"),
        "slash": client.get(f"/u/{jo}/"),
        "404 route": client.get("/nowhere"),
        "404 token": client.post("/u/garbage"),
        "405": client.put(f"/u/{jo}"),
        "413": client.post(f"/u/{jo}", content=b"x" * 20000),
        "400": client.post(f"/u/{jo}", headers={"Content-Length": "twelve"}, content=b"a"),
        "410 undo": client.post(f"/u/{jo}", data={"action": "resubscribe"}),
        "one-click": client.post(
            f"/u/{token(store, people['kai@corp.test'])}",
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        ),
        "healthz": client.get("/healthz"),
    }
    gone = db.open_store(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}", check=False)
    try:
        broken = TestClient(
            create_app(gone, config, SECRET.encode()), raise_server_exceptions=False
        )
        replies["500"] = broken.get(f"/u/{jo}")
        replies["503"] = broken.get("/healthz")
    finally:
        gone.dispose()
    statuses = {name: reply.status_code for name, reply in replies.items()}
    assert statuses == {
        "page": 200,
        "slash": 200,
        "404 route": 404,
        "404 token": 404,
        "405": 404,  # told apart from an unknown page by nothing
        "413": 413,
        "400": 400,
        "410 undo": 410,
        "one-click": 200,
        "healthz": 200,
        "500": 500,
        "503": 503,
    }
    for name, reply in replies.items():
        assert not missing_headers(reply), name
    css = client.get("/web.css")  # keeps its own Cache-Control, gets the rest
    assert css.headers["cache-control"] == "public, max-age=3600"
    assert not missing_headers(css, own=("Cache-Control",))


# --------------------------------------------------------------------------- a real server


def raw(port: int, request: bytes) -> bytes:
    """One request as written; the whole answer (the server closes, or 3 s pass)."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.sendall(request)
        answer = b""
        try:
            while data := sock.recv(65536):
                answer += data
                if b"\r\n\r\n" in answer and b"connection: close" not in answer.lower():
                    head, _, body = answer.partition(b"\r\n\r\n")
                    length = [
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ]
                    if length and len(body) >= length[0]:
                        break
        except TimeoutError:
            pass
    return answer


@pytest.mark.slow
def test_a_real_server_never_redirects_and_always_secures(
    store: Store, config: Config, people: dict[str, int]
) -> None:
    jo = token(store, people["jo@corp.test"])
    with support.serving(create_app(store, config, SECRET.encode())) as port:
        answers = {
            "slash": raw(port, f"GET /u/{jo}/ HTTP/1.1\r\nHost: evil.test\r\n\r\n".encode()),
            "404": raw(port, b"GET /nowhere/ HTTP/1.1\r\nHost: evil.test\r\n\r\n"),
            "413": raw(
                port,
                f"POST /u/{jo}/ HTTP/1.1\r\nHost: evil.test\r\nContent-Length: 99999999\r\n\r\n".encode(),
            ),
            "400": raw(
                port, b"GET /healthz HTTP/1.1\r\nHost: evil.test\r\nContent-Length: x\r\n\r\n"
            ),
            "400 garbage": raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
        }
    want = {"slash": 200, "404": 404, "413": 413, "400": 400, "400 garbage": 400}
    for name, answer in answers.items():
        head = answer.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
        assert head.startswith(f"http/1.1 {want[name]} "), (name, head)
        assert "location:" not in head and "evil.test" not in answer.decode("latin-1"), name
        for header, value in HEADERS.items():
            assert f"{header.lower()}: {value.lower()}" in head, (name, header)
    assert status_of(store, "jo@corp.test") == "active"
