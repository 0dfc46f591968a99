"""Real sends under real faults (tests/faults): the pieces and the verdict.

- :class:`Sink`: a minimal SMTP server in a process of its own. Before it answers 250 to
  a message it appends ``rcpt<TAB>Message-ID`` to a file and fsyncs it, so a SIGKILL of
  the sink loses nothing it accepted, and the file accumulates across restarts. It runs
  as ``python tests/faults_support.py sink PORT FILE`` (only the standard library is
  imported at the top of this module, so that it starts quickly).
- :class:`PrivatePostgres`: a PostgreSQL cluster of the test's own (``initdb`` as the
  ``postgres`` user in a temporary folder, a free port), which a test may restart; the
  machine's shared server is never touched.
- :func:`shared_pg_schema`: a fresh schema in the shared PostgreSQL database, the way
  tests/conftest.py makes one, dropped at the end.
- :class:`Tmpfs`: a small tmpfs mount (root) to fill up.
- :func:`run_scenario`: a send (one process, or several ``--worker`` processes) of
  :data:`ISSUE_ID` to thousands of invented people through the sink, a fault injected
  once a share of the messages was accepted, then the same command again while the issue
  is not sent; it returns a :class:`Verdict` built from SQL on the send log and the sink's
  record.
"""

import asyncio
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ISSUE_ID = "3.1"  # the Vol: line of tests/data/issues/digest-vol-3.1.txt
SHARED_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


class HarnessError(AssertionError):
    """The test itself could not do what it meant to (not a finding about the sender)."""


# ----------------------------------------------------------------------------- the sink


_MESSAGE_ID = re.compile(rb"(?im)^message-id:\s*(<[^>\r\n]*>)")


def _trim_partial_line(record: Path) -> None:
    """A sink killed in the middle of a write leaves a partial last line: that message
    was never answered 250, so it was not accepted. Cut it before appending again."""
    if not record.exists():
        return
    data = record.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(record, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def run_sink(port: int, record: Path) -> None:
    """Accept every message; record it durably before the 250 (see the module doc)."""
    _trim_partial_line(record)
    out = open(record, "ab", buffering=0)  # open for the life of the process
    extensions = b"250-sink.test\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        rcpts: list[bytes] = []
        try:
            writer.write(b"220 sink.test ESMTP\r\n")
            while line := await reader.readline():
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    writer.write(extensions)
                elif verb == b"MAIL":
                    rcpts = []
                    writer.write(b"250 2.1.0 ok\r\n")
                elif verb == b"RCPT":
                    address = line.split(b":", 1)[1].strip().split(b" ")[0].strip(b"<>")
                    rcpts.append(address.lower())
                    writer.write(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    data = await reader.readuntil(b"\r\n.\r\n")
                    head = data.split(b"\r\n\r\n", 1)[0]
                    found = _MESSAGE_ID.search(head)
                    message_id = found.group(1) if found else b"-"
                    out.write(b"".join(r + b"\t" + message_id + b"\n" for r in rcpts))
                    os.fsync(out.fileno())  # durable before the client hears 250
                    rcpts = []
                    writer.write(b"250 2.0.0 accepted\r\n")
                elif verb == b"RSET":
                    rcpts = []
                    writer.write(b"250 2.0.0 ok\r\n")
                elif verb == b"QUIT":
                    writer.write(b"221 2.0.0 bye\r\n")
                    await writer.drain()
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        for _ in range(100):  # the port may take a moment to be free after a kill
            try:
                server = await asyncio.start_server(
                    handle, "127.0.0.1", port, limit=1 << 24, reuse_address=True
                )
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            raise SystemExit(f"sink: cannot listen on port {port}")
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        async with server:
            await stop.wait()

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Sink:
    """The sink's process: start, SIGKILL, start again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.record = folder / "sink-accepted.tsv"
        self.log = folder / "sink.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> "Sink":
        assert self.proc is None
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "sink", str(self.port), str(self.record)],
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            self.kill()
            raise HarnessError(f"the SMTP sink did not start: {self.log.read_text()[-2000:]}")
        return self

    def kill(self) -> None:
        """SIGKILL: whatever it accepted is already on disk."""
        if self.proc is not None:
            with suppress(ProcessLookupError):
                self.proc.kill()
            self.proc.wait(timeout=10)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None

    def accepted(self) -> list[tuple[str, str]]:
        """(recipient, Message-ID) of every message answered 250, in order."""
        if not self.record.exists():
            return []
        data = self.record.read_bytes()
        lines = data[: data.rfind(b"\n") + 1].decode().splitlines()
        return [tuple(line.split("\t", 1)) for line in lines]  # type: ignore[misc]

    def count(self) -> int:
        try:
            data = self.record.read_bytes()
        except FileNotFoundError:
            return 0
        return data.count(b"\n")


# ----------------------------------------------------------------------------- PostgreSQL


class PrivatePostgres:
    """A cluster of the test's own, on a free loopback port; always ``destroy()`` it."""

    def __init__(self) -> None:
        for tool in ("initdb", "pg_ctl"):
            if shutil.which(tool) is None:
                import pytest

                pytest.skip(f"{tool} is not on PATH: a private PostgreSQL cannot be started")
        self.as_postgres = os.geteuid() == 0  # initdb refuses to run as root
        self.folder = Path(tempfile.mkdtemp(prefix="digest-faults-pg-"))
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self.data = self.folder / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 90) -> str:
        extra = {"user": "postgres", "group": "postgres"} if self.as_postgres else {}
        env = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8", "PGTZ": "UTC"}
        # output to a file, not a pipe: a postmaster started by pg_ctl would inherit the
        # pipe and keep it open, and reading it would never end
        output = self.folder / "tool.out"
        try:
            with open(output, "w") as f:
                done = subprocess.run(
                    list(args),
                    cwd=self.folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                    **extra,  # type: ignore[arg-type]
                )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(
                f"{' '.join(args)} did not finish in {timeout} s{self.server_log()}"
            ) from exc
        text = output.read_text("utf-8", "replace")
        if done.returncode != 0:
            raise HarnessError(
                f"{' '.join(args)} failed ({done.returncode}): {text[-1500:]}{self.server_log()}"
            )
        return text

    def server_log(self) -> str:
        log = self.folder / "server.log"
        return f"\nserver log: {log.read_text()[-2000:]}" if log.exists() else ""

    def start(self) -> "PrivatePostgres":
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-sync",
        )  # fmt: skip
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            # fsync only matters when the machine dies: a restart keeps what the kernel has
            "-c fsync=off -c max_connections=60"
        )
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
            "-o", options, "-w", "-t", "60", "start",
        )  # fmt: skip
        return self

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m MODE``: every client connection is cut; waits until the
        server accepts connections again."""
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
            "-m", mode, "-w", "-t", "60", "restart",
        )  # fmt: skip

    def destroy(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30",
                          "stop")  # fmt: skip
        except HarnessError:
            pid_file = self.data / "postmaster.pid"
            with suppress(OSError, ValueError, IndexError, ProcessLookupError):
                os.kill(int(pid_file.read_text().splitlines()[0]), signal.SIGKILL)
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def shared_pg_url() -> str:
    return os.environ.get("DIGEST_MAILER_TEST_DATABASE_URL") or SHARED_PG_URL


@contextmanager
def shared_pg_schema() -> Iterator[str]:
    """A schema of the test's own in the shared database (as tests/conftest.py does);
    skips when that server does not answer."""
    import uuid

    import pytest
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.pool import NullPool

    base = shared_pg_url()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    except OperationalError as exc:
        pytest.skip(f"the shared PostgreSQL at {base} does not answer: {exc.orig}")
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


# ----------------------------------------------------------------------------- tmpfs


class Tmpfs:
    """A tmpfs of ``megabytes`` mounted at ``where`` (root only; skips when mounting is
    not permitted), to be filled with a filler file."""

    def __init__(self, where: Path, megabytes: int) -> None:
        import pytest

        where.mkdir(parents=True, exist_ok=True)
        self.where = where
        self.filler = where / "filler"
        if shutil.which("mount") is None:
            pytest.skip("no mount command: cannot make a small filesystem to fill")
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(where)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            pytest.skip(
                "mounting a tmpfs is not permitted here (needs root or CAP_SYS_ADMIN): "
                + (done.stderr.strip() or f"mount exited {done.returncode}")
            )

    def fill(self) -> int:
        """Write the filler until the filesystem refuses; return the bytes written."""
        written = 0
        with open(self.filler, "wb", buffering=0) as f:
            for chunk in (1 << 20, 1 << 12, 1 << 9):
                block = b"\0" * chunk
                while True:
                    try:
                        f.write(block)
                    except OSError:
                        break
                    written += chunk
        stats = os.statvfs(self.where)
        if stats.f_bavail * stats.f_frsize > 8192:
            raise HarnessError(f"the tmpfs still has {stats.f_bavail * stats.f_frsize} bytes free")
        return written

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def unmount(self) -> None:
        done = subprocess.run(["umount", str(self.where)], capture_output=True, timeout=30)
        if done.returncode != 0:
            subprocess.run(["umount", "-l", str(self.where)], capture_output=True, timeout=30)


# ----------------------------------------------------------------------------- the newsletter

FIRST = "ana bo chen dara emeka fatima goran hana ilse jun kofi lena mateo nadia oskar priya quinn rosa sami tomas uma viktor wen ximena yusuf zofia".split()
LAST = "abara berg costa diallo eriksen fontaine garcia horvat ito jensen kowalski lindqvist moreau novak okafor petrov quispe rahman silva tanaka ueda vasquez weber xu yilmaz zhou".split()
DOMAINS = "corp.test mail.transit-lab.test riverside.test council-north.test uni-east.test harbour.test".split()


def invented_people(n: int) -> list[tuple[str, str, str]]:
    """(address, first name, last name) of ``n`` invented people on .test domains."""
    people = []
    for i in range(n):
        first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
        domain = DOMAINS[i % len(DOMAINS)]
        people.append((f"{first}.{last}.{i:05d}@{domain}", first.title(), last.title()))
    return people


@dataclass
class Newsletter:
    folder: Path
    config: Path
    issue: Path
    url: str
    people: list[str]
    connections: int


def setup_newsletter(
    folder: Path, url: str, smtp_port: int, *, people: int = 5000, connections: int = 3
) -> Newsletter:
    """An initialised store on ``url`` with ``people`` subscribers imported through the
    CLI, a config pointed at the sink, and the sample issue (its id: :data:`ISSUE_ID`)."""
    from conftest import DATA, NEWSLETTER, Cli, write_config

    smtp = (
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        f"connections = {connections}\ntimeout = 5\n"
        # reconnects back off 0.25 + 0.5 + 1 s: long enough to outlast a 1 s outage
        "retry_base_seconds = 0.25\n"
        "\n[workers]\nlease_seconds = 6\nclaim_batch = 100\n"
    )
    config = write_config(folder / "config.toml", url, NEWSLETTER + smtp)
    # a database that stays away (a full disk) pauses the send after 15 s, not 60
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("[database]\n", "[database]\nretry_seconds = 15\n", 1), encoding="utf-8"
    )
    cli = Cli(config)
    cli.ok("init")
    everyone = invented_people(people)
    csv = folder / "members.csv"
    csv.write_text(
        "Email Address,First Name,Last Name\n"
        + "".join(f"{a},{f},{la}\n" for a, f, la in everyone),
        "utf-8",
    )
    imported = cli.ok("subscribers", "import", str(csv))
    assert f"{people} added" in imported.stdout, imported.stdout
    issue = folder / "vol-3.1.txt"
    shutil.copy(DATA / "issues" / "digest-vol-3.1.txt", issue)
    return Newsletter(folder, config, issue, url, [a for a, _, _ in everyone], connections)


def send_command(news: Newsletter, worker: bool) -> list[str]:
    script = Path(sys.executable).parent / "digest-mailer"
    program = [str(script)] if script.exists() else [sys.executable, "-m", "digest_mailer"]
    command = [*program, "--config", str(news.config), "send", str(news.issue), "--yes"]
    return command + ["--skip-test"] + (["--worker"] if worker else [])


# ----------------------------------------------------------------------------- the runs


@dataclass
class Run:
    """One send process: its exit code (None: still running at the harness's deadline,
    then killed), its output, how long it ran."""

    label: str
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    def tail(self, lines: int = 4) -> str:
        last = [line for line in self.stderr.strip().splitlines() if line.strip()][-lines:]
        return " | ".join(last)


class Round:
    """The send processes started together (one, or several --worker)."""

    def __init__(self, news: Newsletter, processes: int, worker: bool, label: str) -> None:
        from conftest import SECRET

        env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET, "COLUMNS": "200"}
        env.pop("DIGEST_MAILER_DEBUG", None)  # as a person runs it
        self.label = label
        self.started = time.monotonic()
        self.procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
        for i in range(processes):
            out = news.folder / f"{label}-{i}.stdout"
            err = news.folder / f"{label}-{i}.stderr"
            with open(out, "wb") as o, open(err, "wb") as e:
                proc = subprocess.Popen(
                    send_command(news, worker),
                    env=env,
                    stdout=o,
                    stderr=e,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.procs.append((proc, out, err))

    def running(self) -> bool:
        return any(p.poll() is None for p, _, _ in self.procs)

    def wait(self, timeout: float) -> list[Run]:
        deadline = self.started + timeout
        runs = []
        for i, (proc, out, err) in enumerate(self.procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                code: int | None = proc.returncode
            except subprocess.TimeoutExpired:
                self.kill()
                code = None
            runs.append(
                Run(
                    f"{self.label}-{i}",
                    code,
                    out.read_text("utf-8", "replace"),
                    err.read_text("utf-8", "replace"),
                    time.monotonic() - self.started,
                )
            )
        return runs

    def kill(self) -> None:
        for proc, _, _ in self.procs:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)  # its own session: only it
                proc.wait(timeout=10)


def issue_state(url: str) -> str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            state = conn.execute(
                text("SELECT state FROM issues WHERE id = :i"), {"i": ISSUE_ID}
            ).scalar()
    finally:
        engine.dispose()
    return str(state)


# ----------------------------------------------------------------------------- the verdict


@dataclass
class Verdict:
    """What the send log (SQL) and the sink's record say after the last round."""

    scenario: str
    people: int
    bound: int  # uncertain rows allowed: connections per process that ran the fault
    rounds: list[list[Run]]
    issue_state: str
    states: Counter[str]
    uncertain: list[str]
    uncertain_accepted: int  # of those, how many the sink did accept (once)
    uncertain_reasons: Counter[str]  # the SMTP reply / note recorded on those rows
    accepted: int  # messages the sink answered 250
    duplicates: dict[str, int]  # recipient -> times accepted, when more than once
    strangers: list[str]  # accepted for someone not in the send
    unreached: list[str]  # neither (sent and accepted) nor uncertain
    sent_not_accepted: list[str]  # row `sent`, but the sink has no message with its id
    accepted_not_recorded: list[str]  # accepted, but the row is neither sent nor uncertain
    accepted_at_fault: int | None = None
    fault_note: str = ""
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def runs(self) -> list[Run]:
        return [run for round_ in self.rounds for run in round_]

    def summary(self) -> str:
        lines = [
            f"scenario {self.scenario}: {self.seconds:.1f} s; {self.people} recipients; "
            f"issue state {self.issue_state!r}; rows {dict(sorted(self.states.items()))}",
            f"  sink accepted {self.accepted}; duplicates {len(self.duplicates)}; "
            f"uncertain {len(self.uncertain)} (bound {self.bound}; {self.uncertain_accepted} "
            f"of them accepted by the sink); unreached {len(self.unreached)}; "
            f"sent-but-not-accepted {len(self.sent_not_accepted)}; "
            f"accepted-but-not-recorded {len(self.accepted_not_recorded)}; "
            f"strangers {len(self.strangers)}",
        ]
        if self.accepted_at_fault is not None:
            lines.append(f"  fault at {self.accepted_at_fault} accepted: {self.fault_note}")
        for run in self.runs:
            lines.append(
                f"  run {run.label}: exit {run.returncode} after {run.seconds:.1f} s; "
                f"stderr: {run.tail()}"
            )
        lines.extend(f"  note: {n}" for n in self.notes)
        for name in ("duplicates", "unreached", "sent_not_accepted", "accepted_not_recorded"):
            value = getattr(self, name)
            if value:
                shown = list(value.items())[:5] if isinstance(value, dict) else value[:5]
                lines.append(f"  e.g. {name}: {shown}")
        if self.uncertain:
            lines.append(f"  uncertain: {self.uncertain[:10]}")
            lines.append(f"  uncertain rows say: {dict(self.uncertain_reasons)}")
        return "\n".join(lines)


def verdict(
    scenario: str, news: Newsletter, sink: Sink, rounds: list[list[Run]], bound: int
) -> Verdict:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(news.url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT address, state, message_id, smtp_message FROM deliveries "
                    "WHERE issue_id = :i"
                ),
                {"i": ISSUE_ID},
            ).all()
            state = conn.execute(
                text("SELECT state FROM issues WHERE id = :i"), {"i": ISSUE_ID}
            ).scalar()
    finally:
        engine.dispose()
    log = {address.lower(): (st, mid) for address, st, mid, _ in rows}
    reasons = Counter((reply or "(none)")[:120] for _, st, _, reply in rows if st == "uncertain")
    accepted = sink.accepted()
    times = Counter(rcpt for rcpt, _ in accepted)
    pairs = set(accepted)
    everyone = {a.lower() for a in news.people}
    notes = []
    if set(log) != everyone:
        notes.append(
            f"the send log has {len(log)} rows for {len(everyone)} people "
            f"({len(everyone - set(log))} missing, {len(set(log) - everyone)} extra)"
        )
    uncertain = sorted(a for a, (st, _) in log.items() if st == "uncertain")
    unreached, sent_not_accepted, not_recorded = [], [], []
    for address in sorted(everyone):
        st, mid = log.get(address, ("(no row)", None))
        if st == "sent":
            if (address, mid) not in pairs:
                sent_not_accepted.append(address)
                unreached.append(address)
        elif st != "uncertain":
            unreached.append(address)
            if times[address]:
                not_recorded.append(address)
    return Verdict(
        scenario=scenario,
        people=len(everyone),
        bound=bound,
        rounds=rounds,
        issue_state=str(state),
        states=Counter(st for st, _ in log.values()),
        uncertain=uncertain,
        uncertain_accepted=sum(1 for a in uncertain if times[a]),
        uncertain_reasons=reasons,
        accepted=len(accepted),
        duplicates={a: n for a, n in times.items() if n > 1},
        strangers=sorted(set(times) - everyone),
        unreached=unreached,
        sent_not_accepted=sent_not_accepted,
        accepted_not_recorded=not_recorded,
        notes=notes,
    )


def run_scenario(
    scenario: str,
    news: Newsletter,
    sink: Sink,
    *,
    processes: int = 1,
    worker: bool = False,
    fault: Callable[[], str] | None = None,
    fault_share: float = 1 / 3,
    before_rerun: Callable[[], None] | None = None,
    reruns: int = 3,
    round_timeout: float = 90,
) -> Verdict:
    """One round of send processes with ``fault`` (returns a note) injected once
    ``fault_share`` of the recipients' messages were accepted; then, while the issue is
    not ``sent``, ``before_rerun`` once and the same command again (at most ``reruns``
    rounds more). The bound on uncertain rows: connections x processes."""
    started = time.monotonic()
    rounds: list[list[Run]] = []
    at_fault: int | None = None
    note = ""
    first = Round(news, processes, worker, "round1")
    try:
        if fault is not None:
            target = int(len(news.people) * fault_share)
            deadline = time.monotonic() + 60
            while sink.count() < target:
                if not first.running():
                    runs = first.wait(5)
                    raise HarnessError(
                        f"the send stopped before the fault could be injected "
                        f"({sink.count()} accepted): "
                        + "; ".join(f"exit {r.returncode}: {r.tail()}" for r in runs)
                    )
                if time.monotonic() > deadline:
                    raise HarnessError(
                        f"only {sink.count()} of {target} messages accepted after 60 s: "
                        "too slow to inject the fault"
                    )
                time.sleep(0.01)
            at_fault = sink.count()
            if not first.running():
                raise HarnessError("the send finished before the fault was injected")
            note = fault()
        rounds.append(first.wait(round_timeout))
    finally:
        first.kill()
    for n in range(reruns):
        if issue_state(news.url) == "sent":
            break
        if n == 0 and before_rerun is not None:
            before_rerun()
        again = Round(news, processes, worker, f"round{n + 2}")
        try:
            rounds.append(again.wait(round_timeout))
        finally:
            again.kill()
    result = verdict(scenario, news, sink, rounds, news.connections * processes)
    result.accepted_at_fault = at_fault
    result.fault_note = note
    result.seconds = time.monotonic() - started
    return result


def main(argv: list[str]) -> None:
    if len(argv) == 3 and argv[0] == "sink":
        run_sink(int(argv[1]), Path(argv[2]))
        return
    raise SystemExit("usage: python tests/faults_support.py sink PORT FILE")


if __name__ == "__main__":
    main(sys.argv[1:])
