"""International addresses end to end, on each store back end, against aiosmtpd on loopback.

The store keeps email-validator's form (``user@bücher.test``, ``pöison@attacker.test``).
On the wire the domain is A-labels (IDNA 2008, as email-validator checked it), in RCPT TO,
MAIL FROM and the To header; a non-ASCII local part goes out with SMTPUTF8 (RFC 6531, the
To header in raw UTF-8 per RFC 6532) when the server offers it, and otherwise that
recipient alone fails with the reason, nothing sent for it, and the send goes on.
"""

import email
import json
import mailbox
import re
import shutil
import socket
from email import policy
from pathlib import Path

import dkim
import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer, free_port
from sqlalchemy import select, update

from digest_mailer import db, send
from digest_mailer import subscribers as subs
from digest_mailer.capture import start_capture
from digest_mailer.composer import compose_file
from digest_mailer.config import load_config
from digest_mailer.message import MessageTemplate
from digest_mailer.models import Delivery, Subscriber, TestSend
from digest_mailer.signing import generate_key
from digest_mailer.transport import CaptureTransport, SMTPSettings, SMTPTransport, run_coroutine

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
READERS = ["r0@corp.test", "r1@corp.test", "r2@corp.test"]
BUCHER, BUCHER_WIRE = "user@bücher.test", "user@xn--bcher-kva.test"
STRASSE, STRASSE_WIRE = "user@straße.test", "user@xn--strae-oqa.test"  # IDNA 2003: strasse
POISON = "pöison@attacker.test"
TARO, TARO_WIRE = "たろう@例え.test", "たろう@xn--r8jz45g.test"
HANAKO, HANAKO_WIRE = "hanako@例え.test", "hanako@xn--r8jz45g.test"
# valid when it was stored, perhaps, but no IDNA: a label of 60 ü is too long as A-label
UNENCODABLE = "x@" + "ü" * 60 + ".test"
NEEDS_UTF8 = "the address needs SMTPUTF8 (a non-ASCII local part) and 127.0.0.1:{port} does not"


@pytest.fixture
def plain_server():  # type: ignore[no-untyped-def]
    """A server that does not offer SMTPUTF8 (and refuses non-ASCII commands)."""
    server = SMTPServer(smtputf8=False).start()
    yield server
    server.stop()


@pytest.fixture(params=["in-turn", "pipelined"])
def pipelining(request: pytest.FixtureRequest) -> bool:
    return request.param == "pipelined"


def make_cli(tmp_path: Path, database_url: str, server: SMTPServer, extra: str = "") -> Cli:
    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(server.port) + extra
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", *READERS)
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    cli.issue = str(tmp_path / "vol-3.1.txt")  # type: ignore[attr-defined]
    return cli


def store_unencodable(database_url: str) -> None:
    """A subscriber whose stored address has a domain no IDNA encoder takes (as an old
    row, or one written by another tool, may): added valid, then changed underneath."""
    store = db.open_store(database_url)
    try:
        with store.Session.begin() as session:
            subs.add_subscribers(session, ["unencodable@corp.test"], allow_test_domains=True)
            session.execute(
                update(Subscriber)
                .where(Subscriber.email == "unencodable@corp.test")
                .values(email=UNENCODABLE, email_key=UNENCODABLE.casefold())
            )
    finally:
        store.dispose()


def header(data: bytes, name: bytes) -> bytes:
    """A header field's raw value (unfolded is enough here: To is never folded)."""
    found = re.search(rb"(?:^|\r\n)" + name + rb": ([^\r\n]*)", data.split(b"\r\n\r\n")[0])
    assert found, name
    return found.group(1)


def parse(data: bytes):  # type: ignore[no-untyped-def]
    """A message whose headers may be raw UTF-8 (RFC 6532)."""
    return email.message_from_string(data.decode("utf-8"), policy=policy.default)


def by_rcpt(server: SMTPServer) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    for r in server.handler.received:
        out.setdefault(r.rcpt, []).append(r)
    return out


def log_rows(cli: Cli, state: str | None = None) -> dict[str, dict]:  # type: ignore[type-arg]
    args = ["log", "3.1", "--json"] + (["--state", state] if state else [])
    return {r["address"]: r for r in json.loads(cli.ok(*args).stdout)}


def test_idn_domains_go_out_as_a_labels(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str, pipelining: bool
) -> None:
    smtp_server.handler.pipelining = pipelining
    cli = make_cli(tmp_path, database_url, smtp_server)
    cli.ok("subscribers", "add", BUCHER, STRASSE)
    shown = json.loads(cli.ok("subscribers", "list", "--json").stdout)
    assert {BUCHER, STRASSE} <= {s["email"] for s in shown}  # the store keeps Unicode
    result = cli.ok("send", cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    assert "issue 3.1: sent; 6 sent" in result.stdout
    got = by_rcpt(smtp_server)
    assert sorted(got) == sorted([*READERS, "seed@corp.test", BUCHER_WIRE, STRASSE_WIRE])
    assert all(len(v) == 1 for v in got.values())
    for wire in (BUCHER_WIRE, STRASSE_WIRE):
        received = got[wire][0]
        assert header(received.data, b"To") == wire.encode()
        assert received.mail_options == []  # an ASCII local part needs no SMTPUTF8
        assert received.data.split(b"\r\n\r\n")[0].isascii()
    assert not any("strasse" in r for r in got)  # IDNA 2003 would send it to another domain
    rows = log_rows(cli)
    assert rows[BUCHER]["state"] == rows[STRASSE]["state"] == "sent"


def test_utf8_local_part_goes_out_with_smtputf8(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str, pipelining: bool
) -> None:
    smtp_server.handler.pipelining = pipelining
    cli = make_cli(tmp_path, database_url, smtp_server)
    cli.ok("subscribers", "add", POISON)
    result = cli.ok("send", cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    assert "issue 3.1: sent; 5 sent" in result.stdout
    got = by_rcpt(smtp_server)
    (received,) = got[POISON]
    assert "SMTPUTF8" in received.mail_options
    assert header(received.data, b"To") == POISON.encode("utf-8")  # RFC 6532: raw UTF-8
    assert parse(received.data)["To"] == POISON
    for reader in READERS:  # only the transaction that needs it uses SMTPUTF8
        assert got[reader][0].mail_options == []
    assert log_rows(cli)[POISON]["state"] == "sent"


def test_utf8_local_part_fails_alone_without_smtputf8(
    tmp_path: Path, database_url: str, plain_server: SMTPServer, send_env: str
) -> None:
    cli = make_cli(tmp_path, database_url, plain_server)
    cli.ok("subscribers", "add", POISON)
    result = cli.ok("send", cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    assert "issue 3.1: sent; 4 sent, 1 failed" in result.stdout
    failed = log_rows(cli, "failed")
    assert list(failed) == [POISON]
    assert NEEDS_UTF8.format(port=plain_server.port) in failed[POISON]["message"]
    assert failed[POISON]["code"] is None
    # nothing was sent for it: not even MAIL FROM
    assert sorted(plain_server.addresses()) == sorted([*READERS, "seed@corp.test"])
    assert len(plain_server.handler.mail_commands) == 4
    # a rerun sends nothing twice and ends as a completed send
    again = cli.ok("send", cli.issue, "--yes")  # type: ignore[attr-defined]
    assert "nothing to send: issue 3.1 is sent (4 sent, 1 failed)" in again.stdout
    assert len(plain_server.handler.received) == 4
    # our refusal is no bounce: the subscriber stays active, unscored
    status = json.loads(cli.ok("status", "3.1", "--json").stdout)
    assert status["state"] == "sent" and status["bounces"]["bounced"] == 0
    active = json.loads(cli.ok("subscribers", "list", "--status", "active", "--json").stdout)
    assert POISON in {s["email"] for s in active}


def test_japanese_display_names(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str
) -> None:
    cli = make_cli(tmp_path, database_url, smtp_server)
    cli.ok("subscribers", "add", TARO, "--name", "山田 太郎")
    cli.ok("subscribers", "add", HANAKO, "--name", "山田 花子")
    cli.ok("send", cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    got = by_rcpt(smtp_server)
    taro, hanako = got[TARO_WIRE][0], got[HANAKO_WIRE][0]
    raw_taro = header(taro.data, b"To")
    assert raw_taro.startswith(b"=?utf-8?") and raw_taro.endswith(f"<{TARO_WIRE}>".encode())
    assert "SMTPUTF8" in taro.mail_options
    raw_hanako = header(hanako.data, b"To")
    assert raw_hanako.isascii() and raw_hanako.endswith(f"<{HANAKO_WIRE}>".encode())
    assert hanako.mail_options == []
    for received, name, wire in (
        (taro, "山田 太郎", TARO_WIRE),
        (hanako, "山田 花子", HANAKO_WIRE),
    ):
        (to,) = parse(received.data)["To"].addresses
        assert (to.display_name, to.addr_spec) == (name, wire)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "dkim"])
def test_unencodable_domain_fails_alone(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str, signed: bool
) -> None:
    extra = ""
    if signed:  # the messages are rendered on the signing threads then
        key = generate_key("digest2026", "transit-lab.test", tmp_path)
        extra = (
            f'\n[dkim]\nselector = "digest2026"\ndomain = "transit-lab.test"\n'
            f'private_key_file = "{key.private_path}"\n'
        )
    cli = make_cli(tmp_path, database_url, smtp_server, extra)
    cli.ok("subscribers", "add", BUCHER)
    store_unencodable(database_url)
    result = cli.ok("send", cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    assert "issue 3.1: sent; 5 sent, 1 failed" in result.stdout
    failed = log_rows(cli, "failed")
    assert list(failed) == [UNENCODABLE] and "not valid IDNA" in failed[UNENCODABLE]["message"]
    assert len(smtp_server.handler.mail_commands) == 5
    assert smtp_server.handler.count(BUCHER_WIRE) == 1


def verify(data: bytes, dns_name: str, dns_value: str) -> bool:
    records = {f"{dns_name}.".encode(): dns_value.encode()}
    return bool(dkim.verify(data, dnsfunc=lambda name, timeout=5: records.get(name)))


def test_dkim_signatures_verify(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str
) -> None:
    key = generate_key("digest2026", "transit-lab.test", tmp_path)
    extra = (
        f'\n[dkim]\nselector = "digest2026"\ndomain = "transit-lab.test"\n'
        f'private_key_file = "{key.private_path}"\n'
    )
    cli = make_cli(tmp_path, database_url, smtp_server, extra)
    cli.ok("subscribers", "add", BUCHER, POISON)
    cli.ok("subscribers", "add", TARO, "--name", "山田 太郎")
    cli.ok("send", cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    got = by_rcpt(smtp_server)
    for wire in (BUCHER_WIRE, POISON, TARO_WIRE, READERS[0]):
        (received,) = got[wire]
        assert received.data.startswith(b"DKIM-Signature:")
        assert verify(received.data, key.dns_name, key.dns_value), wire
        # the To header is signed: changing its address breaks the signature
        forged = received.data.replace(wire.encode(), b"x@corp.test")
        assert not verify(forged, key.dns_name, key.dns_value)


def test_test_send_to_international_addresses(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str
) -> None:
    cli = make_cli(tmp_path, database_url, smtp_server)
    result = cli.ok("send", cli.issue, "--test", "--to", POISON, "--to", BUCHER)  # type: ignore[attr-defined]
    assert "2 of 2 accepted" in result.stdout
    got = by_rcpt(smtp_server)
    assert "SMTPUTF8" in got[POISON][0].mail_options
    assert header(got[BUCHER_WIRE][0].data, b"To") == BUCHER_WIRE.encode()
    assert got[BUCHER_WIRE][0].message["Subject"].startswith("[TEST] ")
    status = json.loads(cli.ok("status", "3.1", "--json").stdout)
    assert status["tested"] and status["test_sends"] == 2


def test_test_send_without_smtputf8_fails_that_address_alone(
    tmp_path: Path, database_url: str, plain_server: SMTPServer, send_env: str
) -> None:
    cli = make_cli(tmp_path, database_url, plain_server)
    cli.ok("subscribers", "add", POISON, BUCHER, "--list", "seed")
    result = cli("send", cli.issue, "--test")  # type: ignore[attr-defined]
    assert result.exit_code == 6, result.output  # a failed test send
    assert "2 of 3 accepted" in result.stdout and "the test send failed" in result.stderr
    assert NEEDS_UTF8.format(port=plain_server.port) in " ".join(result.stdout.split())
    assert sorted(plain_server.addresses()) == sorted([BUCHER_WIRE, "seed@corp.test"])
    store = db.open_store(load_config(cli.config).database.url)
    try:
        with store.Session() as session:
            tests = {t.address: t.state for t in session.scalars(select(TestSend))}
    finally:
        store.dispose()
    assert tests == {POISON: "failed", BUCHER: "sent", "seed@corp.test": "sent"}
    status = json.loads(cli.ok("status", "3.1", "--json").stdout)
    assert not status["tested"]


def test_dry_run_names_files_safely(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env: str
) -> None:
    cli = make_cli(tmp_path, database_url, smtp_server)
    cli.ok("subscribers", "add", BUCHER, POISON, TARO)
    store_unencodable(database_url)
    out = tmp_path / "dry"
    result = cli.ok("send", cli.issue, "--dry-run", str(out))  # type: ignore[attr-defined]
    assert f"wrote 7 message(s) to {out}/" in result.stdout  # all but the unencodable one
    names = sorted(p.name.split("-", 1)[1] for p in out.glob("*.eml"))
    assert names == sorted(
        [f"{a}.eml" for a in (*READERS, "seed@corp.test", BUCHER_WIRE)]
        + ["p_ison@attacker.test.eml", "___@xn--r8jz45g.test.eml"]
    )
    (bucher,) = out.glob(f"*-{BUCHER_WIRE}.eml")
    assert header(bucher.read_bytes(), b"To") == BUCHER_WIRE.encode()
    assert smtp_server.handler.received == []


def test_claim_refused_keeps_the_row_skipped(
    tmp_path: Path, database_url: str, send_env: str
) -> None:
    """An address that fails before sending, whose subscriber left meanwhile, is skipped
    (not failed): the claim's refusal stands, as for any other recipient."""
    config = load_config(write_config(tmp_path / "c.toml", database_url, NEWSLETTER))
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    store = db.open_store(database_url)
    try:
        with store.Session.begin() as session:
            subs.add_subscribers(session, [*READERS, POISON, BUCHER], allow_test_domains=True)
        store_unencodable(database_url)
        composed = compose_file(ISSUE, config)
        with store.Session.begin() as session:
            send.prepare_send(session, composed, skip_test=True)
            session.execute(  # they leave after the recipients were queued
                update(Subscriber)
                .where(Subscriber.email.in_([POISON, UNENCODABLE]))
                .values(status="unsubscribed")
            )
        capture = CaptureTransport(smtputf8=False)
        report = send.run_send(
            store, "3.1", config, MessageTemplate(composed, config), lambda: capture,
            SECRET.encode(),
        )  # fmt: skip
        assert report.state == "sent"
        with store.Session() as session:
            states = dict(session.execute(select(Delivery.address, Delivery.state)).all())
    finally:
        store.dispose()
    assert states[POISON] == states[UNENCODABLE] == "skipped"
    assert sorted(m.recipient for m in capture.messages) == sorted([*READERS, BUCHER_WIRE])


def test_worker_fails_the_utf8_recipient_alone(
    tmp_path: Path, pg_database_url: str, plain_server: SMTPServer, send_env: str
) -> None:
    cli = make_cli(tmp_path, pg_database_url, plain_server, "\n[workers]\nlease_seconds = 5\n")
    cli.ok("subscribers", "add", POISON, BUCHER)
    result = cli.ok("send", cli.issue, "--yes", "--skip-test", "--worker")  # type: ignore[attr-defined]
    assert "issue 3.1: sent; 5 sent, 1 failed" in result.stdout
    failed = log_rows(cli, "failed")
    assert list(failed) == [POISON]
    assert NEEDS_UTF8.format(port=plain_server.port) in failed[POISON]["message"]
    assert plain_server.handler.count(BUCHER_WIRE) == 1


def test_capture_smtp_sink_keeps_international_envelopes(tmp_path: Path) -> None:
    port = free_port()
    controller = start_capture(tmp_path / "captured", port=port)
    try:
        settings = SMTPSettings("127.0.0.1", port, security="none", timeout=5)

        async def send_two() -> list[str]:
            transport = SMTPTransport(settings)
            try:
                kinds = []
                for rcpt in (POISON, BUCHER):
                    outcome = await transport.send(
                        "weekly@transit-lab.test", rcpt, b"Subject: x\r\n\r\nhi\r\n"
                    )
                    kinds.append(outcome.kind)
                return kinds
            finally:
                await transport.close()

        assert run_coroutine(send_two()) == ["sent", "sent"]
        # a client that sends bytes that are not UTF-8 does not break the sink
        with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
            talk = conn.makefile("rwb")
            talk.readline()
            for line in (
                b"EHLO x",
                b"MAIL FROM:<a@corp.test> SMTPUTF8",
                b"RCPT TO:<l\xe4tin@corp.test>",
                b"DATA",
                b"Subject: y\r\n\r\nhi\r\n.",
                b"QUIT",
            ):
                talk.write(line + b"\r\n")
                talk.flush()
                reply = talk.readline()
                while reply[3:4] == b"-":
                    reply = talk.readline()
                assert reply[:1] in (b"2", b"3"), (line, reply)
    finally:
        controller.stop()
    box = mailbox.Maildir(str(tmp_path / "captured"), create=False)
    heads = sorted(box.get_bytes(key).split(b"\r\n")[1] for key in box.keys())
    assert heads == sorted(
        [f"Delivered-To: {a}".encode() for a in (POISON, BUCHER_WIRE)]
        + [b"Delivered-To: l\xe4tin@corp.test"]  # the bytes as they came
    )
