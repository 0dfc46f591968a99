"""Real sends of 5,000 invented people through a real SMTP sink, under real faults:
PostgreSQL restarted mid-send (one process, and two --worker processes), the SMTP sink
killed and started again, the disk under SQLite filling up.

The guarantees checked, each by its own test so that a failure names the one broken:

- the process: exit code 0 or 5 (a pause saying to run the same command again), never a
  traceback, an ``internal error`` (70) or another code, and the send finishes when the
  same command is run again (at most three more times);
- exactly once: nobody accepted twice by the sink across its restarts, everyone either
  reached (row ``sent`` with the Message-ID the sink accepted) or reported ``uncertain``,
  and at most ``[smtp] connections`` rows (per process) uncertain;
- stricter, for a live process that lost its database or mail server and reconnected:
  no row uncertain at all.

Each scenario runs once (the first test that needs it) and its :class:`Verdict` is shared
by the tests that judge it. ``test_harness_*`` are the same sends without a fault: they
must pass, or the harness is at fault rather than the sender.

Run: ``.venv/bin/python -m pytest tests/faults -v`` (root is needed for the private
PostgreSQL cluster, run as the ``postgres`` user, and for the tmpfs).
"""

import re
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from faults_support import (
    Newsletter,
    PrivatePostgres,
    Sink,
    Tmpfs,
    Verdict,
    run_scenario,
    setup_newsletter,
    shared_pg_schema,
)

pytestmark = pytest.mark.slow

PEOPLE = 5000
CONNECTIONS = 3  # a single `send`
WORKER_CONNECTIONS = 2  # each of the two `send --worker` processes


# ----------------------------------------------------------------------------- scenarios


def _private_pg(name: str, folder: Path, restart: str | None, workers: int) -> Verdict:
    pg = PrivatePostgres()
    sink = Sink(folder)
    try:
        pg.start()
        sink.start()
        connections = WORKER_CONNECTIONS if workers else CONNECTIONS
        news = setup_newsletter(folder, pg.url, sink.port, people=PEOPLE, connections=connections)
        fault = None
        if restart:

            def fault() -> str:
                pg.restart(restart)
                return f"pg_ctl restart -m {restart} done"

        return run_scenario(
            name, news, sink, processes=workers or 1, worker=bool(workers), fault=fault
        )
    finally:
        sink.kill()
        pg.destroy()


def _sink_restart(name: str, folder: Path, url: str) -> Verdict:
    sink = Sink(folder)
    try:
        sink.start()
        news = setup_newsletter(folder, url, sink.port, people=PEOPLE, connections=CONNECTIONS)

        def fault() -> str:
            sink.kill()
            time.sleep(1.0)
            sink.start()
            return "sink SIGKILLed, started again on the same port after 1 s"

        return run_scenario(name, news, sink, fault=fault)
    finally:
        sink.kill()


def _sqlite(folder: Path) -> str:
    return f"sqlite:///{folder / 'store' / 'digest.db'}"


def scenario_no_fault_sqlite(folder: Path) -> Verdict:
    sink = Sink(folder)
    try:
        sink.start()
        news = setup_newsletter(
            folder, _sqlite(folder), sink.port, people=PEOPLE, connections=CONNECTIONS
        )
        return run_scenario("no-fault-sqlite-send", news, sink, reruns=0)
    finally:
        sink.kill()


def scenario_smtp_restart_sqlite(folder: Path) -> Verdict:
    return _sink_restart("smtp-restart-sqlite-send", folder, _sqlite(folder))


def scenario_smtp_restart_pg(folder: Path) -> Verdict:
    with shared_pg_schema() as url:
        return _sink_restart("smtp-restart-pg-send", folder, url)


def scenario_disk_full_sqlite(folder: Path) -> Verdict:
    disk = Tmpfs(folder / "disk", megabytes=48)
    sink = Sink(folder)
    try:
        sink.start()
        url = f"sqlite:///{disk.where / 'store' / 'digest.db'}"
        news: Newsletter = setup_newsletter(
            folder, url, sink.port, people=PEOPLE, connections=CONNECTIONS
        )

        def fault() -> str:
            written = disk.fill()
            return f"filled the tmpfs with {written / 2**20:.1f} MiB; writes now fail"

        return run_scenario(
            "disk-full-sqlite-send", news, sink, fault=fault, before_rerun=disk.free
        )
    finally:
        sink.kill()
        disk.unmount()


SCENARIOS: dict[str, Callable[[Path], Verdict]] = {
    "no-fault-sqlite-send": scenario_no_fault_sqlite,
    "no-fault-pg-workers": lambda f: _private_pg("no-fault-pg-workers", f, None, 2),
    "pg-restart-fast-send": lambda f: _private_pg("pg-restart-fast-send", f, "fast", 0),
    "pg-restart-immediate-send": lambda f: _private_pg(
        "pg-restart-immediate-send", f, "immediate", 0
    ),
    "pg-restart-fast-workers": lambda f: _private_pg("pg-restart-fast-workers", f, "fast", 2),
    "pg-restart-immediate-workers": lambda f: _private_pg(
        "pg-restart-immediate-workers", f, "immediate", 2
    ),
    "smtp-restart-sqlite-send": scenario_smtp_restart_sqlite,
    "smtp-restart-pg-send": scenario_smtp_restart_pg,
    "disk-full-sqlite-send": scenario_disk_full_sqlite,
}
NO_FAULT = ["no-fault-sqlite-send", "no-fault-pg-workers"]
PG_RESTART = [
    "pg-restart-fast-send",
    "pg-restart-immediate-send",
    "pg-restart-fast-workers",
    "pg-restart-immediate-workers",
]
SMTP_RESTART = ["smtp-restart-sqlite-send", "smtp-restart-pg-send"]
FAULTS = PG_RESTART + SMTP_RESTART + ["disk-full-sqlite-send"]

_done: dict[str, Verdict | BaseException] = {}


def outcome(name: str, tmp_path_factory: pytest.TempPathFactory) -> Verdict:
    """The scenario's verdict, run once per session (a skip or a harness error too)."""
    if name not in _done:
        try:
            _done[name] = SCENARIOS[name](tmp_path_factory.mktemp(name))
            if isinstance(_done[name], Verdict):
                print(f"\n{_done[name].summary()}")  # shown with -s
        except BaseException as exc:  # a skip, a harness error: the same for every test
            _done[name] = exc
    result = _done[name]
    if isinstance(result, BaseException):
        raise result
    return result


# ----------------------------------------------------------------------------- judgements

PAUSE = re.compile(r"send paused: .*run .+ again")


def process_problems(v: Verdict) -> list[str]:
    """Exit codes other than 0 and 5, tracebacks, internal errors, a pause without the
    message saying to run the command again, a send that never finished."""
    problems = []
    for run in v.runs:
        flat = " ".join(run.stderr.split())
        if run.returncode is None:
            problems.append(f"{run.label}: still running after the harness's timeout (killed)")
        elif run.returncode not in (0, 5):
            problems.append(f"{run.label}: exit code {run.returncode}")
        elif run.returncode == 5 and not PAUSE.search(flat):
            problems.append(f"{run.label}: exit 5 without 'send paused: … run … again'")
        if "Traceback" in run.stderr:
            problems.append(f"{run.label}: a traceback on stderr")
        if "internal error" in run.stderr:
            problems.append(f"{run.label}: 'internal error' on stderr")
    if v.issue_state != "sent":
        problems.append(
            f"the issue is {v.issue_state!r}, not 'sent', after {len(v.rounds)} round(s)"
        )
    return problems


def exactly_once_problems(v: Verdict) -> list[str]:
    problems = []
    if v.duplicates:
        problems.append(f"{len(v.duplicates)} recipient(s) accepted more than once")
    if v.unreached:
        problems.append(
            f"{len(v.unreached)} recipient(s) neither reached nor uncertain "
            f"(rows {dict(v.states)}; {len(v.sent_not_accepted)} 'sent' without the sink "
            f"having their Message-ID; {len(v.accepted_not_recorded)} accepted but recorded "
            "as neither sent nor uncertain)"
        )
    if v.strangers:
        problems.append(f"{len(v.strangers)} message(s) for people not in the send")
    if len(v.uncertain) > v.bound:
        problems.append(f"{len(v.uncertain)} rows uncertain, more than the bound {v.bound}")
    problems.extend(v.notes)
    return problems


@pytest.mark.parametrize("name", NO_FAULT)
def test_harness_no_fault_send_is_exact(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Without a fault everything must hold, in one run, with exit 0: else the harness
    (sink, cluster, setup) is broken, not the sender."""
    v = outcome(name, tmp_path_factory)
    assert len(v.rounds) == 1 and all(r.returncode == 0 for r in v.runs), v.summary()
    assert process_problems(v) == [], v.summary()
    assert exactly_once_problems(v) == [], v.summary()
    assert v.uncertain == [] and v.states == {"sent": PEOPLE}, v.summary()
    assert v.accepted == PEOPLE, v.summary()


@pytest.mark.parametrize("name", FAULTS)
def test_exits_0_or_5_never_a_traceback_and_finishes_when_run_again(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    v = outcome(name, tmp_path_factory)
    problems = process_problems(v)
    assert problems == [], "\n".join(problems) + "\n" + v.summary()


@pytest.mark.parametrize("name", FAULTS)
def test_every_recipient_exactly_once_at_most_connections_uncertain(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    v = outcome(name, tmp_path_factory)
    problems = exactly_once_problems(v)
    assert problems == [], "\n".join(problems) + "\n" + v.summary()


@pytest.mark.parametrize("name", PG_RESTART)
def test_a_live_process_that_loses_the_database_leaves_nothing_uncertain(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """STRICT (beyond the crash bound): the sender is alive while PostgreSQL restarts and
    has every SMTP reply in hand, so after reconnecting it knows which messages were
    accepted: none of its rows should end up uncertain."""
    v = outcome(name, tmp_path_factory)
    assert v.uncertain == [], (
        f"STRICT: {len(v.uncertain)} row(s) uncertain after a live process lost its database "
        f"({v.uncertain_accepted} of them were accepted by the sink)\n{v.summary()}"
    )


@pytest.mark.parametrize("name", SMTP_RESTART)
def test_a_live_process_that_loses_the_mail_server_leaves_only_lost_replies_uncertain(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """After reconnecting to the restarted mail server, a row is uncertain only when its
    whole message went and the reply never came: the one case no client can resolve (the
    sink may or may not have accepted it, depending on where the kill landed). Every
    message the server answered is recorded, whatever became of the connection after."""
    v = outcome(name, tmp_path_factory)
    lost_reply = "the message was sent but"
    others = {r: n for r, n in v.uncertain_reasons.items() if not r.startswith(lost_reply)}
    assert not others, f"uncertain for another reason than a lost reply\n{v.summary()}"
    assert v.accepted_not_recorded == [], v.summary()


def test_a_full_disk_pauses_with_exit_5_then_the_same_command_finishes(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    v = outcome("disk-full-sqlite-send", tmp_path_factory)
    first = v.rounds[0][0]
    flat = " ".join(first.stderr.split())
    assert first.returncode == 5, f"the run on a full disk: exit {first.returncode}\n{v.summary()}"
    assert PAUSE.search(flat), f"no pause message on a full disk\n{v.summary()}"
    assert "Traceback" not in first.stderr and "internal error" not in first.stderr, v.summary()
    assert len(v.rounds) >= 2 and v.rounds[-1][0].returncode == 0, v.summary()
    assert v.issue_state == "sent", v.summary()
