"""Send throughput: digest-mailer against a bare smtplib loop and smtp-source, same sink.

digest-mailer's sender, a bare smtplib loop and Postfix's smtp-source each send through
the same sink with the same number of connections, in the same run.

Sinks (--sink, several may be given; each runs in the same run):

- ``count``: a minimal asyncio sink that accepts and counts (aiosmtpd's line-by-line DATA
  parsing would hide the sender's own cost);
- ``headers``: the same, and per message it parses the headers
  (email.parser.BytesHeaderParser) and appends a log line (From, To, Message-ID, size)
  to a file, as a real server does some work per message;
- ``smtp-sink``: Postfix's C sink (``smtp-sink -c``), skipped when not installed.

A sink runs in a process of its own, started afresh for each client. Clients: the bare
smtplib loop (one thread per connection), digest-mailer (one process, or ``--workers``
processes on PostgreSQL) and, as the reference for the limit, Postfix's ``smtp-source``
(C; same sessions, message count and size). Each client runs in a child process, so its
figures are its own: CPU is user+sys from ``os.wait4`` of the client process(es) (the
sink's is shown apart), less what each used before its timed window began (interpreter
start, imports, compose, queueing); peak memory is VmHWM from /proc, which starts afresh
at exec (ru_maxrss does not: it keeps the parent's size at fork). Figures are medians of
``--repeat`` runs; ratios are medians of the per-run ratios to the bare loop.

    python benchmarks/send_throughput.py [--subscribers 20000] [--connections 1 4]
        [--sink count headers smtp-sink] [--repeat 3] [--memory-check 100000]
        [--database-url URL] [--dkim] [--pipelining]
    python benchmarks/send_throughput.py --database-url postgresql+psycopg://… \\
        --workers 1 2 4 --connections 2 --subscribers 100000
    python benchmarks/send_throughput.py --profile DIR [--py-spy] …   # where time goes

--profile runs each measurement once with the Python clients profiled in their timed
window: cProfile with a thread CPU clock (so waits do not count; every call costs, so the
figures are inflated, small functions most), or with --py-spy, py-spy sampling the thread
that holds the GIL (little overhead; I/O that releases the GIL, such as smtplib's
sendall, is not seen). It prints the top 25 functions by own and cumulative time, in µs
per message, and digest-mailer's SQL per message: statements, commits and, on
PostgreSQL, round trips and their client-observed time from a libpq trace.

On PostgreSQL the benchmark works in a database of its own (created on the server of
--database-url and dropped at the end); the database named in the URL is not touched.

Targets: rate >= 0.8 x bare smtplib (single process on the headers and smtp-sink sinks;
PostgreSQL workers 1 and 2), CPU per message <= 1.2 x bare smtplib, 4 workers no slower
than 2, peak memory < 200 MB and not growing with the list size. With --dkim the same
send runs again with DKIM signing on, and the signing cost per message is measured on its
own (target: at most 1.5 ms).
"""

import argparse
import asyncio
import importlib
import json
import os
import re
import resource
import shutil
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from types import ModuleType
from typing import Any

# ------------------------------------------------------------------- the engine (shim)


def send_engine() -> tuple[ModuleType, Callable[..., Any]]:
    """The send engine, whose public functions are ``prepare_send``, ``queue_recipients``,
    ``run_send`` and ``run_worker``: ``digest_mailer.send`` once the engine has moved
    there, else ``digest_mailer.sender`` (and ``digest_mailer.workers``). A function, not
    a module-level import, so that the bare client and the sinks do not load digest-mailer
    (its imports would count in their memory)."""
    try:
        engine = importlib.import_module("digest_mailer.send")
    except ImportError as exc:
        if getattr(exc, "name", None) != "digest_mailer.send":
            raise  # the package is there but does not import: say so, measure nothing
        from digest_mailer import sender as engine  # type: ignore[attr-defined,no-redef]
    run_worker = getattr(engine, "run_worker", None)
    if run_worker is None:
        from digest_mailer.workers import run_worker  # type: ignore[import-not-found,no-redef]
    return engine, run_worker


ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-0123456789abcdef"
SINKS = ("count", "headers", "smtp-sink")
POSTFIX_DIRS = ("/usr/sbin", "/usr/lib/postfix/sbin", "/usr/libexec/postfix")


def postfix_tool(name: str) -> str | None:
    """The path of Postfix's ``smtp-sink`` or ``smtp-source``, or None."""
    found = shutil.which(name)
    if found:
        return found
    for folder in POSTFIX_DIRS:
        path = Path(folder) / name
        if os.access(path, os.X_OK):
            return str(path)
    return None


def cpu_seconds() -> float:
    """User + system CPU of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_mb() -> float:
    """This process's peak resident memory since exec (VmHWM), in MB."""
    return vm_hwm_mb("self") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def vm_hwm_mb(pid: int | str) -> float:
    """A process's VmHWM from /proc, in MB (0 when it cannot be read)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


# ----------------------------------------------------------------------------- processes


def reap(
    proc: subprocess.Popen[Any],
    timeout: float = 7200.0,
    poll: Callable[[], None] | None = None,
    ok: tuple[int, ...] = (0,),
) -> tuple[str, float]:
    """Wait for ``proc`` with ``os.wait4``: its stdout (when piped) and its user+sys CPU
    seconds (its own and its waited-for children's). ``poll`` runs while it lives; an
    exit status not in ``ok`` is an error."""
    deadline = time.monotonic() + timeout
    while (done := try_reap(proc, ok)) is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{proc.args!r} did not finish within {timeout:g} s")
        if poll is not None:
            poll()
        time.sleep(0.05)
    return done


def try_reap(proc: subprocess.Popen[Any], ok: tuple[int, ...] = (0,)) -> tuple[str, float] | None:
    """:func:`reap` if ``proc`` has ended, else None at once."""
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if not pid:
        return None
    proc.returncode = os.waitstatus_to_exitcode(status)
    out = proc.stdout.read() if proc.stdout is not None else ""
    if proc.returncode not in ok:
        raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    return out, usage.ru_utime + usage.ru_stime


def stop_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL after 10 s (for the finally of a failed run)."""
    if proc.returncode is None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def child_env(profile: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "DIGEST_MAILER_SECRET": SECRET, **(profile or {})}


def spawn_child(*args: str, profile: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """A client child (`--child KIND …`); it prints one JSON line when done. With
    ``profile`` and py-spy, it runs under ``py-spy record``."""
    argv = [sys.executable, __file__, "--child", *args]
    if profile and profile.get("BENCH_PY_SPY"):
        out = Path(profile["BENCH_PROFILE"]) / f"{profile['BENCH_PROFILE_NAME']}.pyspy.txt"
        # --gil: samples of the thread holding the GIL only (py-spy's idle detection
        # counts threads blocked in recv as busy); I/O that releases the GIL is left out
        argv = [profile["BENCH_PY_SPY"], "record", "-r", "250", "-f", "raw", "-o", str(out)]
        argv += ["--gil", "--nonblocking", "--", sys.executable, __file__, "--child", *args]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=child_env(profile))


def collect(proc: subprocess.Popen[str], done: tuple[str, float] | None = None) -> dict[str, float]:
    """A client child's JSON result, with ``cpu``: its CPU (wait4) in its timed window."""
    out, cpu = done or reap(proc)
    result = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    # under py-spy, wait4 sees py-spy (which does not reap the client): the client's own
    # count at its end (a little short of wait4's) stands in
    cpu = max(cpu, result.pop("cpu_end", 0.0))
    result["cpu_total"] = cpu
    result["cpu"] = cpu - result.pop("cpu_start")
    return result


STALL_SECONDS = 120.0  # a worker still running this long after the last delivery hung


def open_deliveries(url: str) -> int:
    """Deliveries not yet done (queued, deferred, claimed or sending)."""
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM deliveries "
            "WHERE state IN ('queued', 'deferred', 'claimed', 'sending')"
        ).fetchone()
    return int(row[0]) if row else 0


def send_state(url: str) -> dict[str, float]:
    """How many deliveries were sent, and when the last one was (epoch seconds)."""
    import psycopg

    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'sent'), "
            "extract(epoch FROM max(sent_at)) FROM deliveries"
        ).fetchone()
    assert row is not None
    return {"sent": int(row[0]), "last_sent_at": float(row[1] or 0.0)}


def collect_workers(
    procs: list[subprocess.Popen[str]],
    url: str,
    stall: float = STALL_SECONDS,
    poll: Callable[[], None] | None = None,
) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """The results of worker children (see :func:`collect`), and the workers that hung: a
    worker still running ``stall`` s after no delivery was left open is stopped, with its
    peak memory read first and its CPU (start-up included) from wait4."""
    left = dict(enumerate(procs))
    results: dict[int, dict[str, float]] = {}
    hung: list[dict[str, float]] = []
    idle_since: float | None = None
    next_check = time.monotonic() + 10
    while left:
        for i, proc in list(left.items()):
            if (done := try_reap(proc)) is not None:
                results[i] = collect(proc, done)
                del left[i]
                next_check = 0.0  # one has finished: are the others?
        if poll is not None:
            poll()
        now = time.monotonic()
        if left and now >= next_check:
            next_check = now + 10
            if open_deliveries(url):
                idle_since = None
            elif idle_since is None:
                idle_since = now
            elif now - idle_since >= stall:
                for proc in left.values():
                    peak = vm_hwm_mb(proc.pid)
                    proc.terminate()
                    _, cpu = reap(proc, timeout=30, ok=(0, -signal.SIGTERM))
                    hung.append({"pid": proc.pid, "peak_mb": peak, "cpu_total": cpu})
                break
        time.sleep(0.2)
    return [results[i] for i in sorted(results)], hung


def run_child(*args: str, profile: dict[str, str] | None = None) -> dict[str, float]:
    proc = spawn_child(*args, profile=profile)
    try:
        return collect(proc)
    finally:
        stop_process(proc)


# ----------------------------------------------------------------------------- the sinks


def run_sink(kind: str, port: int, pipelining: bool, log_path: str) -> None:
    """The asyncio sink (``count`` or ``headers``), until SIGTERM; then prints its count."""
    from email.parser import BytesHeaderParser

    count = 0
    parse = BytesHeaderParser().parsebytes
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")
    extensions = b"250-sink\r\n250-8BITMIME\r\n" + (b"250-PIPELINING\r\n" if pipelining else b"")
    extensions += b"250 SMTPUTF8\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        writer.write(b"220 sink ESMTP\r\n")
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(extensions)
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                data = await reader.readuntil(b"\r\n.\r\n")
                if kind == "headers":
                    headers = parse(data[:-3])
                    log.write(
                        f"{headers['From']}\t{headers['To']}\t{headers['Message-ID']}\t"
                        f"{len(data) - 3}\n"
                    )
                count += 1
                writer.write(b"250 2.0.0 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, limit=1 << 24)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        print("ready", flush=True)
        async with server:
            await stop.wait()
        log.close()
        print(count, flush=True)

    asyncio.run(main())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the sink {proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"the sink on port {port} did not start within {timeout:g} s")


class Sink:
    """One sink process on a port of its own: ``count``, ``headers`` or ``smtp-sink``.
    Use it as a context manager: it is stopped (killed if need be) on the way out."""

    def __init__(self, kind: str, folder: Path, pipelining: bool = False) -> None:
        self.kind = kind
        self.port = free_port()
        self.log = folder / f"sink-{kind}-{self.port}.log"
        self.count = 0
        self.cpu = 0.0
        if kind == "smtp-sink":
            tool = postfix_tool("smtp-sink")
            assert tool is not None
            # -c: running counters (to the log, read at the end); -p: no PIPELINING
            # unless the other sinks offer it too; PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES
            # and DSN are announced by default (this version announces no SMTPUTF8; the
            # benchmark's addresses are ASCII, so none is needed); it accepts everything.
            argv = [tool, "-c"] + ([] if pipelining else ["-p"])
            if os.geteuid() == 0:  # it refuses to run as root without -u
                argv += ["-u", "postfix" if _user_exists("postfix") else "nobody"]
            argv += [f"127.0.0.1:{self.port}", "1000"]
            self.out = self.log.open("wb")
            self.proc: subprocess.Popen[Any] = subprocess.Popen(argv, stdout=self.out)
            wait_for_port(self.port, self.proc)
        else:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--serve-sink", kind, str(self.port)]
                + ["1" if pipelining else "0", str(self.log)],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self.proc.stdout is not None
            if self.proc.stdout.readline().strip() != "ready":
                stop_process(self.proc)
                raise RuntimeError(f"the {kind} sink did not start")

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.returncode is None:
            if exc[0] is None:
                self.stop()
            else:
                stop_process(self.proc)

    def stop(self) -> int:
        """Stop the sink; returns how many messages it accepted (also ``self.count``);
        its CPU seconds are in ``self.cpu``."""
        self.proc.send_signal(signal.SIGTERM)
        out, self.cpu = reap(self.proc, timeout=60, ok=(0, -signal.SIGTERM))
        if self.kind == "smtp-sink":
            self.out.close()
            counters = re.findall(rb"mesg=(\d+)", self.log.read_bytes()[-200:])
            self.count = int(counters[-1]) if counters else 0
        else:
            self.count = int(out.strip().splitlines()[-1])
        return self.count


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# ----------------------------------------------------------------------------- fixtures


def write_issue(path: Path, pad: int = 5) -> None:
    """A digest of realistic shape, padded to a message of about 35 KB (``pad`` times the
    example's details; 0 leaves the example as it is)."""
    base = (ROOT / "examples" / "vol-2.4.txt").read_text("utf-8")
    if not pad:
        path.write_text(base, "utf-8")
        return
    head, rest = base.split("## Details:", 1)
    details, footer = rest.split("\n---\n", 1)
    more = "\n".join(details.strip().splitlines()) + "\n"
    path.write_text(head + "## Details:\n" + more * pad + "\n---\n" + footer, "utf-8")


def write_config(
    folder: Path, port: int, connections: int, database_url: str, dkim_key: Path | None = None
) -> Path:
    url = database_url or f"sqlite:///{folder}/bench{'-dkim' if dkim_key else ''}.db"
    path = folder / ("config-dkim.toml" if dkim_key else "config.toml")
    dkim = (
        f'[dkim]\nselector = "bench"\ndomain = "policy-lab.test"\nprivate_key_file = "{dkim_key}"\n'
        if dkim_key
        else ""
    )
    path.write_text(
        dkim + f'[database]\nurl = "{url}"\n'
        '[newsletter]\nfrom_address = "digest@policy-lab.test"\n'
        'request_address = "digest@policy-lab.test"\npublic_url = "https://d.policy-lab.test"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f"connections = {connections}\n[subscribers]\nallow_test_domains = true\n",
        "utf-8",
    )
    return path


SUBSCRIBER_COLUMNS = (
    "email",
    "email_key",
    "name",
    "status",
    "source",
    "created_at",
    "updated_at",
    "attributes",
    "link_salt",
)


def libpq_url(url: str, database: str | None = None) -> str:
    """A SQLAlchemy PostgreSQL URL as psycopg takes it (optionally for another database)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def postgres_reachable(url: str) -> str:
    """ "" when the server of ``url`` answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(libpq_url(url), connect_timeout=5):
            return ""
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


@contextmanager
def scratch_database(url: str, name: str) -> Iterator[str]:
    """A database of the benchmark's own on the server of ``url`` (dropped first if left
    by an earlier run, dropped at the end): the URL's own database is not touched."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(drop)
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            conn.execute(drop)


def copy_subscribers(url: str, count: int, start: int = 0) -> None:
    """``count`` active subscribers readerN@corp.test, with COPY (PostgreSQL); ANALYZEd."""
    import psycopg
    from psycopg import sql

    from digest_mailer.models import utcnow

    now = utcnow().isoformat()
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in SUBSCRIBER_COLUMNS)
    copy_sql = sql.SQL("COPY subscribers ({}) FROM STDIN").format(columns)
    with psycopg.connect(libpq_url(url)) as conn:
        with conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for first in range(start, start + count, 50_000):
                last = min(first + 50_000, start + count)
                salts = os.urandom(8 * (last - first)).hex()
                copy.write(
                    "".join(
                        f"reader{i}@corp.test\treader{i}@corp.test\tReader {i}\tactive\t"
                        f"import\t{now}\t{now}\t{{}}\t{salts[16 * j : 16 * j + 16]}\n"
                        for j, i in enumerate(range(first, last))
                    )
                )
        conn.execute("ANALYZE subscribers")


def setup_store(database_url: str, folder: Path, subscribers: int, dkim: bool = False) -> str:
    """A fresh schema with ``subscribers`` active subscribers; returns the store's URL
    (``database_url``, or a SQLite file in ``folder`` when it is empty)."""
    from sqlalchemy import text

    from digest_mailer import db
    from digest_mailer.db import insert_many
    from digest_mailer.models import Subscriber, utcnow

    url = database_url or f"sqlite:///{folder}/bench{'-dkim' if dkim else ''}.db"
    if not database_url:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{folder}/bench{'-dkim' if dkim else ''}.db{suffix}").unlink(missing_ok=True)
    sa_engine = db.make_engine(url)
    with sa_engine.begin() as conn:  # a fresh schema each time
        if sa_engine.dialect.name != "sqlite":
            for table in (
                "send_workers",
                "bounces",
                "replies",
                "confirmations",
                "email_requests",
                "test_sends",
                "deliveries",
                "issues",
                "events",
                "list_members",
                "lists",
                "subscribers",
                "alembic_version",
            ):
                conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
            conn.execute(text("DROP FUNCTION IF EXISTS events_append_only() CASCADE"))
    db.upgrade(sa_engine)
    postgres = sa_engine.dialect.name == "postgresql"
    sa_engine.dispose()
    if postgres:
        copy_subscribers(url, subscribers)
        return url
    store = db.open_store(url)
    now = utcnow()
    salts = os.urandom(8 * subscribers).hex()
    with store.Session.begin() as session:
        for start in range(0, subscribers, 5000):
            rows = [
                {
                    "email": f"reader{i}@corp.test",
                    "email_key": f"reader{i}@corp.test",
                    "name": f"Reader {i}",
                    "status": "active",
                    "source": "import",
                    "created_at": now,
                    "updated_at": now,
                    "attributes": "{}",
                    "link_salt": salts[16 * i : 16 * i + 16],
                }
                for i in range(start, min(start + 5000, subscribers))
            ]
            insert_many(session, Subscriber.__table__, rows)
    store.dispose()
    return url


def prebuilt_message(folder: Path, config_path: Path, issue_path: Path) -> Path:
    from digest_mailer import composer
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate

    config = load_config(config_path)
    composed = composer.compose_file(issue_path, config)
    data = MessageTemplate(composed, config).render(
        "reader1@corp.test", "Reader 1", "<bench.1@policy-lab.test>", "https://d.test/u/x"
    )
    path = folder / "message.eml"
    path.write_bytes(data)
    return path


# ------------------------------------------------------------------- profiling (children)


_CAST = re.compile(r"::(?:TIMESTAMP WITH(?:OUT)? TIME ZONE|[A-Z]+(?:\[\])?)")
_LITERAL = re.compile(r"'(?:[^']|'')*'|(?<![\w$])-?\d+(?:\.\d+)?")


class SqlCounter:
    """Counts the SQL a child runs while ``on``: statements by text (executions, rows;
    sqlite3's trace callback, or psycopg's cursor methods wrapped), commits, and on
    PostgreSQL the protocol round trips from a libpq trace with timestamps (see
    :func:`analyse_trace`). pg_stat_statements would need shared_preload_libraries, so a
    server restart; the trace needs nothing from the server."""

    def __init__(self, prefix: Path) -> None:
        from sqlalchemy import event
        from sqlalchemy.pool import Pool

        self.prefix = prefix
        self.on = False
        self.calls: Counter[str] = Counter()
        self.rows: Counter[str] = Counter()
        self.commits = 0
        self.traces: list[tuple[Any, Any, Path]] = []
        self.seen: set[int] = set()
        event.listen(Pool, "checkout", self._checkout)
        with suppress(ImportError):
            import psycopg

            self._patch_psycopg(psycopg)

    @staticmethod
    def label(sql: str) -> str:
        """The statement without its literals (SQLite's trace gives them expanded)."""
        text = _LITERAL.sub("?", " ".join(sql.split()))
        return re.sub(r"\?(?:, \?)+", "?, …", text)[:200]

    def _patch_psycopg(self, psycopg: ModuleType) -> None:
        counter = self
        execute, executemany = psycopg.Cursor.execute, psycopg.Cursor.executemany
        commit = psycopg.Connection.commit

        def counted_execute(cur: Any, query: Any, params: Any = None, **kw: Any) -> Any:
            if counter.on:
                key = counter.label(str(query) if not isinstance(query, bytes) else query.decode())
                counter.calls[key] += 1
                counter.rows[key] += 1
            return execute(cur, query, params, **kw)

        def counted_executemany(cur: Any, query: Any, seq: Any, **kw: Any) -> Any:
            if counter.on:
                seq = list(seq)
                key = counter.label(str(query) if not isinstance(query, bytes) else query.decode())
                counter.calls[key] += 1
                counter.rows[key] += len(seq)
            return executemany(cur, query, seq, **kw)

        def counted_commit(conn: Any) -> Any:
            if counter.on:
                counter.commits += 1
            return commit(conn)

        psycopg.Cursor.execute = counted_execute
        psycopg.Cursor.executemany = counted_executemany
        psycopg.Connection.commit = counted_commit

    def _checkout(self, dbapi_connection: Any, record: Any, proxy: Any) -> None:
        key = id(dbapi_connection)
        if key not in self.seen and hasattr(dbapi_connection, "set_trace_callback"):
            self.seen.add(key)  # sqlite3: a callback per statement, counting while on

            def trace(sql: str) -> None:
                if self.on:
                    label = self.label(sql)
                    self.calls[label] += 1
                    self.rows[label] += 1
                    if label.upper().startswith("COMMIT"):
                        self.commits += 1

            dbapi_connection.set_trace_callback(trace)
        pgconn = getattr(dbapi_connection, "pgconn", None)
        if pgconn is not None and self.on and key not in self.seen:
            self.seen.add(key)  # psycopg: a libpq trace from here on, for the round trips
            from psycopg.pq import Trace

            path = Path(f"{self.prefix}.libpq-{len(self.traces)}.trace")
            stream = path.open("wb")
            pgconn.trace(stream.fileno())
            pgconn.set_trace_flags(Trace(0))  # with timestamps: the time of each trip
            self.traces.append((pgconn, stream, path))

    def start(self) -> None:
        """Counting starts here; connections checked out from now on are traced."""
        self.on = True

    def stop(self, messages: int) -> None:
        self.on = False
        trips: dict[str, list[float]] = {}
        syncs = 0
        for pgconn, stream, path in self.traces:
            with suppress(Exception):
                pgconn.untrace()
            stream.close()
            syncs += analyse_trace(path, trips)
        result = {
            "messages": messages,
            "commits": self.commits,
            "round_trips": sum(int(t[0]) for t in trips.values()) if self.traces else None,
            "syncs": syncs,
            "trips": trips,
            "statements": [
                {"sql": sql, "calls": n, "rows": self.rows[sql]} for sql, n in self.calls.items()
            ],
        }
        Path(f"{self.prefix}.sql.json").write_text(json.dumps(result, indent=1))


def analyse_trace(path: Path, trips: dict[str, list[float]]) -> int:
    """Round trips in a libpq trace (the client sends, then waits for the answer), added
    to ``trips`` by their first statement: [count, client-observed µs in all]. Returns
    the number of ReadyForQuery messages."""
    from datetime import datetime

    names: dict[bytes, str] = {}  # prepared statement -> its SQL
    syncs = 0
    label, start, end = "", 0.0, 0.0
    answered = True

    def close() -> None:
        if label:
            entry = trips.setdefault(label, [0, 0.0])
            entry[0] += 1
            entry[1] += (end - start) * 1e6

    with path.open("rb") as f:
        for line in f:
            if line[:2] in (b"F\t", b"B\t"):  # a trace without timestamps
                line = b"-\t" + line
            parts = line.rstrip(b"\n").split(b"\t", 4)
            if len(parts) < 4 or parts[1] not in (b"F", b"B"):
                continue  # the rest of a statement over several lines
            stamp = (
                0.0 if parts[0] == b"-" else datetime.fromisoformat(parts[0].decode()).timestamp()
            )
            rest = parts[4] if len(parts) > 4 else b""
            if parts[1] == b"F":
                if answered:  # a new round trip
                    close()
                    label, start, answered = "", stamp, False
                two = re.match(rb'\s*"([^"]*)"\s*"([^"]*)', rest)  # Parse, Bind: 2 names
                sql = ""
                if parts[3] == b"Query":
                    sql = rest.strip().strip(b'"').decode("utf-8", "replace")
                elif parts[3] == b"Parse" and two:
                    sql = names[two[1]] = two[2].decode("utf-8", "replace")
                elif parts[3] == b"Bind" and two:
                    sql = names.get(two[2], "")
                if sql and not label:
                    label = SqlCounter.label(sql.rstrip('"'))
            else:
                answered, end = True, stamp
                syncs += parts[3] == b"ReadyForQuery"
    close()
    return syncs


@contextmanager
def profiled(messages: Callable[[], int]) -> Iterator[None]:
    """Around a child's timed window: cProfile (this thread, and each thread started in
    the window, such as the engine's database or signing threads, merged) and SQL counts,
    when the parent asked for them (--profile); nothing otherwise."""
    folder = os.environ.get("BENCH_PROFILE")
    if not folder:
        yield
        return
    prefix = Path(folder) / os.environ["BENCH_PROFILE_NAME"]
    counter = COUNTER
    profilers: list[Any] = []
    if not os.environ.get("BENCH_PY_SPY"):
        import cProfile

        def start_in_thread(*_: Any) -> None:  # a new thread's first event
            profilers.append(cProfile.Profile(time.thread_time))
            profilers[-1].enable()  # in this thread, in place of this function

        profilers.append(cProfile.Profile(time.thread_time))  # CPU, not waits
        threading.setprofile(start_in_thread)
    if counter is not None:
        counter.start()
    if profilers:
        profilers[0].enable()
    try:
        yield
    finally:
        if profilers:
            import pstats

            profilers[0].disable()
            threading.setprofile(None)  # type: ignore[arg-type]
            files = []
            for i, profiler in enumerate(profilers):
                files.append(f"{prefix}.{i}.prof")
                profiler.dump_stats(files[-1])
            pstats.Stats(*files).dump_stats(f"{prefix}.prof")
        if counter is not None:
            counter.stop(messages())


COUNTER: SqlCounter | None = None


# ----------------------------------------------------------------------------- children


def child_send(config_path: str, issue_path: str) -> dict[str, float]:
    from digest_mailer import composer, db
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate
    from digest_mailer.signing import DkimSigner
    from digest_mailer.transport import SMTPSettings, SMTPTransport

    engine, _ = send_engine()
    config = load_config(config_path)
    store = db.open_store(config.database_url)
    composed = composer.compose_file(Path(issue_path), config)
    t0 = time.perf_counter()
    with store.Session.begin() as session:
        plan = engine.prepare_send(session, composed, skip_test=True)
    settings = SMTPSettings.from_config(config)
    template = MessageTemplate(composed, config, signer=DkimSigner.from_config(config))
    cpu_start = cpu_seconds()
    t1 = time.perf_counter()
    sent: list[int] = []
    with profiled(lambda: sent[0] if sent else 0):
        report = engine.run_send(
            store, plan.issue_id, config, template, lambda: SMTPTransport(settings), SECRET.encode()
        )
        sent.append(report.counts["sent"])
    t2 = time.perf_counter()
    store.dispose()
    size = len(template.render("reader1@corp.test", "Reader 1", "<x@y>", "https://d.test/u/x"))
    return {
        "sent": report.counts["sent"],
        "seconds": t2 - t1,
        "queue_seconds": t1 - t0,
        "message_bytes": size,
        "cpu_start": cpu_start,
    }


def child_worker(config_path: str, issue_path: str, start_at: str) -> dict[str, float]:
    """One `send --worker` process; all workers start their send at ``start_at``."""
    from digest_mailer import composer, db
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate
    from digest_mailer.transport import SMTPSettings, SMTPTransport

    engine, run_worker = send_engine()
    config = load_config(config_path)
    store = db.open_store(config.database_url)
    composed = composer.compose_file(Path(issue_path), config)
    template = MessageTemplate(composed, config)
    settings = SMTPSettings.from_config(config)
    late = time.time() - float(start_at)
    time.sleep(max(0.0, -late))
    cpu_start = cpu_seconds()
    t0 = time.time()
    with store.Session.begin() as session:
        plan = engine.prepare_send(session, composed, skip_test=True, worker=True)
    sent: list[int] = []
    with profiled(lambda: sent[0] if sent else 0):
        report = run_worker(
            store, plan.issue_id, config, template, lambda: SMTPTransport(settings), SECRET.encode()
        )
        sent.append(report.counts["sent"])
    end = time.time()
    store.dispose()
    counts = report.counts
    return {
        "state_sent": float(report.state == "sent"),
        "sent": counts["sent"],
        "start": t0,
        "end": end,
        "late": max(0.0, late),
        "cpu_start": cpu_start,
    }


def child_bare(port: str, connections: str, count: str, message_path: str) -> dict[str, float]:
    data = Path(message_path).read_bytes()
    n, total = int(connections), int(count)
    shares = [total // n + (1 if i < total % n else 0) for i in range(n)]
    folder = os.environ.get("BENCH_PROFILE")
    profile = bool(folder) and not os.environ.get("BENCH_PY_SPY")
    profilers: list[Any] = []

    def loop(share: int) -> None:
        if profile:  # cProfile sees one thread: one profiler per connection, merged
            import cProfile

            profiler = cProfile.Profile(time.thread_time)
            profilers.append(profiler)
            profiler.enable()
        with smtplib.SMTP("127.0.0.1", int(port)) as smtp:
            for i in range(share):
                smtp.sendmail("digest@policy-lab.test", [f"reader{i}@corp.test"], data)
        if profile:
            profiler.disable()

    threads = [threading.Thread(target=loop, args=(s,)) for s in shares]
    cpu_start = cpu_seconds()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if profilers:
        import pstats

        name = Path(folder or ".") / os.environ["BENCH_PROFILE_NAME"]
        for i, p in enumerate(profilers):
            p.dump_stats(f"{name}.{i}.prof")
        stats = pstats.Stats(*(f"{name}.{i}.prof" for i in range(len(profilers))))
        stats.dump_stats(f"{name}.prof")
    return {"sent": total, "seconds": seconds, "cpu_start": cpu_start}


# ----------------------------------------------------------------------------- clients


def smtp_source_run(
    port: int, sessions: int, count: int, message_bytes: int, folder: Path
) -> dict[str, float]:
    """Postfix's smtp-source: ``sessions`` connections kept open (-d) sending ``count``
    messages of about ``message_bytes`` in all; CPU from wait4, peak memory (VmHWM)
    polled from /proc while it runs (a C program allocates up front)."""
    tool = postfix_tool("smtp-source")
    assert tool is not None
    # -l is the body; smtp-source adds From, To, Date, Message-Id (about 150 bytes)
    length = max(1, message_bytes - 150)
    argv = [tool, "-d", "-c", "-s", str(sessions), "-m", str(count), "-l", str(length)]
    argv += ["-f", "digest@policy-lab.test", "-t", "reader@corp.test", "-M", "policy-lab.test"]
    argv += [f"127.0.0.1:{port}"]
    out_path = folder / f"smtp-source-{port}.out"
    peak = [0.0]
    with out_path.open("wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out)
        try:

            def poll() -> None:
                peak[0] = max(peak[0], vm_hwm_mb(proc.pid))

            _, cpu = reap(proc, poll=poll)
        finally:
            stop_process(proc)
        seconds = time.perf_counter() - t0
    counters = re.findall(rb"(\d+)", out_path.read_bytes()[-100:])
    sent = int(counters[-1]) if counters else 0
    return {"sent": sent, "seconds": seconds, "cpu": cpu, "peak_mb": peak[0]}


def profile_env(args: argparse.Namespace, name: str) -> dict[str, str] | None:
    if not args.profile:
        return None
    env = {"BENCH_PROFILE": str(Path(args.profile).resolve()), "BENCH_PROFILE_NAME": name}
    if args.py_spy:
        env["BENCH_PY_SPY"] = args.py_spy
    return env


def measure(
    args: argparse.Namespace,
    sink_kind: str,
    connections: int,
    database_url: str,
    subscribers: int | None = None,
    dkim: bool = False,
    source: bool = True,
    label: str = "",
) -> dict[str, dict[str, float]]:
    """One run of each client against its own sink: bare, digest-mailer (and signed),
    smtp-source. Returns {client: figures}."""
    from digest_mailer.signing import generate_key

    n = subscribers or args.subscribers
    runs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        issue = folder / "vol-2.4.txt"
        write_issue(issue)
        url = setup_store(database_url, folder, n)
        config = write_config(folder, 25, connections, url)
        message = prebuilt_message(folder, config, issue)
        with Sink(sink_kind, folder, args.pipelining) as sink:
            bare = run_child(
                "bare",
                str(sink.port),
                str(connections),
                str(n),
                str(message),
                profile=profile_env(args, f"bare-{label}"),
            )
            check_count(sink.stop(), n, "bare smtplib")
        runs["bare"] = {**bare, "sink_cpu": sink.cpu}
        with Sink(sink_kind, folder, args.pipelining) as sink:
            config = write_config(folder, sink.port, connections, url)
            ours = run_child(
                "send", str(config), str(issue), profile=profile_env(args, f"send-{label}")
            )
            check_count(sink.stop(), n, "digest-mailer")
        assert ours["sent"] == n, ours
        runs["ours"] = {**ours, "sink_cpu": sink.cpu}
        if dkim:
            key = generate_key("bench", "policy-lab.test", folder)
            signed_url = setup_store(database_url, folder, n, dkim=True)
            with Sink(sink_kind, folder, args.pipelining) as sink:
                dkim_config = write_config(
                    folder, sink.port, connections, signed_url, key.private_path
                )
                signed = run_child("send", str(dkim_config), str(issue))
                check_count(sink.stop(), n, "digest-mailer, DKIM-signed")
            assert signed["sent"] == n, signed
            runs["signed"] = {**signed, "sink_cpu": sink.cpu}
        if source and postfix_tool("smtp-source"):
            with Sink(sink_kind, folder, args.pipelining) as sink:
                size = int(ours["message_bytes"])
                src = smtp_source_run(sink.port, connections, n, size, folder)
                check_count(sink.stop(), n, "smtp-source")
            runs["source"] = {**src, "sink_cpu": sink.cpu}
    return runs


def measure_workers(
    args: argparse.Namespace, sink_kind: str, workers: int, connections: int, database_url: str
) -> dict[str, dict[str, float]]:
    """N worker processes with ``connections`` each, against the bare loop and smtp-source
    with N x that."""
    n = args.subscribers
    total = workers * connections
    runs: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        issue = folder / "vol-2.4.txt"
        write_issue(issue)
        url = setup_store(database_url, folder, n)
        message = prebuilt_message(folder, write_config(folder, 25, connections, url), issue)
        label = f"{sink_kind}-w{workers}"
        with Sink(sink_kind, folder, args.pipelining) as sink:
            bare = run_child(
                "bare",
                str(sink.port),
                str(total),
                str(n),
                str(message),
                profile=profile_env(args, f"bare-{label}"),
            )
            check_count(sink.stop(), n, "bare smtplib")
        runs["bare"] = {**bare, "sink_cpu": sink.cpu}
        with Sink(sink_kind, folder, args.pipelining) as sink:
            config = write_config(folder, sink.port, connections, url)
            start_at = str(time.time() + 3.0 + 0.5 * workers)  # after every child's imports
            procs = [
                spawn_child(
                    "worker",
                    str(config),
                    str(issue),
                    start_at,
                    profile=profile_env(args, f"worker{i}-{label}"),
                )
                for i in range(workers)
            ]
            try:
                results, hung = collect_workers(procs, url)
            finally:
                for p in procs:
                    stop_process(p)
            check_count(sink.stop(), n, f"{workers} worker(s)")
        state = send_state(url)
        assert state["sent"] == n, (state, results)
        late = max((r["late"] for r in results), default=0.0)
        if late > 0:
            print(f"  (a worker started {late:.1f} s late: its imports took longer)")
        start = min((r["start"] for r in results), default=float(start_at))
        end = max((r["end"] for r in results), default=start)
        if hung:  # the send ends with its last delivery; a hung worker's CPU is all its own
            end = state["last_sent_at"]
            print(
                f"  ({len(hung)} of {workers} worker(s) still running {STALL_SECONDS:g} s "
                "after the last delivery: stopped; timed to the last delivery)"
            )
        runs["ours"] = {
            "sent": n,
            "seconds": end - start,
            "cpu": sum(r["cpu"] for r in results) + sum(h["cpu_total"] for h in hung),
            "peak_mb": max([r["peak_mb"] for r in results] + [h["peak_mb"] for h in hung]),
            "sink_cpu": sink.cpu,
            "hung": len(hung),
        }
        if postfix_tool("smtp-source"):
            size = message.stat().st_size
            with Sink(sink_kind, folder, args.pipelining) as sink:
                src = smtp_source_run(sink.port, total, n, size, folder)
                check_count(sink.stop(), n, "smtp-source")
            runs["source"] = {**src, "sink_cpu": sink.cpu}
    return runs


def check_count(received: int, expected: int, who: str) -> None:
    if received != expected:
        raise RuntimeError(f"the sink accepted {received} messages from {who}, not {expected}")


def signing_cost(rounds: int = 7, batch: int = 200) -> tuple[float, float]:
    """Median milliseconds per message to render, and to render and sign, in this process."""
    from digest_mailer import composer
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate
    from digest_mailer.signing import DkimSigner, generate_key, load_private_key

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        issue = folder / "vol-2.4.txt"
        write_issue(issue)
        config = load_config(write_config(folder, 25, 1, ""))
        composed = composer.compose_file(issue, config)
        key = generate_key("bench", "policy-lab.test", folder)
        signer = DkimSigner("bench", "policy-lab.test", load_private_key(key.private_path))
        plain = MessageTemplate(composed, config)
        signing = MessageTemplate(composed, config, signer=signer)
        times: dict[str, list[float]] = {"plain": [], "signed": []}
        for _ in range(rounds):
            for name, template in (("plain", plain), ("signed", signing)):
                t0 = time.perf_counter()
                for i in range(batch):
                    template.render(f"r{i}@corp.test", "R", f"<{i}@p>", f"https://d.test/u/{i}")
                times[name].append((time.perf_counter() - t0) / batch * 1000)
    return statistics.median(times["plain"]), statistics.median(times["signed"])


# ----------------------------------------------------------------------------- reporting

NAMES = {
    "bare": "bare smtplib",
    "ours": "digest-mailer",
    "signed": "  DKIM-signed",
    "source": "smtp-source (C)",
}
HEADER = (
    f"{'client':<17}{'rate/s':>8}{'wall s':>8}{'CPU µs':>8}{'peak MB':>8}"
    f"{'rate×':>7}{'CPU×':>6}{'sink µs':>9}"
)


class Targets:
    def __init__(self) -> None:
        self.results: list[tuple[bool, str]] = []

    def check(self, ok: bool, text: str) -> str:
        self.results.append((ok, text))
        return f"  {'PASS' if ok else 'MISS'} {text}"


def summarise(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Medians per client over the runs: rate, wall, CPU µs/msg, peak, ratios to bare."""
    out: dict[str, dict[str, float]] = {}
    for client in runs[0]:
        per = []
        for run in runs:
            r, bare = run[client], run["bare"]
            sent = r["sent"]
            rate, bare_rate = sent / r["seconds"], bare["sent"] / bare["seconds"]
            cpu, bare_cpu = r["cpu"] / sent * 1e6, bare["cpu"] / bare["sent"] * 1e6
            per.append(
                {
                    "rate": rate,
                    "wall": r["seconds"],
                    "cpu_us": cpu,
                    "peak_mb": r["peak_mb"],
                    "rate_ratio": rate / bare_rate,
                    "cpu_ratio": cpu / bare_cpu,
                    "sink_us": r["sink_cpu"] / sent * 1e6,
                    **{k: r[k] for k in ("queue_seconds", "message_bytes") if k in r},
                }
            )
        out[client] = {k: statistics.median(p[k] for p in per) for k in per[0]}
    return out


def print_table(title: str, med: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(HEADER)
    for client, m in med.items():
        print(
            f"{NAMES[client]:<17}{m['rate']:>8,.0f}{m['wall']:>8.2f}{m['cpu_us']:>8.0f}"
            f"{m['peak_mb']:>8.0f}{m['rate_ratio']:>7.2f}{m['cpu_ratio']:>6.2f}"
            f"{m['sink_us']:>9.0f}",
            flush=True,
        )


def print_profiles(folder: Path, messages: int) -> None:
    """The top functions of each profiled child (cProfile or py-spy) and its SQL."""
    for prof in sorted(folder.glob("*.prof")):
        if re.search(r"\.\d+\.prof$", prof.name):
            continue  # one thread of the bare loop; the merged file follows
        print_cprofile(prof, messages)
    for raw in sorted(folder.glob("*.pyspy.txt")):
        print_pyspy(raw, messages)
    for sql in sorted(folder.glob("*.sql.json")):
        print_sql(sql)


def short(func: tuple[str, int, str]) -> str:
    file, line, name = func
    if file == "~":
        return name.strip("<>")[:60]
    parts = Path(file).parts
    where = "/".join(parts[-2:]) if "site-packages" in file or "python3" in file else parts[-1]
    return f"{name} ({where}:{line})"[:60]


def print_cprofile(path: Path, messages: int, top: int = 25) -> None:
    import pstats

    stats = pstats.Stats(str(path))
    rows = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for _cc, _nc, tt, _ct, _callers in rows.values())
    name = path.name.removesuffix(".prof")
    print(
        f"\n{name}: cProfile (thread CPU time), {total:.2f} s, {total / messages * 1e6:.0f} µs/msg"
    )
    for key, title in ((2, "tottime"), (3, "cumtime")):
        print(f"  top {top} by {title} (µs per message; calls per message)")
        ranked = sorted(rows.items(), key=lambda kv: kv[1][key], reverse=True)[:top]
        for func, (_cc, nc, tt, ct, _callers) in ranked:
            value = tt if key == 2 else ct
            print(f"  {value / messages * 1e6:7.1f} {nc / messages:6.2f}  {short(func)}")


def print_pyspy(path: Path, messages: int, top: int = 25, rate: int = 250) -> None:
    own: Counter[str] = Counter()
    cumulative: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        # a function's frames at all its lines count as one
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";") if f.strip()]
        # the send's samples: the main thread's within it (not the child's start-up), and
        # every other thread's (connections of the bare loop, the engine's threads)
        main_thread = frames[0].startswith("<module> (send_throughput.py")
        if main_thread and not any(m in stack for m in ("run_send", "run_worker")):
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            cumulative[frame] += n
    name = path.name.removesuffix(".pyspy.txt")
    print(
        f"\n{name}: py-spy --gil, {total} samples at {rate}/s in the send "
        f"({total / rate / messages * 1e6:.0f} µs/msg holding the GIL)"
    )
    for counter, title in ((own, "own"), (cumulative, "cumulative")):
        print(f"  top {top} by {title} time (µs per message)")
        for frame, n in counter.most_common(top):
            print(f"  {n / rate / messages * 1e6:7.1f}  {frame[:68]}")


def print_sql(path: Path, top: int = 12) -> None:
    data = json.loads(path.read_text())
    n = data["messages"] or 1
    name = path.name.removesuffix(".sql.json")
    statements = sorted(data["statements"], key=lambda s: s["calls"], reverse=True)
    calls = sum(s["calls"] for s in statements)
    trips = data["round_trips"]
    print(
        f"\n{name}: SQL per message: {calls / n:.2f} statement calls, "
        f"{data['commits'] / n:.2f} commits"
    )
    if trips is not None:
        print(
            f"  libpq trace: {trips / n:.2f} round trips (client sends, then waits), "
            f"{data['syncs'] / n:.2f} ReadyForQuery"
        )
        print("  trips/msg  µs/trip  µs/msg  round trips by their first statement")
        ranked = sorted(data["trips"].items(), key=lambda kv: kv[1][1], reverse=True)
        for sql, (count, us) in ranked[:top]:
            text = re.sub(r"%\(\w+\)s|\$\d+", "?", re.sub(_CAST, "", sql))
            print(f"  {count / n:9.3f} {us / count:8.0f} {us / n:7.0f}  {text[:43]}")
    print("  calls/msg rows/msg  statement")
    for s in statements[:top]:
        sql = re.sub(r"%\(\w+\)s|\$\d+", "?", re.sub(_CAST, "", s["sql"]))
        print(f"  {s['calls'] / n:9.3f} {s['rows'] / n:8.3f}  {sql[:58]}")


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--sink",
        nargs="+",
        choices=SINKS,
        default=["headers", "smtp-sink"],
        help="the sinks to run against, each in turn (default: headers smtp-sink)",
    )
    parser.add_argument(
        "--repeat",
        "--rounds",
        dest="repeat",
        type=int,
        default=3,
        metavar="N",
        help="runs per measurement; medians are quoted (default 3)",
    )
    parser.add_argument(
        "--memory-check",
        type=int,
        default=0,
        metavar="N",
        help="also send to N subscribers and compare peak memory",
    )
    parser.add_argument("--database-url", default="")
    parser.add_argument(
        "--pipelining",
        action="store_true",
        help="the sink also offers PIPELINING (as Postfix and Exim do)",
    )
    parser.add_argument(
        "--dkim", action="store_true", help="also send with DKIM signing and time the signing"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[],
        metavar="N",
        help="PostgreSQL: N `send --worker` processes, each with --connections' first value",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="profile the clients (cProfile, or py-spy with --py-spy) and count their SQL; "
        "one run, no targets",
    )
    parser.add_argument(
        "--py-spy",
        nargs="?",
        const="py-spy",
        default="",
        metavar="PATH",
        help="with --profile: sample with py-spy (from PATH or the venv) instead of cProfile",
    )
    parser.add_argument("--serve-sink", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sink:
        kind, port, pipelining, log = args.serve_sink
        run_sink(kind, int(port), pipelining == "1", log)
        return
    if args.child:
        global COUNTER
        profiling = os.environ.get("BENCH_PROFILE") and not os.environ.get("BENCH_PY_SPY")
        if profiling and args.child[0] != "bare":
            prefix = Path(os.environ["BENCH_PROFILE"]) / os.environ["BENCH_PROFILE_NAME"]
            COUNTER = SqlCounter(prefix)
        kind, *rest = args.child
        child = {"send": child_send, "bare": child_bare, "worker": child_worker}[kind]
        result = child(*rest)
        result["peak_mb"] = peak_mb()
        result["cpu_end"] = cpu_seconds()
        print(json.dumps(result))
        return

    sinks = list(dict.fromkeys(args.sink))
    have_sink, have_source = postfix_tool("smtp-sink"), postfix_tool("smtp-source")
    if not (have_sink and have_source):
        missing = [n for n, p in (("smtp-sink", have_sink), ("smtp-source", have_source)) if not p]
        print(
            f"Postfix's {' and '.join(missing)} not found (Debian: apt-get install postfix): "
            "skipped"
        )
        if not have_sink and "smtp-sink" in sinks:
            sinks.remove("smtp-sink")
        if not sinks:
            return
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        args.repeat = 1
        if args.py_spy:
            venv_spy = Path(sys.executable).parent / "py-spy"
            found = shutil.which(args.py_spy) or (venv_spy.exists() and str(venv_spy))
            if not found:
                parser.error(f"py-spy not found ({args.py_spy}): pip install py-spy")
            args.py_spy = found
    if args.workers and not args.database_url.startswith("postgresql"):
        parser.error("--workers needs --database-url postgresql+psycopg://…")
    if args.database_url.startswith("postgresql"):
        why = postgres_reachable(args.database_url)
        if why:
            print(f"PostgreSQL not reachable ({why}): skipped")
            return
        with scratch_database(args.database_url, f"bench_send_{os.getpid()}") as url:
            run_all(args, sinks, url)
    else:
        run_all(args, sinks, args.database_url)


def run_all(args: argparse.Namespace, sinks: list[str], url: str) -> None:
    engine, _ = send_engine()
    targets = Targets()
    where = "PostgreSQL" if url else "SQLite file"
    load = os.getloadavg()[0]
    print(f"send throughput: {args.subscribers:,} messages; {where}; engine {engine.__name__}")
    print(
        f"{args.repeat} run(s) each, medians; sink offers PIPELINING: "
        f"{'yes' if args.pipelining else 'no'}; load {load:.1f} on {os.cpu_count()} CPUs"
    )
    print("CPU µs: user+sys per message of the client process(es) in the timed window")
    print("(wait4, less start-up); sink µs: the sink's; ×: ratio to bare smtplib")
    if args.profile:
        print(f"profiling into {args.profile}: timings are inflated, no targets checked")
    if args.dkim and not args.workers:
        plain_ms, signed_ms = signing_cost()
        print(
            f"per message: render {plain_ms:.3f} ms; render + DKIM sign {signed_ms:.3f} ms"
            f"\n  {'PASS' if signed_ms - plain_ms <= 1.5 else 'MISS'} signing costs "
            f"{signed_ms - plain_ms:.3f} ms (target <= 1.5 ms)",
            flush=True,
        )
    if args.workers:
        run_workers(args, sinks, url, targets)
    else:
        run_single(args, sinks, url, targets)
    if args.memory_check and not args.workers:
        small = measure(args, sinks[0], args.connections[-1], url, source=False, label="mem")
        large = measure(
            args,
            sinks[0],
            args.connections[-1],
            url,
            args.memory_check,
            source=False,
            label="mem-large",
        )
        big, little = large["ours"]["peak_mb"], small["ours"]["peak_mb"]
        print(
            f"\nmemory: {args.subscribers:,} subscribers peak {little:.0f} MB; "
            f"{args.memory_check:,} peak {big:.0f} MB "
            f"(rate {args.memory_check / large['ours']['seconds']:,.0f}/s)"
        )
        print(targets.check(big < 200, f"peak {big:.0f} MB < 200 MB"))
        print(targets.check(big <= little * 1.25 + 5, "peak memory not growing with the list"))
    if args.profile:
        print_profiles(Path(args.profile), args.subscribers)
        return
    if targets.results:
        misses = sum(not ok for ok, _ in targets.results)
        print(f"\ntargets: {len(targets.results) - misses} PASS, {misses} MISS")
        for ok, text in targets.results:
            print(f"  {'PASS' if ok else 'MISS'} {text}")
    print(f"load average now {os.getloadavg()[0]:.1f}")


def run_single(args: argparse.Namespace, sinks: list[str], url: str, targets: Targets) -> None:
    for sink in sinks:
        for connections in args.connections:
            label = f"{sink}-c{connections}"
            runs = [
                measure(args, sink, connections, url, dkim=args.dkim, label=label)
                for _ in range(args.repeat)
            ]
            med = summarise(runs)
            ours = med["ours"]
            print_table(
                f"sink {sink}, {connections} connection(s), "
                f"{ours['message_bytes'] / 1024:.1f} KB messages",
                med,
            )
            print(
                f"  digest-mailer queueing {ours['queue_seconds']:.2f} s (not in its rate)"
                + (
                    f"; DKIM-signed {med['signed']['rate'] / ours['rate']:.2f} of unsigned"
                    if "signed" in med
                    else ""
                )
            )
            if args.profile:
                continue
            if sink != "count":
                where = f"{sink}, {connections} conn"
                print(
                    targets.check(
                        ours["rate_ratio"] >= 0.8,
                        f"rate {ours['rate_ratio']:.2f} x bare >= 0.8 ({where})",
                    )
                )
                print(
                    targets.check(
                        ours["cpu_ratio"] <= 1.2,
                        f"CPU {ours['cpu_ratio']:.2f} x bare <= 1.2 ({where})",
                    )
                )
                print(
                    targets.check(
                        ours["peak_mb"] < 200, f"peak {ours['peak_mb']:.0f} MB < 200 MB ({where})"
                    )
                )


def run_workers(args: argparse.Namespace, sinks: list[str], url: str, targets: Targets) -> None:
    per = args.connections[0]
    print(
        f"workers: {', '.join(map(str, args.workers))} ({per} connection(s) each); "
        "bare and smtp-source: as many in all"
    )
    for sink in sinks:
        rates: dict[int, float] = {}
        for n in args.workers:
            runs = [measure_workers(args, sink, n, per, url) for _ in range(args.repeat)]
            hung_runs = sum(1 for run in runs if run["ours"].pop("hung", 0))
            med = summarise(runs)
            ours = med["ours"]
            rates[n] = ours["rate"]
            print_table(f"sink {sink}, {n} worker(s) x {per} = {n * per} connections", med)
            if args.profile or sink == "count":
                continue
            where = f"{sink}, {n} worker(s)"
            print(
                targets.check(
                    not hung_runs,
                    f"every worker finishes (hung in {hung_runs} of {len(runs)} runs; {where})",
                )
            )
            if n in (1, 2):
                print(
                    targets.check(
                        ours["rate_ratio"] >= 0.8,
                        f"rate {ours['rate_ratio']:.2f} x bare >= 0.8 ({where})",
                    )
                )
            print(
                targets.check(
                    ours["cpu_ratio"] <= 1.2, f"CPU {ours['cpu_ratio']:.2f} x bare <= 1.2 ({where})"
                )
            )
            print(
                targets.check(
                    ours["peak_mb"] < 200,
                    f"peak per worker {ours['peak_mb']:.0f} MB < 200 MB ({where})",
                )
            )
        if 2 in rates and 4 in rates and not args.profile and sink != "count":
            print(
                targets.check(
                    rates[4] >= rates[2],
                    f"4 workers {rates[4]:,.0f}/s no slower than 2 ({rates[2]:,.0f}/s; {sink})",
                )
            )


if __name__ == "__main__":
    main()
