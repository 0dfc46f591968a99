"""The public signup form (``/subscribe``, digest_mailer/web/signup.py) with Starlette's
test client, on SQLite and PostgreSQL: double opt-in through the outbox, one answer page
whatever the address's state, the bot defences (honeypot, signed form time, limits per
client and per target), the form posted from another website, internationalised and
hostile input, and a property test over arbitrary bodies."""

import itertools
import re
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from conftest import NEWSLETTER, SECRET, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from starlette.testclient import TestClient

from digest_mailer import subscribers as subs
from digest_mailer.addresses import address_key, wire_address
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.models import Confirmation, Event, Reply, Subscriber, utcnow
from digest_mailer.web import HEADERS, MAX_BODY, create_app
from digest_mailer.web.signup import (
    CLIENT_LIMIT,
    CLIENT_WINDOW,
    FORM_MAX_AGE,
    FORM_MIN_AGE,
    TARGET_LIMIT,
    TARGET_WINDOW,
    RateLimiter,
    SignupContext,
    client_key,
    form_token,
    start_web_subscription,
)

SENT = "Check your inbox"
BAD_ADDRESS = "Enter a valid email address, such as name@example.org."


class Clock:
    """The app's clock, moved by the tests: no sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):  # type: ignore[no-untyped-def]
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def config(tmp_path: Path, database_url: str) -> Config:
    return load_config(write_config(tmp_path / "config.toml", database_url, NEWSLETTER))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(store: Store, config: Config, clock: Clock):  # type: ignore[no-untyped-def]
    return create_app(store, config, SECRET.encode(), clock=clock)


_HOSTS = itertools.count(1)


def visitor(app, host: str | None = None) -> TestClient:  # type: ignore[no-untyped-def]
    """A client; each from an address of its own unless ``host`` is given, so the
    per-client limit is tested only where meant."""
    if host is None:
        n = next(_HOSTS)
        host = f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"
    return TestClient(app, client=(host, 50000))


def token_of(page: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def subscribe(app, clock: Clock, email: str, name: str = "", **fields: str):  # type: ignore[no-untyped-def]
    """What a person does: open the form, fill it in (3 s), send it."""
    client = visitor(app)
    form = client.get("/subscribe")
    assert form.status_code == 200
    clock.advance(seconds=3)
    data = {"email": email, "name": name, "token": token_of(form.text), "comment": "", **fields}
    return client.post("/subscribe", data=data)


def person(store: Store, address: str) -> Subscriber | None:
    with store.Session() as session:
        found = subs.find_subscriber(session, address)
        if found is not None:
            session.expunge(found)
        return found


def effects(store: Store, address: str) -> tuple[str | None, int, int, int]:
    """(status, confirmations, replies, events) of ``address`` in the database."""
    with store.Session() as session:
        found = subs.find_subscriber(session, address)
        replies = session.scalar(
            select(func.count(Reply.id)).where(Reply.address_key == address_key(address))
        )
        if found is None:
            return None, 0, replies, 0
        confirmations = session.scalar(
            select(func.count(Confirmation.id)).where(Confirmation.subscriber_id == found.id)
        )
        events = session.scalar(select(func.count(Event.id)).where(Event.subscriber_id == found.id))
        return found.status, confirmations, replies, events


def everyone(store: Store) -> dict[str, tuple[str, str]]:
    with store.Session() as session:
        return {p.email: (p.status, p.source) for p in session.scalars(select(Subscriber))}


def confirm_link(store: Store, address: str) -> str:
    """The /c/ link of the newest confirmation queued for ``address``, read from the mail."""
    with store.Session() as session:
        data = session.scalars(
            select(Reply.data)
            .where(Reply.address_key == address_key(address), Reply.kind == "confirm")
            .order_by(Reply.id.desc())
        ).first()
    assert data is not None
    text = message_from_bytes(data, policy=policy.default).get_body(("plain",)).get_content()
    return re.search(r"https://digest\.transit-lab\.test(/c/[0-9a-f]{32})", text).group(1)


def add_active(store: Store, address: str, name: str = "") -> None:
    with store.Session.begin() as session:
        subs.add_subscribers(session, [address], allow_test_domains=True)
        if name:
            subs.find_subscriber(session, address).name = name


def set_state(store: Store, address: str, status: str) -> None:
    with store.Session.begin() as session:
        subs.set_status(session, subs.find_subscriber(session, address), status, actor="test")


# --------------------------------------------------------------------------- the form


def test_the_form_is_accessible_without_scripts_or_inline_styles(app) -> None:  # type: ignore[no-untyped-def]
    page = visitor(app).get("/subscribe")
    assert page.status_code == 200
    for name, value in HEADERS.items():  # the strict CSP and the rest, unchanged
        assert page.headers[name] == value
    html = page.text
    assert "<script" not in html and "style=" not in html and "<style" not in html
    assert '<form method="post" action="/subscribe"' in html
    # every visible input has a label bound to it, and says what it is for
    for field, purpose in (("email", "email"), ("name", "name")):
        assert f'<label for="{field}">' in html
        assert re.search(
            rf'<input [^>]*id="{field}" name="{field}"[^>]*autocomplete="{purpose}"', html
        )
    assert re.search(r'<input [^>]*id="email"[^>]*required', html)
    # the honeypot: hidden by a class, skipped by screen readers and the keyboard
    hp = re.search(r'<div class="signup-hp" aria-hidden="true">.*?</div>', html, re.S).group(0)
    assert 'name="comment"' in hp and 'tabindex="-1"' in hp and 'autocomplete="off"' in hp
    css = visitor(app).get("/web.css").text
    assert re.search(r"\.signup-hp \{[^}]*left: -10000px", css)
    assert re.search(r"\.signup-field input:focus \{ outline: 3px", css)  # visible focus
    assert "Error" not in html and "aria-invalid" not in html


def test_a_post_makes_a_pending_subscriber_and_queues_a_confirmation(
    app, store: Store, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    reply = subscribe(app, clock, "ana@corp.test", "Ana Lima")
    assert reply.status_code == 200 and SENT in reply.text
    ana = person(store, "ana@corp.test")
    assert (ana.status, ana.source, ana.name) == ("pending", "web", "Ana Lima")
    assert effects(store, "ana@corp.test") == ("pending", 1, 1, 1)
    with store.Session() as session:
        event = session.scalars(select(Event).where(Event.subscriber_id == ana.id)).one()
        queued = session.scalars(select(Reply)).one()
    assert (event.actor, event.new_status) == ("web", "pending")
    assert "signup form" in event.detail
    assert (queued.kind, queued.state, queued.address) == ("confirm", "queued", "ana@corp.test")
    assert queued.subject.startswith("Confirm your subscription [token: ")
    mail = message_from_bytes(queued.data, policy=policy.default)
    assert mail["To"] == "ana@corp.test"  # never the name someone typed
    assert confirm_link(store, "ana@corp.test").startswith("/c/")


def test_the_confirmation_link_then_activates(app, store: Store, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    subscribe(app, clock, "bo@corp.test")
    link = confirm_link(store, "bo@corp.test")
    client = visitor(app)
    page = client.get(link)
    assert page.status_code == 200 and "b***@corp.test" in page.text
    assert person(store, "bo@corp.test").status == "pending"  # a GET changes nothing
    done = client.post(link)
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert person(store, "bo@corp.test").status == "active"


def test_one_answer_whatever_the_address_and_only_proof_changes_anybody(
    app, store: Store, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    subscribe(app, clock, "pend@corp.test")  # pending, its confirmation two hours ago
    clock.advance(hours=2)
    add_active(store, "act@corp.test", name="Act Person")
    for address, status in (
        ("left@corp.test", "unsubscribed"),
        ("gone@corp.test", "bounced"),
        ("angry@corp.test", "complained"),
    ):
        add_active(store, address)
        set_state(store, address, status)
    for _ in range(TARGET_LIMIT):  # the per-target limit, reached over three hours
        assert subscribe(app, clock, "lim@corp.test").status_code == 200
        clock.advance(minutes=61)
    names = ("pend", "act", "left", "gone", "angry", "lim")
    before = {a: effects(store, f"{a}@corp.test") for a in names}

    answers = {
        "new": subscribe(app, clock, "new@corp.test", "New Person"),
        "pending": subscribe(app, clock, "pend@corp.test"),
        "active": subscribe(app, clock, "act@corp.test", "Mallory"),
        "unsubscribed": subscribe(app, clock, "left@corp.test"),
        "bounced": subscribe(app, clock, "gone@corp.test"),
        "complained": subscribe(app, clock, "angry@corp.test"),
        "limited": subscribe(app, clock, "lim@corp.test"),
        "honeypot": subscribe(app, clock, "pot@corp.test", comment="https://spam.test"),
    }
    first = answers["new"]
    assert first.status_code == 200 and SENT in first.text
    for state, answer in answers.items():
        assert answer.status_code == 200, state
        assert answer.content == first.content, state
        assert answer.headers == first.headers, state

    assert effects(store, "new@corp.test") == ("pending", 1, 1, 1)
    # pending: one more confirmation, nothing else
    assert effects(store, "pend@corp.test") == ("pending", 2, 2, 1)
    # active: untouched (no event, no mail, the name kept)
    assert effects(store, "act@corp.test") == before["act"]
    assert person(store, "act@corp.test").name == "Act Person"
    # unsubscribed: still unsubscribed; a request noted and a confirmation sent
    status, confirmations, replies, events = effects(store, "left@corp.test")
    assert (status, confirmations, replies) == ("unsubscribed", 1, 1)
    assert events == before["left"][3] + 1
    # bounced, complained: no mail at all, the request noted for staff
    for address, state in (("gone@corp.test", "bounced"), ("angry@corp.test", "complained")):
        status, confirmations, replies, events = effects(store, address)
        assert (status, confirmations, replies) == (state, 0, 0)
        assert events == before[address.split("@")[0]][3] + 1
    # over the per-target limit and the honeypot: nothing at all
    assert effects(store, "lim@corp.test") == before["lim"]
    assert effects(store, "pot@corp.test") == (None, 0, 0, 0)
    assert {s for s, _ in everyone(store).values()} <= {
        "pending", "active", "unsubscribed", "bounced", "complained",
    }  # fmt: skip
    assert everyone(store)["act@corp.test"] == ("active", "cli")


def test_an_unsubscribed_reader_comes_back_only_through_the_link(
    app, store: Store, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    add_active(store, "left@corp.test")
    set_state(store, "left@corp.test", "unsubscribed")
    for _ in range(3):  # posting again and again changes no status
        assert subscribe(app, clock, "left@corp.test").status_code == 200
        clock.advance(minutes=61)
        assert person(store, "left@corp.test").status == "unsubscribed"
    visitor(app).post(confirm_link(store, "left@corp.test"))
    assert person(store, "left@corp.test").status == "active"


def test_the_web_path_does_what_an_emailed_request_does(
    store: Store, config: Config, clock: Clock
) -> None:
    """Drift guard: the form's double opt-in (which may not import the send engine) and
    the one for a request by email give the same state, confirmations and mail."""
    from digest_mailer.composer import template_environment
    from digest_mailer.inbox.actions import InboxContext, start_subscription

    env = template_environment(config)
    results = {}
    for state in ("new", "pending", "active", "unsubscribed"):
        for way in ("email", "web"):
            address = f"{way}-{state}@corp.test"
            if state == "pending":
                with store.Session.begin() as session:
                    ctx = SignupContext(config, env, clock.now - timedelta(hours=2))
                    start_web_subscription(session, ctx, address, "")
            elif state != "new":
                add_active(store, address)
                if state == "unsubscribed":
                    set_state(store, address, state)
            with store.Session.begin() as session:
                if way == "email":
                    start_subscription(
                        session, InboxContext(config, now=clock.now), address, "", None, None
                    )
                else:
                    start_web_subscription(
                        session, SignupContext(config, env, clock.now), address, ""
                    )
            results[way, state] = effects(store, address)[:3]
    for state in ("new", "pending", "active", "unsubscribed"):
        assert results["web", state] == results["email", state], state


# --------------------------------------------------------------------------- bot defences


def test_a_filled_honeypot_looks_like_success_and_does_nothing(
    app, store: Store, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    for value in ("x", "https://spam.test", " \u00a0junk"):
        reply = subscribe(app, clock, "bot@corp.test", comment=value)
        assert reply.status_code == 200 and SENT in reply.text
    assert everyone(store) == {}
    assert effects(store, "bot@corp.test") == (None, 0, 0, 0)


def test_too_fast_and_too_old_get_the_form_again_with_a_fresh_token(
    app, store: Store, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    client = visitor(app)
    served = token_of(client.get("/subscribe").text)
    data = {"email": "fast@corp.test", "name": "Fast", "token": served}
    clock.advance(seconds=1)
    fast = client.post("/subscribe", data=data)
    assert fast.status_code == 400 and "quicker than a person" in fast.text
    assert 'role="alert"' in fast.text and "<title>Error:" in fast.text
    assert 'value="fast@corp.test"' in fast.text and 'value="Fast"' in fast.text
    fresh = token_of(fast.text)
    assert fresh != served
    clock.advance(seconds=FORM_MAX_AGE.total_seconds())  # the first token is a day old now
    old = client.post("/subscribe", data=data)
    assert old.status_code == 400 and "more than a day ago" in old.text
    assert everyone(store) == {}
    exactly = form_token(SECRET.encode(), clock.now - FORM_MIN_AGE)  # served 2 s ago
    ok = client.post("/subscribe", data={**data, "token": exactly})
    assert ok.status_code == 200 and SENT in ok.text
    assert effects(store, "fast@corp.test")[0] == "pending"


def test_a_forged_or_altered_token_is_refused(
    app, store: Store, config: Config, clock: Clock
) -> None:  # type: ignore[no-untyped-def]
    good = form_token(SECRET.encode(), clock.now - timedelta(minutes=5))
    stamp, signature = good.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    earlier = f"{int(stamp, 16) - 1000:x}"
    bad = [
        f"{stamp}.{flipped}",  # altered signature
        f"{earlier}.{signature}",  # altered time (an older form, to pass the 2 s)
        form_token(b"another-secret-0123456789abcdefghijkl", clock.now - timedelta(minutes=5)),
        good.upper(),
        f"0{good}",  # not the canonical form
        good + ".",
        f" {good}",
        good[:-1],
        "x" * 5000,
        "\x00",
        "1.AAAAAAAAAAAAAAAAAAAAAAAA",
    ]
    for token in bad:
        reply = visitor(app).post("/subscribe", data={"email": "forged@corp.test", "token": token})
        assert reply.status_code == 400, token
        assert "could not be checked" in reply.text, token
        assert token_of(reply.text) != token
    assert everyone(store) == {}
    # a token signed with a secret still listed for rotation is honoured
    rotated = create_app(
        store, config, f"new-secret-0123456789abcdefghijklmn {SECRET}".encode(),
        clock=clock,
    )  # fmt: skip
    reply = visitor(rotated).post("/subscribe", data={"email": "forged@corp.test", "token": good})
    assert reply.status_code == 200 and effects(store, "forged@corp.test")[0] == "pending"


def test_a_form_from_another_website_gets_ours_prefilled(app, store: Store, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    """The form pasted on the think-tank's site carries no signed token: its POST is
    answered with our form, pre-filled, one press away; only that press acts."""
    client = visitor(app)
    foreign = {"Origin": "https://www.think-tank.test", "Sec-Fetch-Site": "cross-site"}
    first = client.post(
        "/subscribe", data={"email": "web@corp.test", "name": "Wen Li"}, headers=foreign
    )
    assert first.status_code == 200 and "One more step" in first.text
    assert 'value="web@corp.test"' in first.text and 'value="Wen Li"' in first.text
    assert "Error" not in first.text
    assert everyone(store) == {}
    # a token taken from our page and posted by a page elsewhere counts for nothing
    token = token_of(first.text)
    clock.advance(seconds=5)
    again = client.post(
        "/subscribe", data={"email": "web@corp.test", "token": token}, headers=foreign
    )
    assert again.status_code == 200 and "One more step" in again.text
    assert everyone(store) == {}
    # the person presses Subscribe on our page
    done = client.post(
        "/subscribe",
        data={"email": "web@corp.test", "name": "Wen Li", "token": token, "comment": ""},
        headers={"Origin": "null", "Sec-Fetch-Site": "same-origin"},
    )
    assert done.status_code == 200 and SENT in done.text
    assert person(store, "web@corp.test").name == "Wen Li"
    assert effects(store, "web@corp.test")[:3] == ("pending", 1, 1)
    # no token and a bad address: our form, with the message
    bad = client.post("/subscribe", data={"email": "web@"}, headers=foreign)
    assert bad.status_code == 400 and BAD_ADDRESS in bad.text and "One more step" in bad.text


def test_the_per_client_limit(app, store: Store, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    client = visitor(app, "198.51.100.7")
    for _ in range(CLIENT_LIMIT):
        assert client.post("/subscribe", data={"email": "a@corp.test"}).status_code == 200
    limited = client.post("/subscribe", data={"email": "a@corp.test"})
    assert limited.status_code == 429 and "Too many requests" in limited.text
    assert limited.headers["retry-after"] == str(int(CLIENT_WINDOW.total_seconds()))
    assert limited.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    # a valid form from that client is refused too, and nothing happens
    form = visitor(app, "198.51.100.7").get("/subscribe")
    clock.advance(seconds=3)
    refused = client.post("/subscribe", data={"email": "b@corp.test", "token": token_of(form.text)})
    assert refused.status_code == 429 and everyone(store) == {}
    # others are not limited; one IPv6 /64 is one client
    some = {"email": "a@corp.test"}
    assert visitor(app, "198.51.100.8").post("/subscribe", data=some).status_code == 200
    six = [visitor(app, f"2001:db8:1:2::{n:x}") for n in range(1, CLIENT_LIMIT + 2)]
    codes = [c.post("/subscribe", data=some).status_code for c in six]
    assert codes == [200] * CLIENT_LIMIT + [429]
    assert visitor(app, "2001:db8:1:3::1").post("/subscribe", data=some).status_code == 200
    clock.advance(seconds=CLIENT_WINDOW.total_seconds())  # a new window
    assert client.post("/subscribe", data=some).status_code == 200


def test_the_per_target_limit(app, store: Store, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    for n in range(TARGET_LIMIT):  # +tag variants are one mailbox
        address = "tara@corp.test" if n == 0 else f"tara+{n}@corp.test"
        assert subscribe(app, clock, address).status_code == 200
        clock.advance(minutes=61)  # past the outbox's one mail an hour
    with store.Session() as session:
        assert session.scalar(select(func.count(Confirmation.id))) == TARGET_LIMIT
    over = subscribe(app, clock, "TARA@corp.test")
    assert over.status_code == 200 and SENT in over.text
    assert effects(store, "tara@corp.test")[:2] == ("pending", 1)
    with store.Session() as session:
        assert session.scalar(select(func.count(Confirmation.id))) == TARGET_LIMIT
    clock.advance(seconds=TARGET_WINDOW.total_seconds())
    subscribe(app, clock, "tara@corp.test")
    assert effects(store, "tara@corp.test")[:2] == ("pending", 2)


def test_rate_limiter_memory_is_bounded_and_keys() -> None:
    now = utcnow()
    limiter = RateLimiter(2, timedelta(minutes=1), capacity=100)
    for n in range(5000):
        assert limiter.hit(f"k{n}", now)
    assert len(limiter) == 100
    assert limiter.hit("k4999", now) and not limiter.hit("k4999", now)
    assert limiter.retry_after("k4999", now) == timedelta(minutes=1)
    assert limiter.hit("k4999", now + timedelta(minutes=1))
    assert client_key("2001:db8::1") == client_key("2001:db8::ffff") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("192.0.2.1") == "192.0.2.1" and client_key("") == ""


# --------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    "entered",
    ["", "   ", "ana@", "ana", "ana@corp", "a b@corp.test", "ana@@corp.test", "ana@-corp-.test",
     '"><script>alert(1)</script>', "ana@corp.test\x00", "a" * 400 + "@corp.test",
     "ana@exa mple.test", "ana@xn--zz.test"],
)  # fmt: skip
def test_a_bad_address_gets_the_form_with_one_message(
    app, store: Store, clock: Clock, entered: str
) -> None:  # type: ignore[no-untyped-def]
    reply = subscribe(app, clock, entered, "Ana <b>Lima</b>")
    assert reply.status_code == 400
    html = reply.text
    assert html.count('class="signup-error"') == 1 and "signup-alert" not in html
    assert 'aria-invalid="true" aria-describedby="email-error"' in html
    assert '<p class="signup-error" id="email-error">' in html
    assert "<title>Error: Subscribe" in html
    assert "<script" not in html and "<b>" not in html
    assert 'value="Ana &lt;b&gt;Lima&lt;/b&gt;"' in html  # the values kept, escaped
    expected = "Enter your email address." if not entered.strip() else BAD_ADDRESS
    assert expected in html
    if entered.strip() and "\x00" not in entered and len(entered) < 400:
        assert "value=" in html and (
            entered.replace('"', "&#34;").replace("<", "&lt;").replace(">", "&gt;") in html
        )
    assert everyone(store) == {}


@pytest.mark.parametrize(
    "address",
    ["δοκιμή@παράδειγμα.δοκιμή", "user@bücher.test", "用户@例子.广告", "Pelé@exemple.test"],
)
def test_internationalised_addresses(app, store: Store, clock: Clock, address: str) -> None:  # type: ignore[no-untyped-def]
    reply = subscribe(app, clock, address, "Ünïcödé Näme")
    assert reply.status_code == 200 and SENT in reply.text
    stored = person(store, address)
    assert stored is not None and stored.status == "pending" and stored.name == "Ünïcödé Näme"
    with store.Session() as session:
        data = session.scalars(select(Reply.data)).one()
    # the domain as A-labels; a non-ASCII local part raw (SMTPUTF8)
    assert f"\r\nTo: {wire_address(address).text}\r\n".encode() in data
    assert visitor(app).post(confirm_link(store, address)).status_code == 200
    assert person(store, address).status == "active"


def test_an_ascii_domain_form_is_the_same_subscriber(app, store: Store, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    subscribe(app, clock, "user@bücher.test")
    clock.advance(minutes=61)
    subscribe(app, clock, "USER@xn--bcher-kva.test")
    assert list(everyone(store)) == ["user@bücher.test"]
    assert effects(store, "user@bücher.test")[:2] == ("pending", 2)


def test_nul_bytes_huge_fields_and_odd_bodies_never_crash(app, store: Store, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    client = visitor(app)
    token = form_token(SECRET.encode(), clock.now - timedelta(seconds=5))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    # NUL in the address: a bad address; NUL and control characters in the name: dropped
    nul = client.post("/subscribe", content=f"email=a%00b%40corp.test&token={token}", headers=form)
    assert nul.status_code == 400 and BAD_ADDRESS in nul.text
    raw = client.post(
        "/subscribe", content=b"email=nul@corp.test&name=Ana\x00\x01%00Lima&token=" + token.encode(),
        headers=form,
    )  # fmt: skip
    assert raw.status_code == 200
    assert person(store, "nul@corp.test").name == "Ana Lima"
    # a name of 14 KB: kept to 200 characters
    long = client.post(
        "/subscribe", data={"email": "long@corp.test", "name": "N" * 14_000, "token": token}
    )
    assert long.status_code == 200 and person(store, "long@corp.test").name == "N" * 200
    # over the guard's body cap: 413, unread, nothing done
    huge = client.post(
        "/subscribe", data={"email": "huge@corp.test", "name": "x" * MAX_BODY, "token": token}
    )
    assert huge.status_code == 413 and person(store, "huge@corp.test") is None
    # a body of many fields is not our form
    many = client.post("/subscribe", content="&".join(f"f{n}=1" for n in range(500)), headers=form)
    assert many.status_code == 400 and "could not be read" in many.text
    # bytes that are not UTF-8, a multipart body, no body at all
    for body, kind in (
        (b"email=\xff\xfe%ff@corp.test&token=" + token.encode(), form["Content-Type"]),
        (b"--x\r\nContent-Disposition: form-data; name=email\r\n\r\na@corp.test\r\n--x--\r\n",
         "multipart/form-data; boundary=x"),
        (b"", "text/plain"),
    ):  # fmt: skip
        reply = client.post("/subscribe", content=body, headers={"Content-Type": kind})
        assert reply.status_code in (200, 400), body
    assert set(everyone(store)) == {"nul@corp.test", "long@corp.test"}


# --------------------------------------------------------------------------- property

FIELD = st.sampled_from(["email", "name", "token", "comment", "Email", "email[]", ""])
ADDRESS = st.one_of(
    st.emails(),
    st.sampled_from(
        ["δοκιμή@παράδειγμα.δοκιμή", "user@bücher.test", "seeded-active@corp.test",
         "seeded-left@corp.test", "SEEDED-ACTIVE@corp.test", "seeded-left+x@corp.test",
         "a@b", "@", "x@xn--.test", "\x00@corp.test"]
    ),
    st.text(max_size=60),
)  # fmt: skip
VALUE = st.one_of(ADDRESS, st.text(max_size=200), st.just(""))
ENCODINGS = st.sampled_from(["utf-8", "latin-1", "utf-16", "shift_jis", "cp1252", "ascii"])
CONTENT_TYPES = st.sampled_from(
    ["application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=latin-1",
     "multipart/form-data; boundary=zz", "text/plain", "application/json"]
)  # fmt: skip


@st.composite
def bodies(draw, valid_token: str) -> bytes:  # type: ignore[no-untyped-def]
    kind = draw(st.sampled_from(["bytes", "encoded", "raw", "ours", "ours"]))
    if kind == "bytes":
        return draw(st.binary(max_size=3000))
    fields = draw(st.lists(st.tuples(FIELD, VALUE), max_size=8))
    if kind == "ours":  # our form, filled in oddly (the first value of a field counts)
        token = draw(st.sampled_from([valid_token, valid_token, valid_token, "", "0.x"]))
        fields[:0] = [("email", draw(ADDRESS)), ("token", token), ("comment", "")]
        kind = "encoded"
    encoding = draw(ENCODINGS)
    if kind == "encoded":
        pairs = (
            f"{quote_plus(k, encoding=encoding, errors='replace')}="
            f"{quote_plus(v, encoding=encoding, errors='replace')}"
            for k, v in fields
        )
        return "&".join(pairs).encode("ascii")
    return "&".join(f"{k}={v}" for k, v in fields).encode(encoding, "replace")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_body_gives_a_500_or_anything_but_a_pending_subscriber(
    store: Store, config: Config, data
) -> None:  # type: ignore[no-untyped-def]
    with store.Session.begin() as session:
        if subs.find_subscriber(session, "seeded-active@corp.test") is None:
            subs.add_subscribers(
                session, ["seeded-active@corp.test", "seeded-left@corp.test"],
                allow_test_domains=True,
            )  # fmt: skip
            left = subs.find_subscriber(session, "seeded-left@corp.test")
            subs.set_status(session, left, "unsubscribed", actor="test")
    clock = Clock()
    app = create_app(store, config, SECRET.encode(), clock=clock)  # fresh limits
    body = data.draw(bodies(form_token(SECRET.encode(), clock.now - timedelta(seconds=30))))
    headers = {"Content-Type": data.draw(CONTENT_TYPES)}
    if data.draw(st.booleans()):
        headers["Sec-Fetch-Site"] = data.draw(
            st.sampled_from(["cross-site", "same-origin", "none"])
        )
    reply = visitor(app).post("/subscribe", content=body, headers=headers)
    assert reply.status_code in (200, 400, 413), reply.status_code
    assert reply.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    people = everyone(store)
    assert people.pop("seeded-active@corp.test") == ("active", "cli")
    assert people.pop("seeded-left@corp.test") == ("unsubscribed", "cli")
    assert all(state == ("pending", "web") for state in people.values()), people


# --------------------------------------------------------------------------- real browser

AXE = Path(__file__).parent / "node" / "node_modules" / "axe-core" / "axe.min.js"
WCAG_AA = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
README = Path(__file__).parent.parent / "README.md"


def readme_form(base: str) -> str:
    """The form README.md says to paste on the think-tank's website, pointed at ``base``."""
    section = README.read_text("utf-8").partition("### Signup form on your website")[2]
    html = re.search(r"^```html\n(.*?)^```", section, re.S | re.M).group(1)
    assert 'action="https://PUBLIC_URL/subscribe"' in html
    return html.replace("https://PUBLIC_URL", base)


@pytest.mark.slow
def test_in_chromium_without_javascript_and_with_axe(
    store: Store, config: Config, clock: Clock, browser, artifacts: Path
) -> None:  # type: ignore[no-untyped-def]
    """The pages in Debian's Chromium: with JavaScript off and the CSP kept, the form
    works (our own and README's form for another website), the honeypot is out of sight
    and out of the tab order; axe-core finds no WCAG 2.1 AA violation on any of them."""
    import httpx
    from support import serving

    app = create_app(store, config, SECRET.encode(), clock=clock)
    csp: list[str] = []

    def watch(page):  # type: ignore[no-untyped-def]
        page.on("console", lambda m: csp.append(m.text) if "Content Security" in m.text else None)
        return page

    def press(page, label: str = "Subscribe") -> None:  # type: ignore[no-untyped-def]
        clock.advance(seconds=3)  # a person takes a moment; the server's clock says so
        page.get_by_role("button", name=label).click()
        page.wait_for_load_state()

    def pages(context, base: str, prefix: str):  # type: ignore[no-untyped-def]
        """Each page of the form, opened in ``context``: (name, page)."""
        page = watch(context.new_page())
        page.goto(base + "/subscribe")
        yield "form", page
        page.get_by_label("Email address").fill(f"{prefix}@")
        press(page)
        assert page.locator("#email-error").count() == 1
        yield "error", page
        page.get_by_label("Email address").fill(f"{prefix}@corp.test")
        page.get_by_label("Name").fill("Zoë Ångström")
        press(page)
        assert page.locator("h1").inner_text() == SENT
        yield "sent", page
        page.set_content(readme_form(base))  # a page elsewhere: README's form
        page.get_by_label("Email address").fill(f"{prefix}-site@corp.test")
        press(page)
        assert page.locator("h1").inner_text().startswith("One more step")
        yield "confirm-step", page
        press(page)
        assert page.locator("h1").inner_text() == SENT
        for _ in range(CLIENT_LIMIT):  # the rest of this client's posts
            httpx.post(base + "/subscribe", data={"email": "x@corp.test"})
        page.goto(base + "/subscribe")
        page.get_by_label("Email address").fill(f"{prefix}-late@corp.test")
        press(page)
        assert page.locator("h1").inner_text() == "Too many requests"
        yield "limited", page
        page.close()

    with serving(app) as port:
        base = f"http://127.0.0.1:{port}"
        plain = browser.new_context(
            java_script_enabled=False, viewport={"width": 390, "height": 844}
        )
        plain.set_default_timeout(5000)
        for name, page in pages(plain, base, "plain"):
            if name == "form":
                assert page.locator("#comment").bounding_box()["x"] <= -1000
                page.get_by_label("Email address").focus()
                page.keyboard.press("Tab")
                assert page.locator("#name:focus").count() == 1
                page.keyboard.press("Tab")  # the honeypot is skipped
                assert page.locator("button:focus").count() == 1
            page.screenshot(path=str(artifacts / f"web-subscribe-{name}-phone.png"), full_page=True)
        plain.close()
        assert not csp, csp
        assert person(store, "plain@corp.test").name == "Zoë Ångström"
        assert effects(store, "plain-site@corp.test")[:3] == ("pending", 1, 1)
        assert person(store, "plain-late@corp.test") is None

        if not AXE.exists():
            pytest.skip("axe-core is not installed (npm ci --prefix tests/node; .ci/run does)")
        clock.advance(seconds=CLIENT_WINDOW.total_seconds())  # a new window for this client
        checked = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
        checked.set_default_timeout(5000)
        axe = AXE.read_text("utf-8")
        report: dict[str, list[str]] = {}
        for name, page in pages(checked, base, "axe"):
            page.add_script_tag(content=axe)
            result = page.evaluate(
                "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})",
                WCAG_AA,
            )
            assert result["passes"], f"axe ran no check on {name}"
            report[name] = [f"{v['id']}: {v['help']}" for v in result["violations"]]
            page.screenshot(
                path=str(artifacts / f"web-subscribe-{name}-desktop.png"), full_page=True
            )
        checked.close()
    assert not any(report.values()), report
