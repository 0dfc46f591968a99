"""The service's parts in this process: its log (text, JSON, no secrets), and jobs that
fail (a mailbox missing, the IMAP server down) and are tried again at the next poll
without stopping the service."""

import io
import json
import mailbox
import threading
import time
from pathlib import Path

import pytest
from conftest import DATA, NEWSLETTER, SECRET, smtp_section, write_config
from smtp_server import SMTPServer, free_port

from digest_mailer import db
from digest_mailer.config import load_config
from digest_mailer.service import Service, ServiceLog, ServiceOptions
from digest_mailer.service.jobs import MailJobs
from digest_mailer.service.logs import secrets_of


def test_text_and_json_lines_name_time_level_job_event_and_fields() -> None:
    text, as_json = io.StringIO(), io.StringIO()
    ServiceLog("text", stream=text)("schedule:3", "sent", issue="2.4", note="sent: 6 sent")
    ServiceLog("json", stream=as_json)("outbox", "finished", replies=2, outcomes={"sent": 2})
    ServiceLog("json", stream=as_json)("requests", "started", "debug")  # not without -v
    line = text.getvalue()
    assert line.endswith(' info  schedule:3 sent issue=2.4 note="sent: 6 sent"\n'), line
    assert line[:4].isdigit() and line[23] == "Z"
    [record] = [json.loads(x) for x in as_json.getvalue().splitlines()]
    assert set(record) == {"time", "level", "job", "event", "fields"}
    assert record["fields"] == {"replies": 2, "outcomes": {"sent": 2}}
    verbose = io.StringIO()
    ServiceLog("json", stream=verbose, verbose=True)("requests", "started", "debug")
    assert json.loads(verbose.getvalue())["level"] == "debug"


def test_secrets_never_reach_the_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIGEST_MAILER_SECRET", f"{SECRET} second-secret-0123456789abcdef")
    monkeypatch.setenv("DIGEST_MAILER_SMTP_PASSWORD", "smtp-pass-word")
    smtp = '[smtp]\npassword_env = "DIGEST_MAILER_SMTP_PASSWORD"\n'
    config = load_config(write_config(tmp_path / "c.toml", "sqlite:///x.db", smtp))
    out = io.StringIO()
    log = ServiceLog("text", stream=out, secrets=secrets_of(config))
    log("outbox", "failed", "error", error=f"535 auth failed for smtp-pass-word {SECRET}")
    log("service", "odd", detail="second-secret-0123456789abcdef")
    assert "smtp-pass-word" not in out.getvalue() and SECRET not in out.getvalue()
    assert "second-secret" not in out.getvalue() and out.getvalue().count("***") == 3


@pytest.fixture
def service_setup(tmp_path: Path, database_url: str, smtp_server: SMTPServer, send_env):  # type: ignore[no-untyped-def]
    config_file = write_config(
        tmp_path / "config.toml",
        database_url,
        NEWSLETTER
        + smtp_section(smtp_server.port)
        + '\n[run]\npoll_seconds = 0.2\n\n[inbox]\nmaildir = "Maildir"\n',
    )
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    store = db.open_store(database_url)
    yield store, load_config(config_file), tmp_path
    store.dispose()


def wait_for(check, seconds: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_a_failing_mailbox_job_is_retried_and_never_stops_the_service(
    service_setup, smtp_server: SMTPServer
) -> None:  # type: ignore[no-untyped-def]
    store, config, folder = service_setup
    out = io.StringIO()
    log = ServiceLog("json", stream=out, verbose=True)
    stop = threading.Event()
    service = Service(store, config, SECRET.encode(), log, ServiceOptions(web=False), stop=stop)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()

    def events(job: str, event: str) -> list[dict]:  # type: ignore[type-arg]
        lines = [json.loads(x) for x in out.getvalue().splitlines()]
        return [e for e in lines if e["job"] == job and e["event"] == event]

    try:
        wait_for(lambda: len(events("requests", "failed")) >= 2)  # no Maildir yet: each poll
        failed = events("requests", "failed")[0]
        assert failed["level"] == "error" and "is not a Maildir" in failed["fields"]["error"]
        assert failed["fields"]["retry"] == "next poll"
        box = mailbox.Maildir(str(folder / "Maildir"))
        box.add((DATA / "requests" / "s01-subject-only.eml").read_bytes())
        wait_for(lambda: any(e["fields"].get("messages") for e in events("requests", "finished")))
        wait_for(lambda: events("outbox", "finished"))
        wait_for(lambda: smtp_server.addresses() == ["carla@mail.test"])
        assert thread.is_alive()
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert events("service", "stopped") and len(events("bounces", "skipped")) == 1


def test_an_imap_server_that_is_down_fails_the_job_not_the_service(
    service_setup, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    store, config, folder = service_setup
    closed = free_port()  # nothing listens there
    text = (
        (folder / "config.toml")
        .read_text("utf-8")
        .replace(
            'maildir = "Maildir"',
            f'imap_host = "127.0.0.1"\nimap_port = {closed}\nimap_security = "none"\n'
            'imap_user = "digest"\nimap_password_env = "DIGEST_IMAP_TEST_PASSWORD"',
        )
    )
    (folder / "config.toml").write_text(text, "utf-8")
    monkeypatch.setenv("DIGEST_IMAP_TEST_PASSWORD", "imap-secret-pass")
    out = io.StringIO()
    log = ServiceLog("text", stream=out, secrets=["imap-secret-pass"])
    jobs = MailJobs(store, load_config(folder / "config.toml"), log, lambda: None)  # type: ignore[arg-type,return-value]
    assert jobs.run("requests") is False  # logged, tried again next poll
    assert jobs.run("outbox") is True  # nothing queued: nothing to send
    line = out.getvalue()
    assert "requests failed" in line and "MailboxError: cannot connect to IMAP" in line
    assert 'retry="next poll"' in line and "imap-secret-pass" not in line
