"""The unsubscribe and confirmation pages: every route and every bad token shape with
Starlette's test client, then a real browser clicking a link from a delivered message."""

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

import httpx
import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer, free_port
from sqlalchemy import select
from starlette.testclient import TestClient

from digest_mailer import subscribers as subs
from digest_mailer.config import load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions as rq
from digest_mailer.models import Confirmation, Event, Subscriber, utcnow
from digest_mailer.tokens import make_token
from digest_mailer.web import create_app, mask


@pytest.fixture
def config(tmp_path: Path, database_url: str):  # type: ignore[no-untyped-def]
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@pytest.fixture
def people(store: Store) -> dict[str, int]:
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["jo@corp.test", "kai@corp.test"], allow_test_domains=True)
        return {p.email: p.id for p in subs.list_subscribers(session)}


@pytest.fixture
def client(store: Store, config) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(create_app(store, config, SECRET.encode()))


def token(
    store: Store, subscriber_id: int, purpose: str = "unsubscribe", secret: str = SECRET
) -> str:
    """The link the send puts in the subscriber's messages: signed with its link_salt."""
    with store.Session() as session:
        person = session.get(Subscriber, subscriber_id)
        salt = person.link_salt if person is not None else ""
    return make_token(secret.encode(), purpose, subscriber_id, salt)


def undo_of(page: str) -> str:
    """The undo token of the Resubscribe button on an "unsubscribed" page."""
    return re.search(r'name="undo" value="([^"]+)"', page).group(1)


def status_of(store: Store, address: str) -> str:
    with store.Session() as session:
        return subs.get_subscriber(session, address).status


def test_get_shows_the_masked_address_and_changes_nothing(
    client: TestClient, store: Store, people: dict[str, int]
) -> None:
    page = client.get(f"/u/{token(store, people['jo@corp.test'])}")
    assert page.status_code == 200
    assert "j***@corp.test" in page.text and "jo@corp.test" not in page.text
    assert "Transit Policy Weekly" in page.text and 'lang="en"' in page.text
    assert '<button type="submit">Unsubscribe</button>' in page.text
    for _ in range(3):  # link scanners fetch it again and again
        client.get(f"/u/{token(store, people['jo@corp.test'])}")
    assert status_of(store, "jo@corp.test") == "active"
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" not in page.text and "http" not in page.text.replace('href="/web.css"', "")


def test_post_unsubscribes_then_resubscribe_undoes_it(
    client: TestClient, store: Store, people: dict[str, int]
) -> None:
    url = f"/u/{token(store, people['jo@corp.test'])}"
    done = client.post(url, data={"action": "unsubscribe"})
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    assert 'value="resubscribe"' in done.text
    assert status_of(store, "jo@corp.test") == "unsubscribed"
    again = client.post(url, data={"action": "unsubscribe"})  # harmless: a double click
    assert again.status_code == 200 and undo_of(again.text) == undo_of(done.text)
    back = client.post(url, data={"action": "resubscribe", "undo": undo_of(done.text)})
    assert "Welcome back" in back.text and status_of(store, "jo@corp.test") == "active"
    with store.Session() as session:
        person = subs.get_subscriber(session, "jo@corp.test")
        events = [(e.new_status, e.actor, e.detail) for e in person.events][1:]
    assert events == [
        ("unsubscribed", "web", "unsubscribe page"),
        ("active", "web", "resubscribed from the unsubscribe page"),
    ]
    assert status_of(store, "kai@corp.test") == "active"


def test_rfc8058_one_click_post_from_anywhere(
    client: TestClient, store: Store, people: dict[str, int]
) -> None:
    url = f"/u/{token(store, people['kai@corp.test'])}"
    reply = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Origin": "https://mail.provider.test",
            "Cookie": "session=unrelated",
        },
        follow_redirects=False,
    )
    assert reply.status_code == 200 and reply.text == "Unsubscribed.\n"
    assert status_of(store, "kai@corp.test") == "unsubscribed"
    again = client.post(
        url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 200
    with store.Session() as session:
        details = session.scalars(select(Event.detail).where(Event.new_status == "unsubscribed"))
        assert list(details) == ["one-click unsubscribe (RFC 8058)"]


def test_every_bad_token_gets_the_same_404(
    client: TestClient, store: Store, people: dict[str, int]
) -> None:
    good = token(store, people["jo@corp.test"])
    head, sig = good.split("-", 1)
    bad = [
        good[:-3],  # truncated
        head + "-" + ("A" if sig[0] != "A" else "B") + sig[1:],  # altered
        token(store, 999),  # a valid signature for nobody
        token(store, people["jo@corp.test"], purpose="confirm"),  # another purpose
        token(store, people["jo@corp.test"], secret="another-secret-0123456789abcdef"),
        "garbage",
        "%00%ff",
        "x" * 5000,  # very long
        base64.urlsafe_b64encode(os.urandom(30)).decode(),
    ]
    reference = client.get("/u/nothing")
    assert reference.status_code == 404
    for value in bad:
        for method in ("get", "post"):
            reply = getattr(client, method)(f"/u/{value}")
            assert reply.status_code == 404, value
            assert reply.text == reference.text
    # another subscriber's token acts on that subscriber only, never on jo
    client.post(f"/u/{token(store, people['kai@corp.test'])}", data={"action": "unsubscribe"})
    assert status_of(store, "jo@corp.test") == "active"
    assert client.get("/nowhere").status_code == 404
    assert client.put(f"/u/{good}").status_code == 404


def test_confirmation_pages(client: TestClient, store: Store, config) -> None:  # type: ignore[no-untyped-def]
    now = utcnow()
    ctx = rq.InboxContext(config, now=now)
    with store.Session.begin() as session:
        rq.start_subscription(session, ctx, "new@corp.test", "", None, None)
        person = subs.get_subscriber(session, "new@corp.test")
        fresh, old = "ab" * 16, "cd" * 16
        session.add(
            Confirmation(
                subscriber_id=person.id,
                token_hash=rq.token_hash(fresh),
                expires_at=now + timedelta(days=7),
            )
        )
        session.add(
            Confirmation(
                subscriber_id=person.id,
                token_hash=rq.token_hash(old),
                expires_at=now - timedelta(days=1),
            )
        )
    page = client.get(f"/c/{fresh}")
    assert page.status_code == 200 and "n***@corp.test" in page.text
    assert status_of(store, "new@corp.test") == "pending"  # GET changes nothing
    expired = client.post(f"/c/{old}")
    assert expired.status_code == 410 and "write to" in expired.text
    assert status_of(store, "new@corp.test") == "pending"
    # one canonical form: an upper-cased token is no token (it used to say "You are
    # subscribed" while nothing changed)
    assert client.get(f"/c/{fresh.upper()}").status_code == 404
    assert client.post(f"/c/{fresh.upper()}").status_code == 404
    assert status_of(store, "new@corp.test") == "pending"
    done = client.post(f"/c/{fresh}")
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert status_of(store, "new@corp.test") == "active"
    assert "Already confirmed" in client.post(f"/c/{fresh}").text
    for value in ("ef" * 16, "zz", "ab" * 17):
        assert client.get(f"/c/{value}").status_code == 404
        assert client.post(f"/c/{value}").status_code == 404


def test_healthz_and_stylesheet(client: TestClient) -> None:
    assert client.get("/healthz").text == "ok\n"
    css = client.get("/web.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_mask() -> None:
    assert mask("jane.doe@corp.test") == "j***@corp.test"


# --------------------------------------------------------------------------- real browser


@pytest.mark.slow
def test_browser_unsubscribes_from_a_delivered_message(
    tmp_path: Path, database_url: str, browser, artifacts: Path, send_env
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server = SMTPServer().start()
    try:
        config = write_config(
            tmp_path / "config.toml",
            database_url,
            NEWSLETTER.replace("https://digest.transit-lab.test", f"http://127.0.0.1:{port}")
            + smtp_section(server.port),
        )
        cli = Cli(config)
        cli.ok("init")
        cli.ok("subscribers", "add", "reader@corp.test", "other@corp.test")
        issue = tmp_path / "vol-3.1.txt"
        shutil.copy(DATA / "issues" / "digest-vol-3.1.txt", issue)
        cli.ok("send", str(issue), "--yes", "--skip-test")
        delivered = next(r for r in server.handler.received if r.rcpt == "reader@corp.test")
    finally:
        server.stop()
    message = message_from_bytes(delivered.data, policy=policy.default)
    link = re.search(r"<(https?://[^>]+)>", str(message["List-Unsubscribe"])).group(1)
    assert link.startswith(f"http://127.0.0.1:{port}/u/")
    env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
    web = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest_mailer",
            "--config",
            str(config),
            "serve",
            "--port",
            str(port),
        ],
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and web.poll() is None, "serve did not start"
            time.sleep(0.1)
        page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
        page.goto(link)
        assert "r***@corp.test" in page.content()
        page.get_by_role("button", name="Unsubscribe").click()
        page.wait_for_selector("text=You are unsubscribed")
        page.screenshot(path=str(artifacts / "unsubscribed-page.png"), full_page=True)
        page.close()
        listed = json.loads(cli.ok("subscribers", "list", "--json").stdout)
        people = {p["email"]: p["status"] for p in listed}
        assert people == {"reader@corp.test": "unsubscribed", "other@corp.test": "active"}
    finally:
        web.send_signal(signal.SIGINT)
        web.wait(timeout=10)


def test_healthz_says_503_without_a_usable_store(tmp_path: Path, config) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer import db

    gone = db.open_store(f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}", check=False)
    try:
        reply = TestClient(create_app(gone, config, SECRET.encode())).get("/healthz")
        assert reply.status_code == 503 and reply.text == "database unreachable\n"
    finally:
        gone.dispose()
