import csv
import io
import json
import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer, free_port
from sqlalchemy import select

from digest_mailer import db
from digest_mailer.models import Delivery

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"


@pytest.fixture
def send_cli(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env) -> Cli:  # type: ignore[no-untyped-def]
    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(smtp_server.port)
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", *[f"r{i}@corp.test" for i in range(5)])
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    cli.issue = str(tmp_path / "vol-3.1.txt")  # type: ignore[attr-defined]
    return cli


def test_test_send_then_send_then_report(
    send_cli: Cli, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    issue = send_cli.issue  # type: ignore[attr-defined]
    refused = send_cli("send", issue, "--yes")
    assert refused.exit_code == 4 and "--test` first" in refused.stderr
    assert smtp_server.handler.received == []
    assert send_cli("send", issue, "--to", "x@corp.test").exit_code == 2  # --to needs --test
    tested = send_cli.ok("send", issue, "--test")
    assert "1 of 1 accepted" in tested.stdout
    send_cli.ok("send", issue, "--test", "--to", "outside@else.test")
    assert send_cli("send", issue, input="n\n").exit_code == 1  # declined: nothing queued
    status = json.loads(send_cli.ok("status", "3.1", "--json").stdout)
    assert status["state"] == "tested" and sum(status["counts"].values()) == 0
    result = send_cli.ok("send", issue, input="y\n")
    assert "issue 3.1: sent; 6 sent" in result.stdout
    status = json.loads(send_cli.ok("status", "3.1", "--json").stdout)
    assert {k: status[k] for k in ("issue", "state")} == {"issue": "3.1", "state": "sent"}
    assert len(status["fingerprint"]) == 64
    assert status["counts"] == {
        "queued": 0,
        "claimed": 0,
        "sending": 0,
        "sent": 6,
        "deferred": 0,
        "failed": 0,
        "uncertain": 0,
        "skipped": 0,
    }
    every = json.loads(send_cli.ok("status", "--json").stdout)
    assert [s["issue"] for s in every] == ["3.1"]
    log = json.loads(send_cli.ok("log", "3.1", "--json").stdout)
    assert len(log) == 6 and {r["state"] for r in log} == {"sent"}
    assert set(log[0]) == {"address", "state", "attempts", "code", "message", "time", "message_id"}
    rows = list(csv.DictReader(io.StringIO(send_cli.ok("log", "3.1", "--csv").stdout)))
    assert [r["address"] for r in rows] == [r["address"] for r in log]
    assert json.loads(send_cli.ok("log", "3.1", "--state", "failed", "--json").stdout) == []
    again = send_cli.ok("send", issue, "--yes")
    assert "nothing to send: issue 3.1 is sent (6 sent)" in again.stdout
    assert len(smtp_server.handler.received) == 6 + 2  # two test copies, six real ones
    assert send_cli("log", "9.9").exit_code == 1
    missing = send_cli("log", "9.9", "--csv")
    assert missing.exit_code == 1 and missing.stdout == ""  # no header-only file behind


def test_dry_run_writes_eml_files(send_cli: Cli, tmp_path: Path, smtp_server: SMTPServer) -> None:
    out = tmp_path / "dry"
    result = send_cli.ok("send", send_cli.issue, "--dry-run", str(out))  # type: ignore[attr-defined]
    assert "wrote 6 message(s)" in result.stdout
    files = sorted(out.glob("*.eml"))
    assert len(files) == 6 and smtp_server.handler.received == []
    msg = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert msg["Subject"].startswith("Transit Policy Weekly")
    assert json.loads(send_cli.ok("status", "--json").stdout) == []


def test_missing_secret_stops_before_anything_is_sent(
    send_cli: Cli, smtp_server, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("DIGEST_MAILER_SECRET")
    result = send_cli("send", send_cli.issue, "--test")  # type: ignore[attr-defined]
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error: environment variable DIGEST_MAILER_SECRET")
    assert smtp_server.handler.received == []


def test_unreachable_server_is_a_clear_pause(send_cli: Cli, smtp_server: SMTPServer) -> None:
    smtp_server.stop()
    result = send_cli("send", send_cli.issue, "--yes", "--skip-test")  # type: ignore[attr-defined]
    assert result.exit_code == 5
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: send paused: cannot connect to 127.0.0.1:")
    assert "nothing was lost: run `digest-mailer send" in last
    assert "Traceback" not in result.output
    smtp_server.start()
    assert "6 sent" in send_cli.ok("send", send_cli.issue, "--yes").stdout  # type: ignore[attr-defined]


def subprocess_send(
    tmp_path: Path, database_url: str, server: SMTPServer, addresses: list[str]
) -> tuple[list[str], dict[str, str]]:
    """A store with ``addresses`` subscribed, and the `send` command line to run it."""
    config = write_config(
        tmp_path / "config.toml",
        database_url,
        NEWSLETTER + smtp_section(server.port, connections=2),
    )
    cli = Cli(config)
    cli.ok("init")
    people = tmp_path / "people.csv"
    people.write_text("email\n" + "".join(f"{a}\n" for a in addresses))
    cli.ok("subscribers", "import", str(people))
    issue = tmp_path / "vol-3.1.txt"
    shutil.copy(ISSUE, issue)
    command = [
        sys.executable,
        "-m",
        "digest_mailer",
        "--config",
        str(config),
        "send",
        str(issue),
        "--yes",
        "--skip-test",
    ]
    return command, {**os.environ, "DIGEST_MAILER_SECRET": SECRET}


def wait_until_received(server: SMTPServer, count: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while len(server.handler.received) < count and time.monotonic() < deadline:
        time.sleep(0.01)


def delivery_states(database_url: str) -> dict[str, str]:
    store = db.open_store(database_url)
    with store.Session() as session:
        states = dict(session.execute(select(Delivery.address, Delivery.state)).all())
    store.dispose()
    return states


@pytest.mark.slow
def test_sigkill_mid_send_then_resume(tmp_path: Path, database_url: str, send_env) -> None:  # type: ignore[no-untyped-def]
    server = SMTPServer().start()
    server.handler.delay = 0.004
    try:
        everyone = [f"p{i:04d}@corp.test" for i in range(400)]
        command, env = subprocess_send(tmp_path, database_url, server, everyone)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        wait_until_received(server, 120, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        killed_at = len(server.handler.received)
        assert 120 <= killed_at < 400, killed_at
        resume = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert resume.returncode == 0, resume.stderr
        states = delivery_states(database_url)
        uncertain = [a for a, s in states.items() if s == "uncertain"]
        assert len(uncertain) <= 2  # at most one per connection
        if uncertain:
            assert "now uncertain" in resume.stderr
        counts = dict.fromkeys(everyone, 0)
        for address in server.addresses():
            counts[address] += 1
        for address, got in counts.items():
            if address in uncertain:
                assert got <= 1, address
            else:
                assert got == 1, (address, got, states[address])
                assert states[address] == "sent"
    finally:
        server.stop()


@pytest.mark.slow
def test_capture_smtp_command_stores_to_maildir(tmp_path: Path) -> None:
    port = free_port()
    box = tmp_path / "box"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digest_mailer",
            "capture-smtp",
            "--maildir",
            str(box),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        import smtplib

        deadline = time.monotonic() + 20
        while True:
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
                    smtp.sendmail(
                        "from@corp.test",
                        ["a@corp.test", "b@corp.test"],
                        b"Subject: hi\r\n\r\nbody\r\n",
                    )
                break
            except OSError:
                assert time.monotonic() < deadline, "capture server did not start"
                time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0 and "2 message(s) captured" in stdout
    messages = list(mailbox.Maildir(str(box)))
    assert sorted(m["Delivered-To"] for m in messages) == ["a@corp.test", "b@corp.test"]
    assert {m["Return-Path"] for m in messages} == {"<from@corp.test>"}


@pytest.mark.slow
def test_ctrl_c_pauses_cleanly_and_resumes(tmp_path: Path, database_url: str, send_env) -> None:  # type: ignore[no-untyped-def]
    server = SMTPServer().start()
    server.handler.delay = 0.01
    try:
        everyone = [f"c{i:03d}@corp.test" for i in range(150)]
        command, env = subprocess_send(tmp_path, database_url, server, everyone)
        proc = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        wait_until_received(server, 20, 30)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
        assert proc.returncode == 5, stderr
        assert "pausing: finishing the messages in hand" in stderr
        assert "send paused: stopped by request; nothing was lost" in stderr
        states = list(delivery_states(database_url).values())
        assert "sending" not in states and "uncertain" not in states
        assert states.count("sent") == len(server.handler.received) < 150
        resume = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert resume.returncode == 0, resume.stderr
        assert sorted(server.addresses()) == everyone
    finally:
        server.stop()


ARTICLE = """Separator

{title}

Separator

{body}

---

"To receive this digest by email, write to weekly@transit-lab.test."
"""


def test_a_new_issue_saved_under_a_sent_id_is_refused_not_swallowed(
    send_cli: Cli, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    """Issue 14, item 3: without a Vol: line the id is the file name; a second article
    saved as article.txt must never be reported as 'nothing to send' with exit 0."""
    article = tmp_path / "article.txt"
    article.write_text(ARTICLE.format(title="Transit fares in 2027", body="First article."))
    send_cli.ok("send", str(article), "--test")
    send_cli.ok("send", str(article), "--yes")
    first = len(smtp_server.handler.received)
    article.write_text(ARTICLE.format(title="Bus lanes that work", body="A new article."))
    for extra in ([], ["--allow-changed"], ["--test"]):
        refused = send_cli("send", str(article), "--yes", *extra)
        assert refused.exit_code == 4, refused.output
        assert "issue article was already sent" in refused.stderr
        assert "the file name 'article.txt'" in refused.stderr and "--issue-id" in refused.stderr
        assert "Traceback" not in refused.output
    assert len(smtp_server.handler.received) == first  # nobody got anything
    # given its own id, the new article goes out to everyone
    send_cli.ok("send", str(article), "--test", "--issue-id", "article-2")
    sent = send_cli.ok("send", str(article), "--yes", "--issue-id", "article-2")
    assert "issue article-2: sent; 6 sent" in sent.stdout
    bad = send_cli("send", str(article), "--yes", "--issue-id", "two words")
    assert bad.exit_code == 1 and "--issue-id" in bad.stderr
