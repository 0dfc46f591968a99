"""Signed sends, VERP return paths and bounce processing, end to end through the CLI and a
real SMTP server (aiosmtpd on loopback)."""

import json
import mailbox
import shutil
from pathlib import Path

import dkim
import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import select

from digest_mailer import db
from digest_mailer.models import Bounce, Delivery
from digest_mailer.signing import GeneratedKey, generate_key
from digest_mailer.tokens import verp_deliveries

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
BOUNCE_ADDRESS = "bounces@transit-lab.test"
READERS = ["r0@corp.test", "r1@corp.test", "r2@corp.test", "r3@corp.test"]
GONE = "gone@corp.test"


@pytest.fixture
def key(tmp_path: Path) -> GeneratedKey:
    (tmp_path / "keys").mkdir()
    return generate_key("digest2026", "transit-lab.test", tmp_path / "keys")


@pytest.fixture
def dm(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env, key) -> Cli:  # type: ignore[no-untyped-def]
    newsletter = NEWSLETTER.replace(
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"',
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
        f'bounce_address = "{BOUNCE_ADDRESS}"',
    )
    dkim_section = (
        '\n[dkim]\nselector = "digest2026"\ndomain = "transit-lab.test"\n'
        f'private_key_file = "{key.private_path}"\n'
    )
    config = write_config(
        tmp_path / "config.toml",
        database_url,
        newsletter + smtp_section(smtp_server.port) + dkim_section,
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", *READERS, GONE)
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    cli.issue = str(tmp_path / "vol-3.1.txt")  # type: ignore[attr-defined]
    cli.url = database_url  # type: ignore[attr-defined]
    smtp_server.handler.perm_fail.add(GONE)
    return cli


def verifies(data: bytes, key: GeneratedKey) -> bool:
    records = {f"{key.dns_name}.".encode(): key.dns_value.encode()}
    return bool(dkim.verify(data, dnsfunc=lambda name, timeout=5: records.get(name)))


def deliveries(url: str) -> dict[int, Delivery]:
    store = db.open_store(url)
    try:
        with store.Session() as session:
            return {d.id: d for d in session.scalars(select(Delivery))}
    finally:
        store.dispose()


def status(dm: Cli, address: str) -> str:
    rows = json.loads(dm.ok("subscribers", "list", "--status", "bounced", "--json").stdout)
    rows += json.loads(dm.ok("subscribers", "list", "--status", "complained", "--json").stdout)
    found = [r["status"] for r in rows if r["email"] == address]
    return found[0] if found else "active"


def send_issue(dm: Cli) -> None:
    dm.ok("send", dm.issue, "--test")  # type: ignore[attr-defined]
    dm.ok("send", dm.issue, "--yes")  # type: ignore[attr-defined]


def test_every_message_is_signed_and_its_return_path_names_its_delivery(
    dm: Cli, smtp_server: SMTPServer, key: GeneratedKey
) -> None:
    smtp_server.handler.temp_fail["r0@corp.test"] = 1  # a retry sends the signed copy again
    send_issue(dm)
    received = smtp_server.handler.received
    test_copy, *sent = received
    assert test_copy.rcpt == "seed@corp.test" and test_copy.mail_from == BOUNCE_ADDRESS
    assert sorted(r.rcpt for r in sent) == sorted(["seed@corp.test", *READERS])
    rows = deliveries(dm.url)  # type: ignore[attr-defined]
    for message in received:
        assert verifies(message.data, key), message.rcpt
        signed = message.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n", b"").replace(b" ", b"")
        assert b"list-unsubscribe:list-unsubscribe:list-unsubscribe-post" in signed.lower()
    for message in sent:
        assert message.mail_from.startswith("bounces+")
        ids = verp_deliveries(SECRET.encode(), BOUNCE_ADDRESS, message.mail_from)
        assert len(ids) == 1 and rows[ids[0]].address == message.rcpt
        assert rows[ids[0]].message_id == message.message["Message-ID"]
    # the refused recipient is a hard bounce at send time: 5.1.1 bounces at once
    gone = next(d for d in rows.values() if d.address == GONE)
    assert gone.state == "failed" and gone.smtp_code == 550
    assert status(dm, GONE) == "bounced"
    report = json.loads(dm.ok("status", "3.1", "--json").stdout)
    assert report["bounces"] == {"bounced": 1, "complained": 0}
    listed = json.loads(dm.ok("bounces", "list", "--json").stdout)
    assert [
        (b["address"], b["kind"], b["status"], b["matched_by"], b["action"]) for b in listed
    ] == [(GONE, "hard", "5.1.1", "send", "bounced")]
    assert listed[0]["issue"] == "3.1"


def dsn_to(return_path: str, address: str, status: str, message_id: str) -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.corp.test\nTo: {return_path}\n"
        "Date: Fri, 20 Nov 2026 10:00:00 +0000\nSubject: Undelivered Mail Returned to Sender\n"
        f"Message-ID: <{message_id}@mx.corp.test>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.corp.test\n\n"
        f"Final-Recipient: rfc822; {address}\nAction: failed\nStatus: {status}\n\n--b--\n"
    ).encode()


def arf_to(return_path: str, address: str) -> bytes:
    return (
        f"From: fbl@isp.test\nTo: {BOUNCE_ADDRESS}\nDate: Fri, 20 Nov 2026 11:00:00 +0000\n"
        "Subject: abuse report\nMessage-ID: <arf-1@isp.test>\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="f"\n\n'
        "--f\nContent-Type: text/plain\n\nA user reported this message as spam.\n\n"
        "--f\nContent-Type: message/feedback-report\n\nFeedback-Type: abuse\n"
        f"User-Agent: ISP-FBL/1\nVersion: 1\nOriginal-Mail-From: <{return_path}>\n\n"
        f"--f\nContent-Type: text/rfc822-headers\n\nTo: {address}\n\n--f--\n"
    ).encode()


def test_bounces_process_reads_reports_sent_back_to_the_verp_address(
    dm: Cli, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    send_issue(dm)
    paths = {r.rcpt: r.mail_from for r in smtp_server.handler.received[1:]}
    box = mailbox.mbox(str(tmp_path / "bounces.mbox"))
    # r1's report names only its forwarding address: the VERP token still finds r1
    box.add(dsn_to(paths["r1@corp.test"], "r1.forwarded@elsewhere.test", "5.2.1", "dsn-1"))
    box.add(arf_to(paths["r2@corp.test"], "redacted@isp.test"))
    box.add(
        b"From: r3@corp.test\nTo: " + paths["r3@corp.test"].encode() + b"\nSubject: Automatic "
        b"reply: away\nAuto-Submitted: auto-replied\nMessage-ID: <ooo-1@corp.test>\n\nAway.\n"
    )
    box.close()
    mbox = str(tmp_path / "bounces.mbox")
    dry = json.loads(dm.ok("bounces", "process", "--mbox", mbox, "--dry-run", "--json").stdout)
    assert json.loads(dm.ok("bounces", "list", "--json").stdout)[1:] == []  # dry: nothing new
    result = json.loads(dm.ok("bounces", "process", "--mbox", mbox, "--json").stdout)
    assert result == dry
    assert result == [
        {
            "message_id": "<dsn-1@mx.corp.test>",
            "address": "r1@corp.test",
            "kind": "hard",
            "status": "5.2.1",
            "action": "scored: 1 of 3",
            "proof": "verp",
        },
        {
            "message_id": "<arf-1@isp.test>",
            "address": "r2@corp.test",
            "kind": "complaint",
            "status": "",
            "action": "complained",
            "proof": "verp",
        },
        {
            "message_id": "<ooo-1@corp.test>",
            "address": None,
            "kind": None,
            "status": "",
            "action": "ignored: not a report (automatic reply (Auto-Submitted: auto-replied))",
            "proof": "",
        },
    ]
    assert status(dm, "r1@corp.test") == "active" and status(dm, "r2@corp.test") == "complained"
    again = json.loads(dm.ok("bounces", "process", "--mbox", mbox, "--json").stdout)
    assert [r["action"] for r in again[:2]] == ["none: already processed"] * 2
    report = json.loads(dm.ok("status", "3.1", "--json").stdout)
    assert report["bounces"] == {"bounced": 2, "complained": 1}
    store = db.open_store(dm.url)  # type: ignore[attr-defined]
    with store.Session() as session:
        matched = session.execute(select(Bounce.address, Bounce.matched_by)).all()
    store.dispose()
    assert sorted(matched) == [(GONE, "send"), ("r1@corp.test", "verp"), ("r2@corp.test", "verp")]
    text = dm.ok("bounces", "list", "--since", "2026-01-01").stdout
    assert "r1@corp.test" in text and "complained" in text
    bad = dm("bounces", "list", "--since", "yesterday")
    assert bad.exit_code == 2 and "2026-11-01" in bad.output


def test_a_bounce_in_the_request_mailbox_is_scored_and_replies_are_signed(
    dm: Cli, smtp_server: SMTPServer, tmp_path: Path, key: GeneratedKey
) -> None:
    send_issue(dm)
    paths = {r.rcpt: r.mail_from for r in smtp_server.handler.received[1:]}
    box = mailbox.mbox(str(tmp_path / "requests.mbox"))
    box.add(dsn_to(paths["r3@corp.test"], "r3@corp.test", "5.1.1", "dsn-r3"))
    box.add((DATA / "requests" / "s01-subject-only.eml").read_bytes())
    box.close()
    before = len(smtp_server.handler.received)
    result = json.loads(
        dm.ok("requests", "process", "--mbox", str(tmp_path / "requests.mbox"), "--json").stdout
    )
    assert result[0]["label"] == "bounce" and result[0]["action"] == "r3@corp.test: bounced"
    assert status(dm, "r3@corp.test") == "bounced"
    confirmation = smtp_server.handler.received[before:]
    assert [r.rcpt for r in confirmation] == ["carla@mail.test"]
    assert verifies(confirmation[0].data, key)
    assert confirmation[0].mail_from == BOUNCE_ADDRESS


def test_no_mailbox_and_a_bad_key_are_one_line_each(
    dm: Cli, smtp_server: SMTPServer, key: GeneratedKey
) -> None:
    result = dm("bounces", "process")
    assert result.exit_code != 0 and "no bounce mailbox" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    key.private_path.chmod(0o644)
    refused = dm("send", dm.issue, "--test")  # type: ignore[attr-defined]
    assert refused.exit_code != 0 and "chmod 600" in refused.stderr
    assert "Traceback" not in refused.output and smtp_server.handler.received == []


def test_bounces_are_read_from_their_own_imap_folder(
    dm: Cli, smtp_server: SMTPServer, dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    from imap_server import PASSWORD, USER

    send_issue(dm)
    paths = {r.rcpt: r.mail_from for r in smtp_server.handler.received[1:]}
    conn = dovecot.connect()
    conn.create("Bounces")
    conn.logout()
    dovecot.append(dsn_to(paths["r0@corp.test"], "r0@corp.test", "5.1.1", "imap-1"), "", "Bounces")
    dovecot.append((DATA / "requests" / "s01-subject-only.eml").read_bytes())  # a request
    monkeypatch.setenv("DIGEST_IMAP_PASSWORD", PASSWORD)
    config = dm.config.read_text() + (
        f'\n[inbox]\nimap_host = "127.0.0.1"\nimap_port = {dovecot.port}\nimap_user = "{USER}"\n'
        f'imap_password_env = "DIGEST_IMAP_PASSWORD"\nimap_ca_file = "{dovecot.ca_file}"\n'
        '\n[bounces]\nimap_folder = "Bounces"\nimap_processed_folder = "BouncesDone"\n'
    )
    dm.config.write_text(config)
    done = json.loads(dm.ok("bounces", "process", "--json").stdout)  # [bounces] decides
    assert [(d["address"], d["action"]) for d in done] == [("r0@corp.test", "bounced")]
    assert dovecot.folder_state("Bounces") == []
    moved = dovecot.folder_state("BouncesDone")
    assert len(moved) == 1 and b"$DigestBounceProcessed" in moved[0][0]
    # the request mailbox was not touched: its message still waits for `requests process`
    inbox = dovecot.folder_state("INBOX")
    assert len(inbox) == 1 and b"$DigestProcessed" not in inbox[0][0]
    assert json.loads(dm.ok("bounces", "process", "--imap", "--json").stdout) == []
