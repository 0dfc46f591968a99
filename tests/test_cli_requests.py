"""`digest-mailer requests ...` end to end: mbox, Maildir and a real IMAP server (Dovecot)."""

import json
import mailbox
import os
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, Cli, smtp_section, write_config, write_mbox
from smtp_server import SMTPServer

CORPUS = DATA / "requests"
FEW = [
    "s01-subject-only.eml",
    "u12-not-subscribed.eml",
    "i01-auto-submitted.eml",
    "r02-question.eml",
    "b01-postfix.eml",
]


@pytest.fixture
def req_cli(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env) -> Cli:  # type: ignore[no-untyped-def]
    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(smtp_server.port)
    )
    cli = Cli(config)
    cli.ok("init")
    return cli


def test_process_json_review_resolve_and_list(
    req_cli: Cli, tmp_path: Path, smtp_server: SMTPServer
) -> None:
    path = write_mbox(tmp_path / "in.mbox", FEW)
    dry = json.loads(
        req_cli.ok("requests", "process", "--mbox", str(path), "--dry-run", "--json").stdout
    )
    assert [d["label"] for d in dry] == ["subscribe", "unsubscribe", "ignore", "review", "bounce"]
    assert smtp_server.handler.received == []
    assert json.loads(req_cli.ok("subscribers", "list", "--json").stdout) == []

    done = json.loads(req_cli.ok("requests", "process", "--mbox", str(path), "--json").stdout)
    assert set(done[0]) == {"message_id", "from", "label", "address", "action", "reason"}
    assert done[0] == {
        "message_id": done[0]["message_id"],
        "from": "carla@mail.test",
        "label": "subscribe",
        "address": "carla@mail.test",
        "action": "pending: confirmation sent to carla@mail.test",
        "reason": "asks to subscribe",
    }
    assert done[1]["action"] == "none: not subscribed; acknowledgement sent"
    assert sorted(smtp_server.addresses()) == ["carla@mail.test", "stranger@else.test"]
    people = json.loads(req_cli.ok("subscribers", "list", "--json").stdout)
    assert [(p["email"], p["status"], p["source"]) for p in people] == [
        ("carla@mail.test", "pending", "email-request")
    ]

    review = json.loads(req_cli.ok("requests", "review", "--json").stdout)
    assert [(r["from"], r["reason"]) for r in review] == [
        ("sue@corp.test", "a question, no subscription request")
    ]
    assert "How often does the digest come out?" in review[0]["excerpt"]
    shown = req_cli.ok("requests", "review").stdout
    assert "sue@corp.test" in shown and "| How often" in shown
    resolved = req_cli.ok("requests", "resolve", str(review[0]["id"]), "subscribe")
    assert "pending: confirmation sent to sue@corp.test" in resolved.stdout
    assert smtp_server.addresses()[-1] == "sue@corp.test"
    assert req_cli.ok("requests", "review").stdout.startswith("no requests waiting")
    again = req_cli("requests", "resolve", str(review[0]["id"]), "ignore")
    assert again.exit_code == 1 and "not waiting for review" in again.stderr
    bad = req_cli("requests", "resolve", str(review[0]["id"]), "maybe")
    assert bad.exit_code == 1 and "resolve with one of subscribe" in bad.stderr

    listed = json.loads(req_cli.ok("requests", "list", "--label", "bounce", "--json").stdout)
    assert [r["from"] for r in listed] == ["MAILER-DAEMON@mx.transit-lab.test"]
    table = req_cli.ok("requests", "process", "--mbox", str(path)).stdout
    assert "5 message(s)" in table and "; 5 already processed before" in table
    assert table.count("none: already processed") == 5


def test_maildir_from_config_and_human_output(req_cli: Cli, tmp_path: Path) -> None:
    box = mailbox.Maildir(str(tmp_path / "Maildir"))
    for name in FEW:
        box.add((CORPUS / name).read_bytes())
    with req_cli.config.open("a") as f:
        f.write('\n[inbox]\nmaildir = "Maildir"\n')
    result = req_cli.ok("requests", "process", "--dry-run")
    assert "1 subscribe, 1 unsubscribe, 1 bounce, 1 ignore, 1 review" in result.stdout
    assert "dry run: nothing changed" in result.stdout


def test_bad_input_is_one_line(req_cli: Cli, tmp_path: Path) -> None:
    missing = req_cli("requests", "process", "--mbox", str(tmp_path / "nope.mbox"))
    assert missing.exit_code == 1 and missing.stderr.strip().startswith("error: mbox file")
    assert "Traceback" not in missing.output
    both = req_cli("requests", "process", "--mbox", "a", "--maildir", "b")
    assert both.exit_code == 1 and "give one of --mbox, --maildir or --imap" in both.stderr
    unset = req_cli("requests", "process")
    assert unset.exit_code == 2 and "no request mailbox" in unset.stderr
    not_maildir = req_cli("requests", "process", "--maildir", str(tmp_path))
    assert not_maildir.exit_code == 1 and "is not a Maildir" in not_maildir.stderr
    assert req_cli("requests", "list", "--label", "spam").exit_code == 2


# --------------------------------------------------------------------------- IMAP (Dovecot)


PASSIVE = [
    (CORPUS / name).read_bytes() for name in FEW if name.startswith(("i", "r"))
]  # ignored or held: left alone in the inbox


def message_id_line(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return next(line for line in text.splitlines() if line.lower().startswith("message-id:"))


def imap_cli(
    req_cli: Cli, dovecot, ca: bool = True, password: str = "", move_all: bool = False
) -> Cli:  # type: ignore[no-untyped-def]
    from imap_server import PASSWORD, USER

    os.environ["DIGEST_IMAP_PASSWORD"] = password or PASSWORD
    path = req_cli.config.with_name(f"imap-{ca}.toml")
    text = req_cli.config.read_text() + (
        f'\n[inbox]\nimap_host = "127.0.0.1"\nimap_port = {dovecot.port}\nimap_user = "{USER}"\n'
        'imap_password_env = "DIGEST_IMAP_PASSWORD"\nimap_processed_folder = "Processed"\n'
        + (f'imap_ca_file = "{dovecot.ca_file}"\n' if ca else "")
        + ("imap_move_all = true\n" if move_all else "")
    )
    path.write_text(text)
    return Cli(path)


def test_imap_processes_marks_and_moves_each_message_once(
    req_cli: Cli, dovecot, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_IMAP_PASSWORD", "")
    for i, name in enumerate(FEW):
        # one message was already read by a person in their mail client: still processed
        dovecot.append((CORPUS / name).read_bytes(), "\\Seen" if i == 0 else "")
    cli = imap_cli(req_cli, dovecot)

    dry = json.loads(cli.ok("requests", "process", "--imap", "--dry-run", "--json").stdout)
    assert [d["label"] for d in dry] == ["subscribe", "unsubscribe", "ignore", "review", "bounce"]
    inbox = dovecot.folder_state("INBOX")
    assert len(inbox) == 5 and sum(b"\\Seen" in flags for flags, _ in inbox) == 1

    done = json.loads(cli.ok("requests", "process", "--json").stdout)  # [inbox] decides
    assert [d["label"] for d in done] == [d["label"] for d in dry]
    # the request address may be a person's inbox: what was ignored or held stays where
    # it was, unread (only the person's own \\Seen stays), marked processed by keyword
    kept = dovecot.folder_state("INBOX")
    assert sorted(m.lower() for _, m in kept) == sorted(message_id_line(m).lower() for m in PASSIVE)
    assert all(b"$DigestProcessed" in flags and b"\\Seen" not in flags for flags, _ in kept)
    moved = dovecot.folder_state("Processed")
    assert len(moved) == 3
    assert all(b"\\Seen" in flags and b"$DigestProcessed" in flags for flags, _ in moved)
    assert sorted(smtp_server.addresses()) == ["carla@mail.test", "stranger@else.test"]

    # a message arriving later is the only one read next time; the personal ones stay
    dovecot.append((CORPUS / "u01-subject-only.eml").read_bytes())
    later = json.loads(cli.ok("requests", "process", "--imap", "--json").stdout)
    assert [(d["label"], d["from"]) for d in later] == [("unsubscribe", "ben@corp.test")]
    assert dovecot.folder_state("INBOX") == kept


def test_imap_move_all_marks_and_moves_every_message(
    req_cli: Cli, dovecot, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_IMAP_PASSWORD", "")
    for name in FEW:
        dovecot.append((CORPUS / name).read_bytes())
    cli = imap_cli(req_cli, dovecot, move_all=True)
    cli.ok("requests", "process", "--json")
    assert dovecot.folder_state("INBOX") == []
    moved = dovecot.folder_state("Processed")
    assert len(moved) == 5 and all(b"\\Seen" in flags for flags, _ in moved)


def test_imap_certificate_and_login_failures_are_one_line(
    req_cli: Cli, dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("DIGEST_IMAP_PASSWORD", "")
    untrusted = imap_cli(req_cli, dovecot, ca=False)("requests", "process", "--imap")
    assert untrusted.exit_code == 7
    assert "could not be verified" in untrusted.stderr and "Traceback" not in untrusted.output
    wrong = imap_cli(req_cli, dovecot, password="wrong")("requests", "process", "--imap")
    assert wrong.exit_code == 7 and "AUTHENTICATIONFAILED" in wrong.stderr.replace(" ", "")
    os.environ.pop("DIGEST_IMAP_PASSWORD", None)
    unset = imap_cli(req_cli, dovecot)
    os.environ.pop("DIGEST_IMAP_PASSWORD", None)
    missing = unset("requests", "process", "--imap")
    assert missing.exit_code == 2 and "DIGEST_IMAP_PASSWORD" in missing.stderr
