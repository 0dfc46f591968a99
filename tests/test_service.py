"""`digest-mailer run` as a process: it sends scheduled sends when due, answers the
request mailbox, sends the outbox and serves the pages; SIGTERM stops it cleanly (exit
0) and a send it paused is resumed exactly once by the next `run`; two `run` processes
on one PostgreSQL store never run the same job at once."""

import json
import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from faults_support import Sink
from smtp_server import SMTPServer, free_port
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

pytestmark = pytest.mark.slow

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
REQUESTS = DATA / "requests"
LOG_KEYS = {"time", "level", "job", "event", "fields"}
ENDS = {"finished", "failed", "sent", "paused", "refused", "retry", "busy"}


class Run:
    """One `digest-mailer run` process, its JSON log in a file; always stopped."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
        env.pop("DIGEST_MAILER_DEBUG", None)
        self.log = log
        command = [sys.executable, "-m", "digest_mailer", "--config", str(config), "run"]
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                [*command, "--log-format", "json", *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then its exit code (killed and failed after ``timeout``)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"`run` did not stop on SIGTERM: {self.text()[-2000:]}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only it
            self.proc.wait(timeout=10)

    def text(self) -> str:
        return self.log.read_text("utf-8", "replace")

    def events(self) -> list[dict]:  # type: ignore[type-arg]
        lines = [line for line in self.text().splitlines() if line.strip()]
        parsed = [json.loads(line) for line in lines]  # every line is one JSON object
        assert all(set(p) == LOG_KEYS for p in parsed), lines
        return parsed


def wait_for(what: str, check, seconds: float, runs: list[Run]) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        for run in runs:
            assert run.proc.poll() is None, f"`run` exited {run.proc.returncode}: {run.text()}"
        assert time.monotonic() < deadline, f"{what}: not within {seconds} s; " + " | ".join(
            r.text()[-1500:] for r in runs
        )
        time.sleep(0.05)


def scalar(url: str, sql: str) -> object:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql)).scalar()
    finally:
        engine.dispose()


def scalar_rows(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


def soon(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S")


def newsletter(
    folder: Path, url: str, smtp: SMTPServer, people: list[str], extra: str = ""
) -> tuple[Cli, Path]:
    """A store with ``people`` subscribed and a seed, the sample issue tested."""
    run = '\n[run]\npoll_seconds = 0.3\n\n[inbox]\nmaildir = "Maildir"\n'
    config = write_config(
        folder / "config.toml", url, NEWSLETTER + smtp_section(smtp.port, extra=extra) + run
    )
    mailbox.Maildir(str(folder / "Maildir"))  # created empty
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    csv = folder / "people.csv"
    csv.write_text("email\n" + "".join(f"{a}\n" for a in people), "utf-8")
    cli.ok("subscribers", "import", str(csv))
    issue = folder / "vol-3.1.txt"
    shutil.copy(ISSUE, issue)
    cli.ok("send", str(issue), "--test")
    return cli, issue


def test_run_sends_when_due_answers_requests_serves_pages_and_stops_on_sigterm(
    tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    readers = [f"r{i}@corp.test" for i in range(5)]
    cli, issue = newsletter(tmp_path, database_url, smtp_server, readers)
    mailbox.Maildir(str(tmp_path / "Maildir")).add((REQUESTS / "s01-subject-only.eml").read_bytes())
    cli.ok("schedule", str(issue), "--at", soon(4), "--tz", "UTC")
    port = free_port()
    run = Run(cli.config, tmp_path / "run.log", "--port", str(port))
    try:
        wait_for(
            "the send and the confirmation",
            lambda: len(smtp_server.handler.received) >= 8,
            40,
            [run],
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as answer:
            assert answer.status == 200
        wait_for(
            "the schedule marked sent",
            lambda: scalar(database_url, "SELECT state FROM scheduled_sends") == "sent",
            20,
            [run],
        )
    finally:
        code = run.stop()
    assert code == 0, run.text()
    events = run.events()
    seen = {(e["job"], e["event"]) for e in events}
    assert {
        ("service", "started"),
        ("web", "listening"),
        ("schedule:1", "started"),
        ("schedule:1", "sent"),
        ("requests", "finished"),
        ("outbox", "finished"),
        ("bounces", "skipped"),
        ("service", "stopping"),
        ("service", "stopped"),
    } <= seen, sorted(seen)
    sent = next(e for e in events if e["event"] == "sent")
    assert sent["fields"]["counts"] == {"sent": 6} and sent["level"] == "info"
    assert SECRET not in run.text()
    got = Counter(r.rcpt for r in smtp_server.handler.received)
    assert got == Counter({"seed@corp.test": 2, "carla@mail.test": 1, **dict.fromkeys(readers, 1)})
    assert "sent: 6 sent" in cli.ok("schedule", "list").stdout


def test_sigterm_mid_scheduled_send_then_restart_is_exactly_once(
    tmp_path: Path, database_url: str, send_env
) -> None:  # type: ignore[no-untyped-def]
    """2,000 recipients at most 400 a second through the durable sink (a process of its
    own that records each message before its 250): SIGTERM once 500 are out, then `run`
    again until the schedule is sent."""
    sink = Sink(tmp_path).start()
    people = [f"p{i:04d}@corp.test" for i in range(2000)]
    try:
        fake = SMTPServer()  # only its port: the sink listens there
        fake.port = sink.port
        cli, issue = newsletter(tmp_path, database_url, fake, people, "max_per_second = 400\n")
        cli.ok("schedule", str(issue), "--at", soon(3), "--tz", "UTC")
        tested = sink.count()
        first = Run(cli.config, tmp_path / "run1.log", "--no-web")
        try:
            wait_for("500 messages", lambda: sink.count() >= tested + 500, 60, [first])
        finally:
            code = first.stop()
        assert code == 0, first.text()
        stopped_at = sink.count() - tested
        assert 500 <= stopped_at < len(people) + 1, "the send finished before the SIGTERM"
        paused = next(e for e in first.events() if e["job"] == "schedule:1" and e["event"] in ENDS)
        assert paused["event"] == "paused" and paused["fields"]["note"] == "stopped by request"
        assert scalar(database_url, "SELECT state FROM scheduled_sends") == "running"
        assert scalar(database_url, "SELECT state FROM issues") == "paused"
        second = Run(cli.config, tmp_path / "run2.log", "--no-web")
        try:
            wait_for(
                "the resumed send",
                lambda: scalar(database_url, "SELECT state FROM scheduled_sends") == "sent",
                60,
                [second],
            )
        finally:
            code = second.stop()
        assert code == 0, second.text()
        resumed = [e for e in second.events() if e["job"] == "schedule:1"]
        assert resumed[0]["event"] == "started" and resumed[0]["fields"]["resuming"] is True
        accepted = [rcpt for rcpt, _ in sink.accepted()[tested:]]
    finally:
        sink.kill()
    states = dict(scalar_rows(database_url, "SELECT address, state FROM deliveries"))
    uncertain = [a for a, st in states.items() if st == "uncertain"]
    assert len(uncertain) <= 2  # at most `connections`; a SIGTERM leaves none in practice
    got = Counter(accepted)
    assert {a: n for a, n in got.items() if n > 1} == {}  # no duplicates
    everyone = {*people, "seed@corp.test"}
    assert set(got) <= everyone
    unreached = [a for a in everyone if a not in got and a not in uncertain]
    assert unreached == [] and set(states) == everyone
    assert all(states[a] == "sent" for a in got if a not in uncertain)


def test_two_run_processes_on_postgresql_never_run_a_job_twice_at_once(
    tmp_path: Path, pg_database_url: str, smtp_server: SMTPServer, send_env
) -> None:  # type: ignore[no-untyped-def]
    smtp_server.handler.delay = 0.005
    people = [f"q{i:03d}@corp.test" for i in range(300)]
    cli, issue = newsletter(tmp_path, pg_database_url, smtp_server, people)
    box = mailbox.Maildir(str(tmp_path / "Maildir"))
    for name in ("s01-subject-only.eml", "s02-please-add-me.eml", "u12-not-subscribed.eml"):
        box.add((REQUESTS / name).read_bytes())
    cli.ok("schedule", str(issue), "--at", soon(3), "--tz", "UTC")
    tested = len(smtp_server.handler.received)
    runs = [Run(cli.config, tmp_path / f"run{i}.log", "--no-web", "--verbose") for i in (1, 2)]
    try:
        wait_for(
            "the scheduled send",
            lambda: scalar(pg_database_url, "SELECT state FROM scheduled_sends") == "sent",
            60,
            runs,
        )
        time.sleep(1.5)  # a few more polls of every job by both
    finally:
        codes = [run.stop() for run in runs]
    assert codes == [0, 0], [run.text()[-2000:] for run in runs]
    got = Counter(smtp_server.addresses()[tested:])
    assert {a: n for a, n in got.items() if n > 1} == {}
    assert {*people, "seed@corp.test"} <= set(got)
    spans: dict[str, list[tuple[str, str, int]]] = {}
    for number, run in enumerate(runs):
        open_at: dict[str, str] = {}
        for e in run.events():
            if e["event"] == "started" and e["job"] != "service":
                open_at[e["job"]] = e["time"]
            elif e["event"] in ENDS and e["job"] in open_at:
                spans.setdefault(e["job"], []).append((open_at.pop(e["job"]), e["time"], number))
        assert not open_at, open_at  # every job that started, ended before the exit
    assert {"schedule:1", "requests", "bounces", "outbox"} <= set(spans), sorted(spans)
    assert len(spans["schedule:1"]) == 1  # sent by one of them, once
    for job, intervals in spans.items():
        intervals.sort()
        for (_, end, _), (start, _, _) in zip(intervals, intervals[1:], strict=False):
            assert end <= start, f"{job} ran in both at once: {intervals}"
    ran = Counter(n for intervals in spans.values() for _, _, n in intervals)
    assert set(ran) == {0, 1}, ran  # both took part
