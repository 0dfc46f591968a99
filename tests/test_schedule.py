"""Scheduled sends: `digest-mailer schedule` (times, zones, refusals, list, cancel) and
`run_due`, which sends what is due through the same machinery as `send`."""

import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import update

from digest_mailer import db
from digest_mailer.config import load_config
from digest_mailer.errors import InputError, SendRefused
from digest_mailer.joblock import job_lock, lock_key
from digest_mailer.lease import take_lease
from digest_mailer.models import Issue, ScheduledSend, SendWorker
from digest_mailer.schedule import cancel_scheduled, due_time, local_zone_name, run_due

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"
READERS = [f"r{i}@corp.test" for i in range(5)]
JAN = datetime(2026, 1, 1, tzinfo=UTC)


# --------------------------------------------------------------------------- times (pure)


def test_tz_conversion_tokyo_nine_is_midnight_utc() -> None:
    due = due_time("2026-12-08 09:00", "Asia/Tokyo", JAN)
    assert due.utc == datetime(2026, 12, 8, 0, 0, tzinfo=UTC) and due.zone == "Asia/Tokyo"
    assert due.describe() == "2026-12-08 09:00 JST (Asia/Tokyo), 2026-12-08 00:00 UTC"
    assert due_time("2026-12-08T09:00:30", "UTC", JAN).utc == datetime(
        2026, 12, 8, 9, 0, 30, tzinfo=UTC
    )
    assert due_time("2026-07-01 12:00", "Europe/Berlin", JAN).utc.hour == 10  # CEST


@pytest.mark.parametrize(
    ("at", "zone", "message"),
    [
        ("2026-12-08 09:00", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("2026-12-08 09:00", "../etc/passwd", "unknown time zone"),
        ("2026-12-08 09:00", "", "unknown time zone"),
        ("next tuesday", "UTC", "is not a time: write it as YYYY-MM-DD HH:MM"),
        ("2026-12-08", "UTC", "is not a time"),
        ("2026-13-01 09:00", "UTC", "is not a time"),
        ("2026-12-08 25:00", "UTC", "is not a time"),
        ("2026-12-08 09:00+09:00", "UTC", "without an offset"),
        ("2026-12-08T09:00Z", "UTC", "without an offset"),
        ("2025-12-08 09:00", "Asia/Tokyo", "is in the past (it is now 2026-01-01 09:00 there)"),
    ],
)
def test_bad_times_and_zones_are_one_clear_error(at: str, zone: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        due_time(at, zone, JAN)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_time_skipped_by_the_clocks_is_refused_and_a_repeated_one_is_the_first() -> None:
    # Europe/Berlin, 29 March 2026: 02:00 CET jumps to 03:00 CEST
    with pytest.raises(InputError) as caught:
        due_time("2026-03-29 02:30", "Europe/Berlin", JAN)
    assert str(caught.value) == (
        "2026-03-29 02:30 does not exist in Europe/Berlin: the clocks go forward by "
        "1 hour(s) that night; choose another time"
    )
    assert due_time("2026-03-29 03:00", "Europe/Berlin", JAN).utc.hour == 1
    # 25 October 2026: 02:30 happens twice; the first (CEST, UTC+2) is taken
    repeated = due_time("2026-10-25 02:30", "Europe/Berlin", JAN)
    assert repeated.utc == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)
    assert "CEST" in repeated.describe()


def test_the_default_zone_is_the_machines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert local_zone_name() == "Asia/Tokyo"
    assert due_time("2026-12-08 09:00", None, JAN).zone == "Asia/Tokyo"
    monkeypatch.setenv("TZ", "Not/AZone")
    assert local_zone_name() != "Not/AZone"  # then /etc/localtime, else UTC


# --------------------------------------------------------------------------- the command


def future(days: int = 10, zone: str = "UTC") -> str:
    return (datetime.now(ZoneInfo(zone)) + timedelta(days=days)).strftime("%Y-%m-%d %H:%M")


@pytest.fixture
def sched(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env) -> Cli:  # type: ignore[no-untyped-def]
    config = write_config(
        tmp_path / "config.toml", database_url, NEWSLETTER + smtp_section(smtp_server.port)
    )
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "seed@corp.test", "--list", "seed")
    cli.ok("subscribers", "add", *READERS)
    shutil.copy(ISSUE, tmp_path / "vol-3.1.txt")
    cli.issue = str(tmp_path / "vol-3.1.txt")  # type: ignore[attr-defined]
    cli.url = database_url  # type: ignore[attr-defined]
    return cli


def test_untested_and_bad_input_are_refused_in_one_line(
    sched: Cli, smtp_server: SMTPServer
) -> None:
    issue = sched.issue  # type: ignore[attr-defined]
    untested = sched("schedule", issue, "--at", future())
    assert untested.exit_code == 4, untested.output
    assert untested.stderr.strip() == (
        f"error: no successful test send of this version of issue 3.1: run `digest-mailer "
        f"send {issue} --test` first; a scheduled send sends only a tested text"
    )
    sched.ok("send", issue, "--test")
    private = sched("schedule", issue, "--at", future(), "--no-archive")
    assert private.exit_code == 4 and "--test --no-archive` first" in private.stderr
    for args, code, words in [
        (["--at", "2020-01-01 09:00"], 1, "is in the past"),
        (["--at", "0001-01-01 00:00", "--tz", "Asia/Tokyo"], 1, "is in the past"),
        (["--at", "9999-12-31 23:59", "--tz", "America/New_York"], 1, "within the next 10"),
        (["--at", future(), "--tz", "Moon/Base"], 1, "unknown time zone 'Moon/Base'"),
        (["--at", "tomorrow 9am"], 1, "is not a time"),
        (["--at", future(), "--list", "nosuch"], 1, "nosuch"),
        ([], 2, "Missing option '--at'"),
    ]:
        result = sched("schedule", issue, *args)
        assert result.exit_code == code, (args, result.output)
        assert words in result.stderr and "Traceback" not in result.output, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 or code == 2
    year = datetime.now(UTC).year + 1  # the spring-forward night in Berlin: no 02:30
    gap = max(datetime(year, 3, d) for d in range(25, 32) if datetime(year, 3, d).weekday() == 6)
    skipped = sched("schedule", issue, "--at", f"{gap:%Y-%m-%d} 02:30", "--tz", "Europe/Berlin")
    assert skipped.exit_code == 1
    assert "does not exist in Europe/Berlin: the clocks go forward" in skipped.stderr
    missing = sched("schedule", "nope.txt", "--at", future())
    assert missing.exit_code == 1 and "cannot read nope.txt" in missing.stderr
    assert json.loads(sched.ok("schedule", "list", "--json").stdout) == []
    assert len(smtp_server.handler.received) == 1  # the test copy only


def test_schedule_list_and_cancel(sched: Cli) -> None:
    issue = sched.issue  # type: ignore[attr-defined]
    sched.ok("send", issue, "--test")
    at = future(10, "Asia/Tokyo")
    done = sched.ok("schedule", issue, "--at", at, "--tz", "Asia/Tokyo")
    local = datetime.strptime(at, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo("Asia/Tokyo"))
    utc = local.astimezone(UTC)
    assert "scheduled #1: issue 3.1 (" in done.stdout
    assert f"at {at} JST (Asia/Tokyo), {utc:%Y-%m-%d %H:%M} UTC, to everyone" in done.stdout
    again = sched("schedule", "add", issue, "--at", future(11), "--tz", "UTC")
    assert again.exit_code == 4 and "already scheduled for everyone (#1," in again.stderr
    sched.ok("lists", "create", "board")
    sched.ok("schedule", issue, "--at", future(12), "--tz", "UTC", "--list", "board")
    rows = json.loads(sched.ok("schedule", "list", "--json").stdout)
    assert [(r["id"], r["state"], r["audience"]) for r in rows] == [
        (1, "scheduled", "everyone"),
        (2, "scheduled", "lists: board"),
    ]
    first = rows[0]
    assert first["due"] == local.isoformat(timespec="seconds")
    assert first["due_utc"] == utc.isoformat(timespec="seconds")
    assert first["zone"] == "Asia/Tokyo" and first["issue"] == "3.1"
    assert first["file"] == str(Path(issue).resolve()) and len(first["fingerprint"]) == 64
    table = sched.ok("schedule", "list").stdout
    assert "Asia/Tokyo" in table and "scheduled" in table
    assert sched.ok("schedule", "cancel", "1").stdout.startswith("cancelled #1 (issue 3.1, due")
    twice = sched("schedule", "cancel", "1")
    assert twice.exit_code == 1 and "#1 is cancelled: only a send still waiting" in twice.stderr
    nosuch = sched("schedule", "cancel", "99")
    assert nosuch.exit_code == 1 and "no scheduled send #99" in nosuch.stderr
    states = [r["state"] for r in json.loads(sched.ok("schedule", "list", "--json").stdout)]
    assert states == ["cancelled", "scheduled"]
    assert [
        r["id"] for r in json.loads(sched.ok("schedule", "list", "--open", "--json").stdout)
    ] == [2]


# --------------------------------------------------------------------------- when due


def _due(sched: Cli) -> tuple[db.Store, object, datetime]:
    store = db.open_store(sched.url)  # type: ignore[attr-defined]
    config = load_config(sched.config)
    with store.Session() as session:
        due = max(r.due_at for r in session.query(ScheduledSend))
    return store, config, due + timedelta(seconds=1)


def test_a_due_send_goes_to_every_subscriber_exactly_once(
    sched: Cli, smtp_server: SMTPServer
) -> None:
    issue = sched.issue  # type: ignore[attr-defined]
    sched.ok("send", issue, "--test")
    sched.ok("schedule", issue, "--at", future(1), "--tz", "UTC")
    store, config, when = _due(sched)
    try:
        assert run_due(store, config, SECRET.encode(), when - timedelta(minutes=2)) == []
        assert len(smtp_server.handler.received) == 1  # not yet due
        events: list[tuple[str, str]] = []
        results = run_due(
            store,
            config,
            SECRET.encode(),
            when,
            report=lambda job, ev, *a, **f: events.append((job, ev)),
        )
        assert [(r.outcome, r.counts) for r in results] == [("sent", {"sent": 6})]
        assert events == [("schedule:1", "started"), ("schedule:1", "sent")]
        assert run_due(store, config, SECRET.encode(), when + timedelta(days=1)) == []
    finally:
        store.dispose()
    real = [r.rcpt for r in smtp_server.handler.received[1:]]
    assert sorted(real) == sorted(["seed@corp.test", *READERS])  # each once
    row = json.loads(sched.ok("schedule", "list", "--json").stdout)[0]
    assert row["state"] == "sent" and row["note"] == "sent: 6 sent" and row["finished"]
    assert json.loads(sched.ok("status", "3.1", "--json").stdout)["state"] == "sent"
    again = sched("schedule", "cancel", "1")
    assert again.exit_code == 1 and "#1 is sent" in again.stderr
    twice = sched("schedule", issue, "--at", future(2), "--tz", "UTC")
    assert twice.exit_code == 4
    assert "issue 3.1 was already sent to everyone: nothing to schedule" in twice.stderr


def test_a_file_changed_since_scheduling_is_refused_and_nothing_is_sent(
    sched: Cli, smtp_server: SMTPServer
) -> None:
    issue = Path(sched.issue)  # type: ignore[attr-defined]
    sched.ok("send", str(issue), "--test")
    sched.ok("schedule", str(issue), "--at", future(1), "--tz", "UTC")
    issue.write_text(issue.read_text("utf-8").replace("31 to 12", "32 to 11"), "utf-8")
    store, config, when = _due(sched)
    try:
        results = run_due(store, config, SECRET.encode(), when)
    finally:
        store.dispose()
    assert [r.outcome for r in results] == ["refused"]
    assert "changed since it was scheduled" in results[0].note
    assert len(smtp_server.handler.received) == 1  # the test copy only
    row = json.loads(sched.ok("schedule", "list", "--json").stdout)[0]
    assert row["state"] == "refused" and "changed since it was scheduled" in row["note"]
    assert "refused" in sched.ok("schedule", "list").stdout


def test_a_file_that_would_block_is_refused_not_read(sched: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)  # opening it would wait for a writer for ever
    result = sched("schedule", str(fifo), "--at", future())
    assert result.exit_code == 1 and "is not a regular file" in result.stderr


def test_a_new_version_of_an_unfinished_send_is_refused_up_front(
    sched: Cli, tmp_path: Path
) -> None:
    issue = sched.issue  # type: ignore[attr-defined]
    sched.ok("send", issue, "--test")
    store = db.open_store(sched.url)  # type: ignore[attr-defined]
    with store.Session.begin() as session:  # as if its send had started, then paused
        row = session.get(Issue, "3.1")
        assert row is not None
        row.state, row.fingerprint = "paused", "0" * 64
    result = sched("schedule", issue, "--at", future())
    assert result.exit_code == 4 and "--allow-changed" in result.stderr
    assert "--issue-id" in result.stderr
    store.dispose()


def test_a_missing_file_is_refused(sched: Cli, smtp_server: SMTPServer) -> None:
    issue = Path(sched.issue)  # type: ignore[attr-defined]
    sched.ok("send", str(issue), "--test")
    sched.ok("schedule", str(issue), "--at", future(1), "--tz", "UTC")
    issue.unlink()
    store, config, when = _due(sched)
    try:
        results = run_due(store, config, SECRET.encode(), when)
    finally:
        store.dispose()
    assert [r.outcome for r in results] == ["refused"]
    assert f"cannot read {issue}" in results[0].note
    assert len(smtp_server.handler.received) == 1


def test_a_send_in_progress_is_not_cancelled_a_paused_one_is(sched: Cli) -> None:
    issue = sched.issue  # type: ignore[attr-defined]
    sched.ok("send", issue, "--test")
    sched.ok("schedule", issue, "--at", future(1), "--tz", "UTC")
    store = db.open_store(sched.url)  # type: ignore[attr-defined]
    try:
        with store.Session.begin() as session:
            session.execute(update(ScheduledSend).values(state="running"))
            lease = take_lease(session, "3.1", 60, 1)  # this process, alive: in progress
        refused = sched("schedule", "cancel", "1")
        assert refused.exit_code == 4
        assert "is being sent now by process" in refused.stderr
        assert "stop that `digest-mailer run` first" in refused.stderr
        with store.Session.begin() as session:
            with pytest.raises(SendRefused):
                cancel_scheduled(session, 1)
            session.execute(
                update(SendWorker).where(SendWorker.id == lease).values(state="stopped")
            )
        sched.ok("schedule", "cancel", "1")
    finally:
        store.dispose()
    row = json.loads(sched.ok("schedule", "list", "--json").stdout)[0]
    assert row["state"] == "cancelled" and "cancelled after its send had started" in row["note"]


def test_a_lost_test_send_is_refused_when_due(sched: Cli, smtp_server: SMTPServer) -> None:
    """Another version tested meanwhile under the same id: the scheduled text is no
    longer the tested one, so it is refused, not sent."""
    issue = Path(sched.issue)  # type: ignore[attr-defined]
    sched.ok("send", str(issue), "--test")
    sched.ok("schedule", str(issue), "--at", future(1), "--tz", "UTC")
    other = issue.with_name("vol-3.1-b.txt")
    other.write_text(issue.read_text("utf-8").replace("31 to 12", "30 to 13"), "utf-8")
    sched.ok("send", str(other), "--test")
    store, config, when = _due(sched)
    try:
        results = run_due(store, config, SECRET.encode(), when)
    finally:
        store.dispose()
    assert [r.outcome for r in results] == ["refused"]
    assert "no successful test send of this version" in results[0].note
    assert len(smtp_server.handler.received) == 2  # two test copies


# --------------------------------------------------------------------------- job locks


def test_job_locks_exclude_each_other_on_postgresql(pg_store: db.Store) -> None:
    with job_lock(pg_store, "requests") as first:
        assert first
        with job_lock(pg_store, "requests") as second, job_lock(pg_store, "bounces") as other:
            assert not second and other
    with job_lock(pg_store, "requests") as again:
        assert again
    assert lock_key("s1", "requests") != lock_key("s2", "requests")


def test_job_locks_on_sqlite_always_run(tmp_path: Path) -> None:
    store = db.Store(db.make_engine(f"sqlite:///{tmp_path / 'd.db'}"), None)  # type: ignore[arg-type]
    try:
        with job_lock(store, "requests") as first, job_lock(store, "requests") as second:
            assert first and second  # one machine, one `run` process
    finally:
        store.dispose()


def test_an_encoding_the_due_send_could_not_repeat_is_refused(
    tmp_path: Path, newsletter_config
) -> None:  # type: ignore[no-untyped-def]
    """A scheduled send reads its file again without --encoding: only an encoding that
    reads it as detection does is accepted."""
    from digest_mailer.schedule import compose_scheduled

    draft = tmp_path / "vol-3.1.txt"
    text = ISSUE.read_text("utf-8").replace("31 to 12", "\u201c31 to 12\u201d")
    draft.write_bytes(text.encode("cp1252"))
    same = compose_scheduled(draft, newsletter_config, encoding="cp1252")
    assert same.fingerprint == compose_scheduled(draft, newsletter_config).fingerprint
    with pytest.raises(InputError) as caught:
        compose_scheduled(draft, newsletter_config, encoding="latin-1")
    assert "reads differently with --encoding latin-1 than as detected" in str(caught.value)
