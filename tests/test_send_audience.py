"""Sends to lists, one send at a time (the lease), truthful exit codes, quiet sends and
output that reads at 80 columns."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import select

from digest_mailer import db, lease
from digest_mailer.errors import SendRefused
from digest_mailer.models import Delivery, Issue, SendWorker, utcnow

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
BOARD = ["ana@board.test", "ben@board.test", "cai@board.test"]
STAFF = ["ben@board.test", "dee@staff.test"]  # ben is on both
INTERNS = ["eli@interns.test"]
OTHERS = ["fay@readers.test", "gus@readers.test"]


@pytest.fixture
def lists_cli(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env) -> Cli:  # type: ignore[no-untyped-def]
    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(smtp_server.port)
    )
    cli = Cli(config)
    cli.ok("init")
    for name in ("board", "staff", "interns"):
        cli.ok("lists", "create", name)
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", *BOARD, "--list", "board")
    cli.ok("subscribers", "add", *STAFF, "--list", "staff")
    cli.ok("subscribers", "add", *INTERNS, "--list", "interns")
    cli.ok("subscribers", "add", *INTERNS, "--list", "staff")  # on both
    cli.ok("subscribers", "add", *OTHERS)
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    cli.issue = str(tmp_path / "vol-3.1.txt")  # type: ignore[attr-defined]
    cli.ok("send", cli.issue, "--test")  # type: ignore[attr-defined]
    return cli


def received(server: SMTPServer) -> list[str]:
    return sorted(r.rcpt for r in server.handler.received if "[TEST]" not in r.data.decode())


def test_a_send_to_lists_then_to_the_rest_reaches_each_person_once(
    lists_cli: Cli, smtp_server: SMTPServer
) -> None:
    issue = lists_cli.issue  # type: ignore[attr-defined]
    first = lists_cli.ok("send", issue, "--list", "board", "--yes")
    assert "3 sent" in first.stdout
    assert received(smtp_server) == sorted(BOARD)
    status = json.loads(lists_cli.ok("status", "3.1", "--json").stdout)
    assert status["audiences"] == ["lists: board"] and status["state"] == "sent"
    # staff, not interns: only dee is new (ben had it with the board)
    second = lists_cli.ok("send", issue, "--list", "staff", "--exclude-list", "interns", "--yes")
    assert "1 more recipient(s): lists: staff; not: interns" in second.stderr, second.stderr
    assert received(smtp_server) == sorted([*BOARD, "dee@staff.test"])
    # the same audience again adds nobody
    again = lists_cli.ok("send", issue, "--list", "board", "--yes")
    assert "nothing to send" in again.stdout
    # everyone: the rest, and the seed address, once each
    lists_cli.ok("send", issue, "--yes")
    everyone = sorted([*BOARD, "dee@staff.test", *INTERNS, *OTHERS, "seed@corp.test"])
    assert received(smtp_server) == everyone
    status = json.loads(lists_cli.ok("status", "3.1", "--json").stdout)
    assert status["audiences"] == [
        "lists: board",
        "lists: staff; not: interns",
        "everyone",
    ]
    card = lists_cli.ok("status", "3.1").stdout
    assert "lists: staff; not: interns" in card


def test_a_missing_or_contradictory_list_sends_nothing(
    lists_cli: Cli, smtp_server: SMTPServer
) -> None:
    issue = lists_cli.issue  # type: ignore[attr-defined]
    missing = lists_cli("send", issue, "--list", "bord", "--yes")
    assert missing.exit_code == 1 and "no list named 'bord'" in missing.stderr
    both = lists_cli("send", issue, "--list", "board", "--exclude-list", "board", "--yes")
    assert both.exit_code == 1 and "both sent to and excluded" in both.stderr
    assert received(smtp_server) == []
    status = json.loads(lists_cli.ok("status", "3.1", "--json").stdout)
    assert status["state"] == "tested" and status["audiences"] == []


def test_excluding_a_list_from_everyone(lists_cli: Cli, smtp_server: SMTPServer) -> None:
    lists_cli.ok("send", lists_cli.issue, "--exclude-list", "staff", "--yes")  # type: ignore[attr-defined]
    assert received(smtp_server) == sorted(
        ["ana@board.test", "cai@board.test", *OTHERS, "seed@corp.test"]
    )


def test_the_question_shows_the_audience_and_holds_no_lock(
    lists_cli: Cli, smtp_server: SMTPServer
) -> None:
    declined = lists_cli("send", lists_cli.issue, "--list", "board", input="n\n")  # type: ignore[attr-defined]
    assert declined.exit_code == 1
    assert "to 3 recipient(s) (lists: board)" in declined.output
    status = json.loads(lists_cli.ok("status", "3.1", "--json").stdout)
    assert status["state"] == "tested" and sum(status["counts"].values()) == 0
    assert status["workers"] == []  # no lease was taken for a send that did not start


def test_a_failed_test_send_has_its_own_exit_code(lists_cli: Cli, smtp_server: SMTPServer) -> None:
    smtp_server.handler.perm_fail.add("nobody@corp.test")
    result = lists_cli("send", lists_cli.issue, "--test", "--to", "nobody@corp.test")  # type: ignore[attr-defined]
    assert result.exit_code == 6
    assert "the test send failed: 1 of 1" in result.stderr
    assert "paused" not in result.output


def test_lint_warnings_are_counted_not_repeated(lists_cli: Cli, tmp_path: Path) -> None:
    noisy = tmp_path / "noisy.txt"
    text = ISSUE.read_text("utf-8").replace("https://", "http://")
    noisy.write_text(text, "utf-8")
    composed = lists_cli("compose", str(noisy), "--out", str(tmp_path / "out"))
    warnings = [ln for ln in composed.stderr.splitlines() if ln.startswith("warning:")]
    assert warnings, composed.stderr  # the issue has some warnings to count
    quiet = lists_cli.ok("send", str(noisy), "--test")
    assert not [ln for ln in quiet.stderr.splitlines() if ln.startswith("warning:")]
    assert f"{len(warnings)} warning(s): `digest-mailer compose {noisy}` lists them" in quiet.stderr
    loud = lists_cli.ok("send", str(noisy), "--test", "--verbose")
    assert [ln for ln in loud.stderr.splitlines() if ln.startswith("warning:")] == warnings


def test_status_and_log_read_at_80_columns(
    lists_cli: Cli, smtp_server: SMTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    smtp_server.handler.perm_fail.add("gus@readers.test")
    lists_cli.ok("send", lists_cli.issue, "--yes")  # type: ignore[attr-defined]
    monkeypatch.setenv("COLUMNS", "80")
    from digest_mailer.cli.state import out

    monkeypatch.setattr(out, "_width", 80)
    card = lists_cli.ok("status", "3.1").stdout.splitlines()
    assert all(len(line) <= 80 for line in card), card
    fields = {line.split()[0]: line.split(None, 1)[1] for line in card if line[:1] != " "}
    assert fields["issue"] == "3.1" and fields["state"] == "sent"
    assert fields["deliveries"] == "7 sent, 1 failed"
    table = lists_cli.ok("status").stdout.splitlines()
    assert all(len(line) <= 80 for line in table), table
    assert re.match(r"3\.1\s+sent\s+7/8\s+1\s+0\s", table[1]), table
    log = lists_cli.ok("log", "3.1").stdout.splitlines()
    assert all(len(line) <= 80 for line in log), log
    assert len(log) == 1 + 8  # a header and one line per recipient: nothing wraps
    failed = next(line for line in log if line.startswith("gus@readers.test"))
    assert re.match(r"gus@readers\.test\s+failed\s+1\s+550\s", failed), failed
    assert "…" not in failed.split("550")[0]


# --------------------------------------------------------------------------- the lease


@pytest.mark.slow
def test_a_second_send_is_refused_while_the_first_runs(tmp_path: Path, database_url: str) -> None:
    server = SMTPServer().start()
    server.handler.delay = 0.05  # 300 recipients: 15 s, while a second process starts
    try:
        config = write_config(
            tmp_path / "config.toml",
            database_url,
            NEWSLETTER + smtp_section(server.port, connections=1),
        )
        cli = Cli(config)
        cli.ok("init")
        people = tmp_path / "people.csv"
        people.write_text("email\n" + "".join(f"p{i:03d}@corp.test\n" for i in range(300)))
        cli.ok("subscribers", "import", str(people))
        issue = tmp_path / "vol-3.1.txt"
        shutil.copy(ISSUE, issue)
        command = [sys.executable, "-m", "digest_mailer", "--config", str(config)]
        command += ["send", str(issue), "--yes", "--skip-test"]
        env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(server.handler.received) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 4, second.stderr
        assert f"being sent by process {first.pid} on {socket.gethostname()}" in second.stderr
        assert "uncertain" not in second.stderr
        assert first.wait(timeout=120) == 0, first.stderr.read()  # type: ignore[union-attr]
        store = db.open_store(database_url)
        with store.Session() as session:
            states = session.scalars(select(Delivery.state)).all()
            holder = session.scalars(select(SendWorker)).one()
        store.dispose()
        assert sorted(set(states)) == ["sent"] and len(states) == 300
        assert (holder.kind, holder.state, holder.pid) == ("single", "finished", first.pid)
        assert sorted(r.rcpt for r in server.handler.received) == sorted(
            f"p{i:03d}@corp.test" for i in range(300)
        )
    finally:
        server.stop()


def _holder(issue: str, host: str, pid: int, lease_seconds: float) -> SendWorker:
    now = utcnow()
    return SendWorker(
        id=f"{host}-{pid}",
        issue_id=issue,
        kind="single",
        host=host,
        pid=pid,
        connections=1,
        state="running",
        started_at=now,
        heartbeat_at=now,
        lease_until=now + timedelta(seconds=lease_seconds),
    )


def test_a_lease_of_another_host_holds_until_it_runs_out(store) -> None:  # type: ignore[no-untyped-def]
    with store.Session.begin() as session:
        session.add(Issue(id="4.1", subject="Vol 4.1", fingerprint="a" * 64, state="sending"))
        session.flush()
        session.add(_holder("4.1", "elsewhere.test", 4242, 60))
    with store.Session() as session, pytest.raises(SendRefused, match="process 4242 on"):
        lease.refuse_while_held(session, "4.1", joining_as_worker=False)
    with store.Session() as session, pytest.raises(SendRefused, match="process 4242"):
        lease.refuse_while_held(session, "4.1", joining_as_worker=True)  # workers too
    with store.Session.begin() as session:
        row = session.get(SendWorker, "elsewhere.test-4242")
        row.lease_until = utcnow() - timedelta(seconds=1)
    with store.Session() as session:
        lease.refuse_while_held(session, "4.1", joining_as_worker=False)  # ran out: free


def test_a_dead_process_on_this_host_frees_the_issue_at_once(store) -> None:  # type: ignore[no-untyped-def]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with store.Session.begin() as session:
        session.add(Issue(id="4.2", subject="Vol 4.2", fingerprint="b" * 64, state="sending"))
        session.flush()
        session.add(_holder("4.2", lease.host_name(), dead.pid, 3600))
        session.add(_holder("4.2", lease.host_name(), os.getpid(), 3600))
    with store.Session.begin() as session, pytest.raises(SendRefused, match=str(os.getpid())):
        lease.refuse_while_held(session, "4.2", joining_as_worker=False)
    with store.Session.begin() as session:
        mine = session.get(SendWorker, f"{lease.host_name()}-{os.getpid()}")
        session.delete(mine)
    with store.Session.begin() as session:
        lease.refuse_while_held(session, "4.2", joining_as_worker=False)
    with store.Session() as session:
        gone = session.get(SendWorker, f"{lease.host_name()}-{dead.pid}")
        assert gone.state == "lost"


def test_a_long_address_drops_columns_before_anything_is_cut() -> None:
    from digest_mailer.cli import tables

    long = "a-very-long-local-part-of-an-address.with.dots@a-long-subdomain.of.a-domain.test"
    columns = [
        tables.Column("address", [long, "bo@corp.test"]),
        tables.Column("state", ["failed", "sent"]),
        tables.Column("tries", ["1", "1"], "optional", "right"),
        tables.Column("code", ["550", "250"], align="right"),
        tables.Column("time (UTC)", ["2026-12-02 08:32"] * 2, "optional"),
        tables.Column("reply", ["5.1.1 no such user here, really", "2.0.0 Accepted"], "flex"),
        tables.Column("message id", ["<x@y>", "<z@y>"], "optional"),
    ]
    lines = tables.fit(columns, 120)
    assert all(len(line) <= 120 for line in lines), lines
    assert lines[0].split() == ["address", "state", "code", "reply"]
    assert lines[1].startswith(long) and "550" in lines[1]
