"""The welcome mail: one per subscriber ever, whichever way they come in (the confirmation
link, a reply by email, `subscribers add --welcome`), with the archive's latest issue,
the reader's own unsubscribe link and a DKIM signature; none when switched off; one when
two confirmations race (PostgreSQL)."""

import json
import threading
import time
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
import support
from conftest import NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import select
from starlette.testclient import TestClient

from digest_mailer import subscribers as subs
from digest_mailer import welcome
from digest_mailer.config import Config, load_config
from digest_mailer.db import Store
from digest_mailer.inbox import actions as rq
from digest_mailer.inbox.outbox import send_replies
from digest_mailer.kinds import ReplyKind
from digest_mailer.models import ArchiveEntry, Confirmation, Event, Issue, Reply, utcnow
from digest_mailer.signing import GeneratedKey, generate_key
from digest_mailer.tokens import make_token
from digest_mailer.transport import SMTPSettings, SMTPTransport
from digest_mailer.web import create_app

PUBLIC = "https://digest.transit-lab.test"
TOKEN, OTHER = "ab" * 16, "cd" * 16


def make_config(
    tmp_path: Path, database_url: str, port: int, extra: str = "", after: str = ""
) -> Path:
    """The tests' newsletter (``extra``: more [newsletter] keys), the SMTP server on
    ``port``, then ``after`` (more sections)."""
    return write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + extra + smtp_section(port) + after
    )


@pytest.fixture
def config(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str) -> Config:
    return load_config(make_config(tmp_path, database_url, smtp_server.port))


@pytest.fixture
def client(store: Store, config: Config) -> TestClient:
    return TestClient(create_app(store, config, SECRET.encode()))


@pytest.fixture
def key(tmp_path: Path) -> GeneratedKey:
    (tmp_path / "keys").mkdir()
    return generate_key("digest2026", "transit-lab.test", tmp_path / "keys")


def pending(store: Store, address: str, token: str, *more: str) -> None:
    """A pending subscriber holding a valid confirmation for each token."""
    now = utcnow()
    with store.Session.begin() as session:
        support.add_pending(session, {token: address})
        person = subs.get_subscriber(session, address)
        for other in more:
            session.add(
                Confirmation(
                    subscriber_id=person.id,
                    token_hash=rq.token_hash(other),
                    created_at=now,
                    expires_at=now + timedelta(days=7),
                )
            )


def publish(store: Store, issue_id: str, title: str, *, published: bool, days_ago: int) -> None:
    when = utcnow() - timedelta(days=days_ago)
    with store.Session.begin() as session:
        session.add(Issue(id=issue_id, subject=title, fingerprint="f" * 64, state="sent"))
        session.flush()
        session.add(
            ArchiveEntry(
                issue_id=issue_id, title=title, subject=title, volume=issue_id,
                issue_date=f"{20 - days_ago} November 2026", body_html="<p>x</p>",
                body_text="x", published=published, issued_at=when, updated_at=when,
            )
        )  # fmt: skip


def welcomes(store: Store) -> list[Reply]:
    with store.Session() as session:
        return list(
            session.scalars(select(Reply).where(Reply.kind == ReplyKind.WELCOME).order_by(Reply.id))
        )


def parsed(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


def welcome_events(store: Store, address: str) -> list[tuple[str, str]]:
    with store.Session() as session:
        person = subs.get_subscriber(session, address)
        return [(e.actor, e.detail) for e in person.events if e.kind == "welcome"]


# --------------------------------------------------------------------------- confirming


def test_confirming_by_link_queues_one_welcome_with_the_latest_issue(
    store: Store, client: TestClient
) -> None:
    publish(store, "3.1", "Bus lanes, a year on", published=True, days_ago=14)
    publish(store, "3.2", "Why bus lanes work", published=True, days_ago=1)
    publish(store, "3.3", "Draft: fares", published=False, days_ago=0)  # not public
    pending(store, "new@corp.test", TOKEN)

    done = client.post(f"/c/{TOKEN}")
    assert done.status_code == 200 and "You are subscribed" in done.text
    (reply,) = welcomes(store)
    assert (reply.address, reply.state, reply.subject) == (
        "new@corp.test",
        "queued",
        "Welcome to Transit Policy Weekly",
    )
    message = parsed(reply.data)
    text, html = parts(message)
    latest = f"{PUBLIC}/archive/3.2/"
    assert latest in text and f'href="{latest}"' in html
    assert "Why bus lanes work (19 November 2026)" in text
    assert "3.3" not in text and "3.1" not in text and "Draft" not in html
    assert "every two weeks" in text and "new@corp.test is now subscribed" in text
    assert message["Auto-Submitted"] == "auto-generated" and message["In-Reply-To"] is None
    with store.Session() as session:
        assert subs.get_subscriber(session, "new@corp.test").welcomed_at is not None
    assert welcome_events(store, "new@corp.test") == [("web", "welcome mail queued (web)")]

    # the link clicked again (a scanner, a second click): still one welcome
    assert "Already confirmed" in client.post(f"/c/{TOKEN}").text
    assert len(welcomes(store)) == 1


def test_no_archive_link_while_no_issue_is_published(store: Store, client: TestClient) -> None:
    publish(store, "3.3", "Draft: fares", published=False, days_ago=0)
    pending(store, "new@corp.test", TOKEN)
    assert client.post(f"/c/{TOKEN}").status_code == 200
    (reply,) = welcomes(store)
    text, html = parts(parsed(reply.data))
    assert "/archive/" not in text and "/archive/" not in html
    assert "latest one" not in text and "Welcome to Transit Policy Weekly!" in text


def test_confirming_twice_or_after_resubscribing_gives_no_second_welcome(
    store: Store, config: Config, client: TestClient
) -> None:
    pending(store, "mo@corp.test", TOKEN, OTHER)
    start = utcnow()

    def email(token: str, n: int, hours: int) -> rq.InboxResult:
        raw = (
            f"From: Mo <mo@corp.test>\r\nTo: weekly@transit-lab.test\r\n"
            f"Subject: Re: Confirm your subscription [token: {token}]\r\n"
            f"Message-ID: <yes-{n}@corp.test>\r\n\r\nYes please.\r\n"
        ).encode()
        ctx = rq.InboxContext(config, now=start + timedelta(hours=hours))
        with store.Session.begin() as session:
            return rq.handle_message(session, ctx, raw)

    # confirmed by a reply: the welcome answers it
    assert email(TOKEN, 1, 0).action == "subscribed: confirmed"
    (reply,) = welcomes(store)
    message = parsed(reply.data)
    assert message["In-Reply-To"] == "<yes-1@corp.test>"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["To"] == "mo@corp.test"  # never a name a request may have made up
    # the second confirmation mail answered too
    assert email(OTHER, 2, 1).action == "none: already confirmed"
    assert len(welcomes(store)) == 1

    # unsubscribe, subscribe again, confirm by the link: still the one welcome
    later = rq.InboxContext(config, now=start + timedelta(hours=3))
    with store.Session.begin() as session:
        assert rq.unsubscribe(session, later, "mo@corp.test", None, None).startswith("unsub")
    again = rq.InboxContext(config, now=start + timedelta(hours=5))
    with store.Session.begin() as session:
        sent = rq.start_subscription(session, again, "mo@corp.test", "", None, None)
        assert sent == "unsubscribed: confirmation sent to mo@corp.test"
        subject = session.scalars(select(Reply.subject).where(Reply.kind == "confirm")).one()
    token = subject.split("[token: ")[1].rstrip("]")
    assert "You are subscribed" in client.post(f"/c/{token}").text
    with store.Session() as session:
        assert subs.get_subscriber(session, "mo@corp.test").status == "active"
    assert len(welcomes(store)) == 1
    assert welcome_events(store, "mo@corp.test") == [
        ("email-request", "welcome mail queued (message <yes-1@corp.test>)")
    ]


# --------------------------------------------------------------------------- staff


@pytest.fixture
def dm(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str) -> Cli:
    cli = Cli(make_config(tmp_path, database_url, smtp_server.port))
    cli.ok("init")
    return cli


def test_add_welcome_sends_one_welcome_per_subscriber(dm: Cli, smtp_server: SMTPServer) -> None:
    result = dm.ok("subscribers", "add", "ana@corp.test", "--welcome")
    assert "welcome mail queued for ana@corp.test" in result.stdout
    assert "welcome to ana@corp.test: sent 250" in result.stderr
    (got,) = smtp_server.handler.received
    assert got.rcpt == "ana@corp.test"
    assert got.message["Subject"] == "Welcome to Transit Policy Weekly"
    assert got.message["From"] == "Transit Policy Weekly <weekly@transit-lab.test>"

    # again, after leaving, and after being brought back: never a second one
    again = dm.ok("subscribers", "add", "ana@corp.test", "--welcome")
    assert "no welcome mail to ana@corp.test: welcomed before" in again.stderr
    dm.ok("subscribers", "remove", "ana@corp.test")
    left = dm.ok("subscribers", "add", "ana@corp.test", "--welcome")
    assert "no welcome mail to ana@corp.test: unsubscribed" in left.stderr
    back = dm.ok("subscribers", "add", "ana@corp.test", "--resubscribe", "--welcome")
    assert "welcomed before" in back.stderr
    # without --welcome, none; several at once, as JSON
    dm.ok("subscribers", "add", "bo@corp.test")
    data = json.loads(
        dm.ok("subscribers", "add", "bo@corp.test", "cy@corp.test", "--welcome", "--json").stdout
    )
    assert data["welcome"] == [
        {
            "address": "bo@corp.test",
            "queued": True,
            "detail": "welcome mail queued for bo@corp.test",
        },
        {
            "address": "cy@corp.test",
            "queued": True,
            "detail": "welcome mail queued for cy@corp.test",
        },
    ]
    assert sorted(smtp_server.addresses()) == ["ana@corp.test", "bo@corp.test", "cy@corp.test"]
    shown = json.loads(dm.ok("subscribers", "show", "ana@corp.test", "--json").stdout)
    assert [e["detail"] for e in shown["events"] if e["kind"] == "welcome"] == [
        "welcome mail queued (added by staff)"
    ]


def test_welcome_false_sends_none(
    tmp_path: Path, database_url: str, store: Store, smtp_server: SMTPServer, send_env: str
) -> None:
    path = make_config(tmp_path, database_url, smtp_server.port, "welcome = false\n")
    config = load_config(path)
    assert config.newsletter.welcome is False
    pending(store, "new@corp.test", TOKEN)
    client = TestClient(create_app(store, config, SECRET.encode()))
    assert "You are subscribed" in client.post(f"/c/{TOKEN}").text
    cli = Cli(path)
    result = cli.ok("subscribers", "add", "ana@corp.test", "--welcome")
    assert "no welcome mail to ana@corp.test: [newsletter] welcome is off" in result.stderr
    assert welcomes(store) == [] and smtp_server.handler.received == []
    with store.Session() as session:
        assert subs.get_subscriber(session, "ana@corp.test").welcomed_at is None


# --------------------------------------------------------------------------- the message


def test_the_delivered_welcome_is_signed_and_carries_the_readers_own_link(
    tmp_path: Path,
    database_url: str,
    store: Store,
    smtp_server: SMTPServer,
    send_env: str,
    key: GeneratedKey,
) -> None:
    dkim_section = (
        '\n[dkim]\nselector = "digest2026"\ndomain = "transit-lab.test"\n'
        f'private_key_file = "{key.private_path}"\n'
    )
    config = load_config(make_config(tmp_path, database_url, smtp_server.port, after=dkim_section))
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["zoe@corp.test"], allow_test_domains=True)
        (queued,) = welcome.welcome_added(session, config, ["zoe@corp.test"])
        person = subs.get_subscriber(session, "zoe@corp.test")
        link = (
            f"{PUBLIC}/u/{make_token(SECRET.encode(), 'unsubscribe', person.id, person.link_salt)}"
        )
    assert queued.queued
    (result,) = send_replies(store, config, SMTPTransport(SMTPSettings.from_config(config)))
    assert (result.kind, result.outcome.kind) == ("welcome", "sent")
    (got,) = smtp_server.handler.received
    records = {f"{key.dns_name}.".encode(): key.dns_value.encode()}
    assert dkim.verify(got.data, dnsfunc=lambda name, timeout=5: records.get(name))
    message = got.message
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    text, html = parts(message)
    assert link in text and f'href="{link}"' in html
    assert message["List-Unsubscribe"] == (
        f"<{link}>, <mailto:weekly@transit-lab.test?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Id"] == "Transit Policy Weekly <weekly.transit-lab.test>"
    assert "Transit Lab, 9 Depot Road, Rivertown" in text
    with store.Session() as session:  # the token inside is not kept once sent
        assert session.scalars(select(Reply.data)).one() is None
    # the link works: it unsubscribes this reader
    client = TestClient(create_app(store, config, SECRET.encode()))
    assert client.post(link.removeprefix(PUBLIC), data={"action": "unsubscribe"}).status_code == 200
    with store.Session() as session:
        assert subs.get_subscriber(session, "zoe@corp.test").status == "unsubscribed"


def test_without_public_url_the_unsubscribe_link_is_a_mailto(
    tmp_path: Path, database_url: str, store: Store, smtp_server: SMTPServer
) -> None:
    path = make_config(tmp_path, database_url, smtp_server.port)
    path.write_text(path.read_text("utf-8").replace(f'public_url = "{PUBLIC}"\n', ""), "utf-8")
    config = load_config(path)  # and no secret is needed
    publish(store, "3.2", "Why bus lanes work", published=True, days_ago=1)
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["zoe@corp.test"], allow_test_domains=True)
        welcome.welcome_added(session, config, ["zoe@corp.test"])
    (reply,) = welcomes(store)
    message = parsed(reply.data)
    text, _ = parts(message)
    assert "mailto:weekly@transit-lab.test?subject=unsubscribe" in text
    assert "/archive/" not in text  # no public address to link the archive at
    assert message["List-Unsubscribe"] == "<mailto:weekly@transit-lab.test?subject=unsubscribe>"
    assert message["List-Unsubscribe-Post"] is None


def test_staff_templates_and_a_broken_one(
    tmp_path: Path, database_url: str, store: Store, smtp_server: SMTPServer, send_env: str
) -> None:
    folder = tmp_path / "our-templates"
    folder.mkdir()
    (folder / "welcome.txt.j2").write_text("Hello {{ address }}! Leave: {{ unsubscribe_url }}\n")
    extra = f'templates = "{folder}"\n'
    config = load_config(make_config(tmp_path, database_url, smtp_server.port, extra))
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["zoe@corp.test"], allow_test_domains=True)
        welcome.welcome_added(session, config, ["zoe@corp.test"])
    text, html = parts(parsed(welcomes(store)[0].data))
    assert text.startswith("Hello zoe@corp.test! Leave: https://digest.transit-lab.test/u/")
    assert "every two weeks" in html  # the shipped HTML template: staff copied only one

    # a typo in a staff template: the confirmation stands, the welcome is not sent, and
    # the subscriber's history says why; `add --welcome` refuses and changes nothing
    (folder / "welcome.txt.j2").write_text("Hello {{ adress }}!\n")
    pending(store, "new@corp.test", TOKEN)
    client = TestClient(create_app(store, config, SECRET.encode()))
    assert "You are subscribed" in client.post(f"/c/{TOKEN}").text
    assert len(welcomes(store)) == 1
    ((actor, detail),) = welcome_events(store, "new@corp.test")
    assert actor == "web" and detail.startswith("welcome mail not sent: ")
    assert "adress" in detail
    failed = Cli(tmp_path / "config.toml")("subscribers", "add", "kim@corp.test", "--welcome")
    assert failed.exit_code == 1 and "adress" in failed.stderr
    with store.Session() as session:
        assert subs.find_subscriber(session, "kim@corp.test") is None


# --------------------------------------------------------------------------- races


def test_two_confirmations_racing_give_one_welcome(
    pg_store: Store, newsletter_config: Config, send_env: str
) -> None:
    """Two confirmation mails of the same person, confirmed at the same moment: the second
    transaction waits for the first's row lock, then finds welcomed_at set."""
    store, config = pg_store, newsletter_config
    pending(store, "race@corp.test", TOKEN, OTHER)
    first_in, release = threading.Event(), threading.Event()
    results: dict[str, str] = {}

    def confirm(token: str, hold: bool) -> None:
        ctx = rq.InboxContext(config)
        with store.Session.begin() as session:
            results[token] = rq.confirm_token(session, ctx, token, actor="web")
            if hold:
                first_in.set()
                release.wait(10)

    first = threading.Thread(target=confirm, args=(TOKEN, True))
    first.start()
    assert first_in.wait(10)
    second = threading.Thread(target=confirm, args=(OTHER, False))
    second.start()
    time.sleep(0.3)
    assert second.is_alive()  # waiting for the first transaction's lock on the row
    release.set()
    first.join(10)
    second.join(10)
    assert results[TOKEN] == "subscribed: confirmed" and OTHER in results
    (reply,) = welcomes(store)
    assert reply.address == "race@corp.test"
    with store.Session() as session:
        kinds = session.scalars(select(Event.detail).where(Event.kind == "welcome")).all()
    assert kinds == ["welcome mail queued (web)"]


def test_two_welcomes_racing_queue_one(
    pg_store: Store, newsletter_config: Config, send_env: str
) -> None:
    """Both transactions read the subscriber as never welcomed before either writes; the
    conditional UPDATE lets one through."""
    store, config = pg_store, newsletter_config
    with store.Session.begin() as session:
        subs.add_subscribers(session, ["race@corp.test"], allow_test_domains=True)
    both_read = threading.Barrier(2, timeout=10)
    outcomes: list[welcome.Welcome] = []

    def welcome_once(n: int) -> None:
        with store.Session.begin() as session:
            person = subs.get_subscriber(session, "race@corp.test")
            assert person.welcomed_at is None
            both_read.wait()
            outcome = welcome.queue_welcome(
                session, config, person, actor=f"thread {n}", origin="race", secret=SECRET.encode()
            )
            outcomes.append(outcome)
            if outcome.queued:
                time.sleep(0.3)  # the other one waits on the row lock meanwhile

    threads = [threading.Thread(target=welcome_once, args=(n,)) for n in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(o.queued for o in outcomes) == [False, True]
    assert len(welcomes(store)) == 1
