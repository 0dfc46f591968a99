"""The sender against a real SMTP server on loopback (aiosmtpd) that injects faults."""

import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import select

from digest_mailer import db, send
from digest_mailer import subscribers as subs
from digest_mailer.bounces.scoring import is_recipient_refusal
from digest_mailer.composer import compose_file
from digest_mailer.config import Config, load_config
from digest_mailer.errors import SendRefused
from digest_mailer.message import MessageTemplate
from digest_mailer.models import Delivery, Issue, TestSend
from digest_mailer.tokens import read_issue_mark, read_token
from digest_mailer.transport import CaptureTransport, FileTransport, SMTPSettings, SMTPTransport
from digest_mailer.transport.retry import send_with_reconnects

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"


@dataclass
class Rig:
    config: Config
    store: db.Store
    server: SMTPServer
    issue: Path
    addresses: list[str]

    def compose(self):  # type: ignore[no-untyped-def]
        return compose_file(self.issue, self.config)

    def prepare(self, **options):  # type: ignore[no-untyped-def]
        options.setdefault("skip_test", True)
        with self.store.Session.begin() as session:
            return send.prepare_send(session, self.compose(), **options)

    def send(self, stop: threading.Event | None = None, **options) -> send.SendReport:  # type: ignore[no-untyped-def]
        plan = self.prepare(**options)
        settings = SMTPSettings.from_config(self.config)
        return send.run_send(
            self.store, plan.issue_id, self.config, MessageTemplate(self.compose(), self.config),
            lambda: SMTPTransport(settings), SECRET.encode(), stop=stop,
        )  # fmt: skip

    def states(self) -> dict[str, str]:
        with self.store.Session() as session:
            return dict(session.execute(select(Delivery.address, Delivery.state)).all())

    def rows(self) -> dict[str, Delivery]:
        with self.store.Session() as session:
            return {d.address: d for d in session.scalars(select(Delivery))}


def make_rig(tmp_path: Path, database_url: str, server: SMTPServer, count: int = 12,
             connections: int = 2, smtp_extra: str = "") -> Rig:  # fmt: skip
    config = load_config(
        write_config(
            tmp_path / "config.toml", database_url,
            NEWSLETTER + smtp_section(server.port, connections, smtp_extra),
        )
    )  # fmt: skip
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    store = db.open_store(database_url)
    addresses = [f"reader{i:03d}@corp.test" for i in range(count)]
    with store.Session.begin() as session:
        subs.ensure_list(session, "seed")
        subs.add_subscribers(session, addresses, allow_test_domains=True)
        subs.add_subscribers(session, ["seed@corp.test"], list_name="seed", allow_test_domains=True)
    return Rig(config, store, server, ISSUE, addresses + ["seed@corp.test"])


@pytest.fixture
def rig(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env):  # type: ignore[no-untyped-def]
    built = make_rig(tmp_path, database_url, smtp_server)
    yield built
    built.store.dispose()


@pytest.fixture(params=["in-turn", "pipelined"])
def either_rig(request: pytest.FixtureRequest, rig: Rig) -> Rig:
    """The same server with and without RFC 2920 PIPELINING."""
    rig.server.handler.pipelining = request.param == "pipelined"
    return rig


def assert_exactly_once(rig: Rig) -> None:
    """Every recipient once at the server; an uncertain one at most once; none missing."""
    states = rig.states()
    for address in rig.addresses:
        got = rig.server.handler.count(address)
        if states.get(address) == "uncertain":
            assert got <= 1, address
        else:
            assert got == 1, (address, states.get(address), got)


def test_send_everyone_once_with_headers(either_rig: Rig) -> None:
    report = either_rig.send()
    assert report.state == "sent" and report.counts["sent"] == len(either_rig.addresses)
    assert_exactly_once(either_rig)
    rows = either_rig.rows()
    with either_rig.store.Session() as session:
        ids = {s.email: s.id for s in subs.list_subscribers(session)}
        salts = {s.email: s.link_salt for s in subs.list_subscribers(session)}
    for received in either_rig.server.handler.received:
        msg = received.message
        assert received.mail_from == "weekly@transit-lab.test"
        assert msg["To"] == received.rcpt
        assert msg["Message-ID"] == rows[received.rcpt].message_id
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        link = msg["List-Unsubscribe"].split(">")[0].lstrip("<")
        assert link.startswith("https://digest.transit-lab.test/u/")
        token, _, query = link.rsplit("/", 1)[1].partition("?i=")
        # the issue, signed for this reader: an unsubscribe through it is put down to 3.1
        assert read_issue_mark(SECRET.encode(), query, ids[received.rcpt]) == "3.1"
        salt = salts[received.rcpt]  # each link is bound to its person's random value
        assert len(salt) == 16 and read_token(SECRET.encode(), "unsubscribe", token) is None
        assert read_token(SECRET.encode(), "unsubscribe", token, salt) == ids[received.rcpt]
        assert link in msg.get_body(("html",)).get_content()
        assert link in msg.get_body(("plain",)).get_content()
    assert len({r.message["Message-ID"] for r in either_rig.server.handler.received}) == len(
        either_rig.addresses
    )
    # running again sends nothing
    again = either_rig.send()
    assert again.state == "sent" and len(either_rig.server.handler.received) == len(
        either_rig.addresses
    )


def test_temporary_failures_are_retried_then_left_deferred(either_rig: Rig) -> None:
    handler = either_rig.server.handler
    handler.temp_fail = {"reader001@corp.test": 2, "reader002@corp.test": 5}
    report = either_rig.send()
    rows = either_rig.rows()
    assert rows["reader001@corp.test"].state == "sent" and rows["reader001@corp.test"].attempts == 3
    deferred = rows["reader002@corp.test"]
    assert (deferred.state, deferred.smtp_code, deferred.attempts) == ("deferred", 451, 3)
    assert report.state == "paused" and "temporarily" in report.paused_reason
    report = either_rig.send()  # the next run retries it: two more 451s, then accepted
    assert report.state == "sent" and either_rig.rows()["reader002@corp.test"].state == "sent"
    assert_exactly_once(either_rig)


def test_permanent_failures_are_recorded(either_rig: Rig) -> None:
    either_rig.server.handler.perm_fail = {"reader003@corp.test"}
    report = either_rig.send()
    row = either_rig.rows()["reader003@corp.test"]
    assert (row.state, row.smtp_code) == ("failed", 550)
    assert "No such user" in row.smtp_message
    assert report.state == "sent" and report.counts["failed"] == 1
    assert either_rig.server.handler.count("reader003@corp.test") == 0


def test_connection_dropped_at_data_is_resent_once(either_rig: Rig) -> None:
    either_rig.server.handler.drop_at_data = {"reader004@corp.test": 1}
    report = either_rig.send()
    assert report.state == "sent"
    assert either_rig.rows()["reader004@corp.test"].state == "sent"
    assert_exactly_once(either_rig)


def test_connection_dropped_after_the_message_is_uncertain(either_rig: Rig) -> None:
    either_rig.server.handler.drop_after_message = {"reader005@corp.test"}
    report = either_rig.send()
    row = either_rig.rows()["reader005@corp.test"]
    assert row.state == "uncertain" and "did not answer" in row.smtp_message
    assert report.state == "sent" and report.counts["uncertain"] == 1
    either_rig.send()  # not resent
    assert either_rig.server.handler.count("reader005@corp.test") == 1
    report = either_rig.send(resend_uncertain=True)
    assert either_rig.server.handler.count("reader005@corp.test") == 2
    assert either_rig.rows()["reader005@corp.test"].state == "sent"


def test_server_stopped_mid_send_pauses_and_resumes(rig: Rig) -> None:
    handler = rig.server.handler

    def stop_after(count: int) -> None:
        if count == 5:
            threading.Thread(target=rig.server.stop).start()

    handler.on_message = stop_after
    report = rig.send()
    assert report.state == "paused"
    assert "cannot connect" in report.paused_reason or "lost" in report.paused_reason
    with rig.store.Session() as session:
        assert session.get(Issue, "3.1").state == "paused"
    handler.on_message = None
    rig.server.start()
    report = rig.send()
    assert report.state == "sent"
    assert_exactly_once(rig)
    assert sum(s == "uncertain" for s in rig.states().values()) <= rig.config.smtp.connections


def test_unsubscribed_during_send_is_not_sent(rig: Rig) -> None:
    last = rig.addresses[-2]  # queued late: reader011

    def unsubscribe_early(count: int) -> None:
        if count == 1:
            with rig.store.Session.begin() as session:
                subs.remove_subscriber(session, last, reason="clicked unsubscribe")

    rig.server.handler.on_message = unsubscribe_early
    report = rig.send()
    assert report.state == "sent"
    assert rig.rows()[last].state == "skipped" and rig.server.handler.count(last) == 0
    assert report.counts["skipped"] == 1


def test_stop_request_pauses_cleanly(rig: Rig) -> None:
    stop = threading.Event()
    rig.server.handler.on_message = lambda count: count == 3 and stop.set()
    report = rig.send(stop=stop)
    assert report.state == "paused" and report.paused_reason == "stopped by request"
    states = rig.states()
    assert "sending" not in states.values()  # messages in hand were recorded
    assert sum(s == "sent" for s in states.values()) == len(rig.server.handler.received)
    rig.server.handler.on_message = None
    assert rig.send().state == "sent"
    assert_exactly_once(rig)


def test_rate_limit_is_shared_over_connections(
    tmp_path, database_url, smtp_server, send_env
) -> None:  # type: ignore[no-untyped-def]
    import time

    built = make_rig(tmp_path, database_url, smtp_server, count=9, connections=3,
                     smtp_extra="max_per_second = 20\n")  # fmt: skip
    started = time.monotonic()
    assert built.send().state == "sent"
    elapsed = time.monotonic() - started
    built.store.dispose()
    assert elapsed >= (10 - 1) / 20 * 0.9, elapsed  # 10 messages at 20/s over 3 connections


def test_refusals_before_sending(rig: Rig, tmp_path: Path) -> None:
    with pytest.raises(SendRefused, match="no successful test send"):
        rig.prepare(skip_test=False)
    assert rig.server.handler.received == []
    with rig.store.Session() as session:
        assert session.scalars(select(Delivery)).all() == []
    plan = rig.prepare(skip_test=True)
    assert "without a test send" in plan.notes[0]
    changed = tmp_path / "changed.txt"
    changed.write_text(ISSUE.read_text("utf-8").replace("31 to 12", "30 to 13"), "utf-8")
    rig.issue = changed
    with pytest.raises(SendRefused, match="changed since its send started"):
        rig.prepare()
    plan = rig.prepare(allow_changed=True)
    assert "--allow-changed" in plan.notes[0]


def test_test_send_logs_and_unlocks_the_send(rig: Rig) -> None:
    composed = rig.compose()
    settings = SMTPSettings.from_config(rig.config)
    with rig.store.Session.begin() as session:
        recipients = send.test_recipients(session, rig.config)
        assert [r[0] for r in recipients] == ["seed@corp.test"]
        results = send.test_send(
            session, composed, rig.config, SMTPTransport(settings), SECRET.encode(), recipients
        )
        extra = send.test_recipients(session, rig.config, ["Editor@Outside.test"])
        send.test_send(
            session, composed, rig.config, SMTPTransport(settings), SECRET.encode(), extra
        )
    assert [r.outcome.kind for r in results] == ["sent"]
    subjects = [r.message["Subject"] for r in rig.server.handler.received]
    assert all(s.startswith("[TEST] Transit Policy Weekly") for s in subjects)
    assert rig.server.addresses() == ["seed@corp.test", "Editor@outside.test"]
    with rig.store.Session() as session:
        assert session.scalars(select(Delivery)).all() == []
        tests = session.scalars(select(TestSend)).all()
        assert [(t.address, t.state, t.fingerprint) for t in tests] == [
            ("seed@corp.test", "sent", composed.fingerprint),
            ("Editor@outside.test", "sent", composed.fingerprint),
        ]
        assert session.get(Issue, "3.1").state == "tested"
    assert rig.send(skip_test=False).state == "sent"  # now allowed
    assert rig.server.handler.count("seed@corp.test") == 2  # test copy + the real one


def test_dry_run_writes_files_and_changes_nothing(rig: Rig, tmp_path: Path) -> None:
    out = tmp_path / "dry"
    with rig.store.Session() as session:
        count = send.dry_run(
            session, rig.compose(), rig.config, FileTransport(out), SECRET.encode()
        )
        session.rollback()
    assert count == len(rig.addresses) == len(list(out.glob("*.eml")))
    assert rig.server.handler.received == [] and rig.states() == {}


def test_capture_transport_and_status(rig: Rig) -> None:
    rig.prepare()
    capture = CaptureTransport()
    report = send.run_send(
        rig.store, "3.1", rig.config, MessageTemplate(rig.compose(), rig.config),
        lambda: capture, SECRET.encode(),
    )  # fmt: skip
    assert report.state == "sent" and len(capture.messages) == len(rig.addresses)
    with rig.store.Session() as session:
        status = send.issue_status(session, "3.1")[0]
        log = list(send.delivery_log(session, "3.1", "sent"))
    assert status["state"] == "sent" and status["counts"]["sent"] == len(rig.addresses)
    assert len(log) == len(rig.addresses) and all(r["code"] == 250 for r in log)


def test_send_with_reconnects_fails_an_unwritable_address_alone() -> None:
    """A transport that leaves the address check to the caller: the recipient fails (not
    a bounce, nothing sent), it does not raise out of the send loop or the outbox."""
    from digest_mailer.addresses import wire_address
    from digest_mailer.transport import run_coroutine

    class Strict:
        async def send(self, envelope_from, recipient, data, commit=None):  # type: ignore[no-untyped-def]
            wire_address(recipient)
            raise AssertionError("not reached")

        async def close(self) -> None:
            pass

    outcome = run_coroutine(
        send_with_reconnects(Strict(), "f@corp.test", "x@" + "ü" * 60 + ".test", b"", 0.01)
    )
    assert (outcome.kind, outcome.code, outcome.stage) == ("failed", None, "rcpt")
    assert "not valid IDNA" in outcome.message and not is_recipient_refusal(outcome)


def test_a_render_error_pauses_the_send_without_losing_a_row(rig: Rig, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """An unexpected error making one message (a bug) pauses the send with the reason,
    unsigned as on the signing threads; it does not escape the loop, and nothing is lost."""
    render = MessageTemplate.render

    def broken(self, address, *args):  # type: ignore[no-untyped-def]
        if address == "reader004@corp.test":
            raise RuntimeError("cannot render")
        return render(self, address, *args)

    monkeypatch.setattr(MessageTemplate, "render", broken)
    report = rig.send()
    assert report.state == "paused" and "internal error: RuntimeError" in report.paused_reason
    assert rig.states()["reader004@corp.test"] == "queued"
    monkeypatch.setattr(MessageTemplate, "render", render)
    assert rig.send().state == "sent"
    assert_exactly_once(rig)
