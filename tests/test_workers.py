"""Several `send --worker` processes share one send through PostgreSQL row locks."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, Cli, smtp_section, write_config
from smtp_server import SMTPServer
from sqlalchemy import select

from digest_mailer import db
from digest_mailer import subscribers as subs
from digest_mailer.errors import SendRefused
from digest_mailer.models import Delivery, Issue, SendWorker, utcnow
from digest_mailer.send.plan import expire_leases, prepare_send, queue_recipients

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"


def workers_config(
    tmp_path: Path, url: str, port: int, connections: int = 2, extra: str = ""
) -> Path:
    return write_config(
        tmp_path / "config.toml",
        url,
        NEWSLETTER
        + smtp_section(port, connections, extra)
        + "\n[workers]\nlease_seconds = 2\nclaim_batch = 100\n",
    )


def import_people(cli: Cli, tmp_path: Path, n: int) -> list[str]:
    people = [f"reader{i:05d}@corp.test" for i in range(n)]
    csv = tmp_path / "people.csv"
    csv.write_text("email\n" + "\n".join(people) + "\n")
    cli.ok("subscribers", "import", str(csv))
    return people


def start_worker(config: Path, issue: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
    command = [sys.executable, "-m", "digest_mailer", "--config", str(config)]
    return subprocess.Popen(
        [*command, "send", str(issue), "--yes", "--worker", "--skip-test"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_three_workers_one_killed_every_recipient_exactly_once(
    tmp_path: Path, pg_database_url: str, smtp_server: SMTPServer, send_env: str
) -> None:
    config = workers_config(tmp_path, pg_database_url, smtp_server.port)
    cli = Cli(config)
    cli.ok("init")
    people = import_people(cli, tmp_path, 5000)
    issue = tmp_path / "vol-3.1.txt"
    issue.write_text(ISSUE.read_text("utf-8"), "utf-8")

    procs = [start_worker(config, issue) for _ in range(3)]
    victim = procs[0]
    killed = threading.Event()

    def kill_part_way(count: int) -> None:
        if count >= 1500 and not killed.is_set():
            killed.set()
            victim.send_signal(signal.SIGKILL)

    smtp_server.handler.on_message = kill_part_way
    outputs = [p.communicate(timeout=240) for p in procs]
    assert killed.is_set() and victim.returncode == -signal.SIGKILL
    for p, (_, err) in zip(procs[1:], outputs[1:], strict=True):
        assert p.returncode == 0, err.decode()

    status = json.loads(cli.ok("status", "3.1", "--json").stdout)
    uncertain = {
        r["address"]
        for r in json.loads(cli.ok("log", "3.1", "--json").stdout)
        if r["state"] == "uncertain"
    }
    received = Counter(smtp_server.addresses())
    assert status["state"] == "sent", status
    assert len(uncertain) <= 2  # at most the dead worker's connections
    assert status["counts"]["sent"] + status["counts"]["uncertain"] == len(people)
    for address in people:
        if address in uncertain:
            assert received[address] <= 1, address
        else:
            assert received[address] == 1, (address, received[address])
    assert set(received) <= set(people)
    # the workers and their shares
    workers = status["workers"]
    assert len(workers) == 3
    assert sorted(w["state"] for w in workers) == ["finished", "finished", "lost"]
    assert sum(w["counts"]["sent"] for w in workers) == status["counts"]["sent"]
    assert all(w["counts"]["sent"] > 0 for w in workers)
    # the same command without --worker now finds nothing to do
    again = cli.ok("send", str(issue), "--yes", "--skip-test")
    assert "nothing to send" in again.stdout


def test_workers_share_the_rate_limit(
    tmp_path: Path, pg_database_url: str, smtp_server: SMTPServer
) -> None:
    config = workers_config(tmp_path, pg_database_url, smtp_server.port, 1, "max_per_second = 20\n")
    cli = Cli(config)
    cli.ok("init")
    import_people(cli, tmp_path, 60)
    issue = tmp_path / "vol-3.1.txt"
    issue.write_text(ISSUE.read_text("utf-8"), "utf-8")
    times: list[float] = []
    smtp_server.handler.on_message = lambda count: times.append(time.monotonic())
    procs = [start_worker(config, issue) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert len(times) == 60
    # 20 a second in all, not 20 each: the last 40 messages take about 2 s
    rate = 40 / (times[-1] - times[19])
    assert rate < 28, rate


def test_worker_mode_refuses_sqlite_in_one_line(
    tmp_path: Path, smtp_server: SMTPServer, send_env: str
) -> None:
    config = workers_config(tmp_path, f"sqlite:///{tmp_path / 'one.db'}", smtp_server.port)
    cli = Cli(config)
    cli.ok("init")
    cli.ok("subscribers", "add", "a@corp.test")
    result = cli("send", str(ISSUE), "--yes", "--worker", "--skip-test")
    assert result.exit_code == 4
    assert "--worker needs PostgreSQL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert smtp_server.handler.received == []


def test_lapsed_leases_requeue_claims_and_make_sending_rows_uncertain(
    pg_store: db.Store,
) -> None:
    store = pg_store
    now = utcnow()
    with store.Session.begin() as session:
        subs.add_subscribers(
            session, [f"p{i}@corp.test" for i in range(4)], allow_test_domains=True
        )
        session.add(Issue(id="9.9", subject="s", fingerprint="f" * 64, state="sending"))
        session.flush()
        queue_recipients(session, "9.9")
        rows = session.scalars(select(Delivery).order_by(Delivery.id)).all()
        past, future = now - timedelta(seconds=5), now + timedelta(seconds=60)
        for row, state, lease in zip(
            rows,
            ["claimed", "sending", "claimed", "sending"],
            [past, past, future, future],
            strict=True,
        ):
            row.state, row.worker_id, row.lease_until = state, "w-dead", lease
        session.add(
            SendWorker(
                id="w-dead",
                issue_id="9.9",
                host="h",
                pid=1,
                connections=2,
                state="running",
                lease_until=past,
            )
        )
    with store.Session.begin() as session:
        uncertain = expire_leases(session, "9.9", utcnow())
    assert uncertain == ["p1@corp.test"]
    with store.Session() as session:
        states = session.scalars(select(Delivery.state).order_by(Delivery.id)).all()
        worker = session.get(SendWorker, "w-dead")
        assert worker is not None and worker.state == "lost"
    assert states == ["queued", "uncertain", "claimed", "sending"]  # live leases untouched


def test_a_single_sender_waits_for_live_workers(pg_store: db.Store, newsletter_config) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer import composer

    store = pg_store
    composed = composer.compose_file(ISSUE, newsletter_config)
    with store.Session.begin() as session:
        session.add(
            Issue(
                id=composed.issue_id, subject="s", fingerprint=composed.fingerprint, state="sending"
            )
        )
        session.flush()
        session.add(
            SendWorker(
                id="w-live",
                issue_id=composed.issue_id,
                host="h",
                pid=1,
                connections=2,
                state="running",
                lease_until=utcnow() + timedelta(seconds=60),
            )
        )
    with store.Session() as session, pytest.raises(SendRefused, match="--worker"):
        prepare_send(session, composed, skip_test=True)
    with store.Session.begin() as session:  # a worker may join
        plan = prepare_send(session, composed, skip_test=True, worker=True)
    assert plan.resuming


def _worker_setup(store: db.Store, tmp_path: Path, url: str, port: int, people: int):  # type: ignore[no-untyped-def]
    from digest_mailer import composer
    from digest_mailer.config import load_config

    config = load_config(workers_config(tmp_path, url, port))
    with store.Session.begin() as session:
        subs.add_subscribers(
            session, [f"w{i:02d}@corp.test" for i in range(people)], allow_test_domains=True
        )
    composed = composer.compose_file(ISSUE, config)
    return config, composed


def _run_one_worker(store, config, composed, stop=None):  # type: ignore[no-untyped-def]
    from digest_mailer.message import MessageTemplate
    from digest_mailer.send import run_worker
    from digest_mailer.transport import SMTPSettings, SMTPTransport

    with store.Session.begin() as session:
        plan = prepare_send(session, composed, skip_test=True, worker=True)
    settings = SMTPSettings.from_config(config)
    return run_worker(
        store,
        plan.issue_id,
        config,
        MessageTemplate(composed, config),
        lambda: SMTPTransport(settings),
        SECRET.encode(),
        stop=stop,
    )


def test_a_worker_retries_refusals_and_records_permanent_ones(
    pg_store: db.Store, pg_database_url: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    config, composed = _worker_setup(pg_store, tmp_path, pg_database_url, smtp_server.port, 30)
    smtp_server.handler.temp_fail.update({"w03@corp.test": 1, "w07@corp.test": 2})
    smtp_server.handler.perm_fail.add("w11@corp.test")
    report = _run_one_worker(pg_store, config, composed)
    assert report.state == "sent"
    assert report.counts["sent"] == 29 and report.counts["failed"] == 1
    assert report.counts["claimed"] == report.counts["deferred"] == 0
    received = Counter(smtp_server.addresses())
    assert received["w03@corp.test"] == received["w07@corp.test"] == 1
    assert "w11@corp.test" not in received and len(received) == 29
    with pg_store.Session() as session:
        person = subs.find_subscriber(session, "w11@corp.test")
        assert person is not None and person.status == "bounced"  # 5.1.1 at RCPT
        (worker,) = session.scalars(select(SendWorker)).all()
        assert worker.state == "finished"


def test_a_stopped_worker_hands_its_claims_to_the_next(
    pg_store: db.Store, pg_database_url: str, smtp_server: SMTPServer, tmp_path: Path
) -> None:
    config, composed = _worker_setup(pg_store, tmp_path, pg_database_url, smtp_server.port, 40)
    stop = threading.Event()
    smtp_server.handler.on_message = lambda count: stop.set() if count >= 10 else None
    first = _run_one_worker(pg_store, config, composed, stop=stop)
    assert first.state == "paused" and first.paused_reason == "stopped by request"
    assert first.counts["claimed"] == 0 and first.counts["queued"] > 0
    smtp_server.handler.on_message = None
    second = _run_one_worker(pg_store, config, composed)
    assert second.state == "sent" and second.counts["sent"] == 40
    assert Counter(smtp_server.addresses()) == Counter(f"w{i:02d}@corp.test" for i in range(40))
    with pg_store.Session() as session:
        states = sorted(session.scalars(select(SendWorker.state)).all())
    assert states == ["finished", "stopped"]
