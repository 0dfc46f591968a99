"""Send throughput: digest-mailer's sender against a bare smtplib loop, same sink, same
number of connections, same run.

A minimal SMTP sink (asyncio; accepts and counts) runs in a process of its own, since
aiosmtpd's line-by-line DATA parsing would hide the sender's own cost. Each measurement
runs in a child process so its peak memory is its own: VmHWM from /proc, which starts
afresh at exec (ru_maxrss does not: it keeps the parent's size at fork, and the parent has
just inserted the subscribers, so it would grow with the list size by itself).

    python benchmarks/send_throughput.py [--subscribers 20000] [--connections 1 4]
        [--memory-check 100000] [--database-url URL] [--dkim]
    python benchmarks/send_throughput.py --database-url postgresql+psycopg://… \
        --workers 1 2 4 --connections 2 --subscribers 100000

Targets: sender/bare ratio >= 0.8, peak memory < 200 MB, not growing with the list size.
With --dkim the same send runs again with DKIM signing on, and the signing cost per
message is measured on its own (target: at most 1.5 ms).
"""

import argparse
import asyncio
import json
import os
import resource
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-0123456789abcdef"


# ----------------------------------------------------------------------------- the sink


def run_sink(port: int, pipelining: bool) -> None:
    count = 0
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
                await reader.readuntil(b"\r\n.\r\n")
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
        print(count, flush=True)

    asyncio.run(main())


class Sink:
    def __init__(self, pipelining: bool = False) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--sink", str(self.port), "1" if pipelining else "0"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "ready"

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return int(out.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- fixtures


def write_issue(path: Path) -> None:
    """A digest of realistic shape, padded to a message of about 35 KB."""
    base = (ROOT / "examples" / "vol-2.4.txt").read_text("utf-8")
    head, rest = base.split("## Details:", 1)
    details, footer = rest.split("\n---\n", 1)
    more = "\n".join(details.strip().splitlines()) + "\n"
    path.write_text(head + "## Details:\n" + more * 5 + "\n---\n" + footer, "utf-8")


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


def setup_store(config_path: Path, subscribers: int) -> None:
    from sqlalchemy import text

    from digest_mailer import db
    from digest_mailer.config import load_config
    from digest_mailer.db import insert_many
    from digest_mailer.models import Subscriber, utcnow

    config = load_config(config_path)
    engine = db.make_engine(config.database_url)
    with engine.begin() as conn:  # a fresh schema each time on a shared server
        if engine.dialect.name != "sqlite":
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
    db.upgrade(engine)
    engine.dispose()
    store = db.open_store(config.database_url)
    now = utcnow()
    with store.Session.begin() as session:
        rows = [
            {
                "email": f"reader{i}@corp.test",
                "email_key": f"reader{i}@corp.test",
                "name": f"Reader {i}",
                "status": "active",
                "source": "import",
                "created_at": now,
                "updated_at": now,
            }
            for i in range(subscribers)
        ]
        for start in range(0, len(rows), 5000):
            insert_many(session, Subscriber.__table__, rows[start : start + 5000])
    store.dispose()


# ----------------------------------------------------------------------------- children


def child_send(config_path: str, issue_path: str) -> dict[str, float]:
    from digest_mailer import composer, db, sender
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate
    from digest_mailer.signing import DkimSigner
    from digest_mailer.transport import SMTPSettings, SMTPTransport

    config = load_config(config_path)
    store = db.open_store(config.database_url)
    composed = composer.compose_file(Path(issue_path), config)
    t0 = time.perf_counter()
    with store.Session.begin() as session:
        plan = sender.prepare_send(session, composed, skip_test=True)
    t1 = time.perf_counter()
    settings = SMTPSettings.from_config(config)
    template = MessageTemplate(composed, config, signer=DkimSigner.from_config(config))
    report = sender.run_send(
        store, plan.issue_id, config, template, lambda: SMTPTransport(settings), SECRET.encode()
    )
    t2 = time.perf_counter()
    store.dispose()
    size = len(template.render("reader1@corp.test", "Reader 1", "<x@y>", "https://d.test/u/x"))
    return {
        "sent": report.counts["sent"],
        "seconds": t2 - t1,
        "queue_seconds": t1 - t0,
        "message_bytes": size,
    }


def child_worker(config_path: str, issue_path: str, start_at: str) -> dict[str, float]:
    """One `send --worker` process; all workers start their send at ``start_at``."""
    from digest_mailer import composer, db, sender
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate
    from digest_mailer.transport import SMTPSettings, SMTPTransport
    from digest_mailer.workers import run_worker

    config = load_config(config_path)
    store = db.open_store(config.database_url)
    composed = composer.compose_file(Path(issue_path), config)
    template = MessageTemplate(composed, config)
    settings = SMTPSettings.from_config(config)
    time.sleep(max(0.0, float(start_at) - time.time()))
    t0 = time.time()
    with store.Session.begin() as session:
        plan = sender.prepare_send(session, composed, skip_test=True, worker=True)
    report = run_worker(
        store, plan.issue_id, config, template, lambda: SMTPTransport(settings), SECRET.encode()
    )
    store.dispose()
    counts = report.counts
    return {"state_sent": float(report.state == "sent"), "sent": counts["sent"], "start": t0,
            "end": time.time()}  # fmt: skip


def measure_workers(
    subscribers: int, workers: int, connections: int, database_url: str
) -> dict[str, float]:
    """N worker processes with ``connections`` each, against the bare loop with N x that."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        issue = folder / "vol-2.4.txt"
        write_issue(issue)
        sink = Sink(False)
        config = write_config(folder, sink.port, connections, database_url)
        setup_store(config, subscribers)
        message = prebuilt_message(folder, config, issue)
        total = workers * connections
        bare = run_child("bare", str(sink.port), str(total), str(subscribers), str(message))
        start_at = str(time.time() + 3.0)
        env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", "worker", str(config), str(issue), start_at],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(workers)
        ]
        results = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        received = sink.stop()
    assert received == 2 * subscribers, received
    sent = sum(r["sent"] for r in results) / workers  # each reports the shared counts
    assert sent == subscribers, results
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {
        "bare_rate": bare["sent"] / bare["seconds"],
        "rate": subscribers / seconds,
        "peak_mb": max(r["peak_mb"] for r in results),
    }


def child_bare(port: str, connections: str, count: str, message_path: str) -> dict[str, float]:
    data = Path(message_path).read_bytes()
    n, total = int(connections), int(count)
    shares = [total // n + (1 if i < total % n else 0) for i in range(n)]

    def loop(share: int) -> None:
        with smtplib.SMTP("127.0.0.1", int(port)) as smtp:
            for i in range(share):
                smtp.sendmail("digest@policy-lab.test", [f"reader{i}@corp.test"], data)

    threads = [threading.Thread(target=loop, args=(s,)) for s in shares]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"sent": total, "seconds": time.perf_counter() - t0}


def peak_mb() -> float:
    """This process's peak resident memory since exec (VmHWM), in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*args: str) -> dict[str, float]:
    env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


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


def measure(
    subscribers: int,
    connections: int,
    database_url: str,
    pipelining: bool = False,
    dkim: bool = False,
) -> dict[str, float]:
    from digest_mailer.signing import generate_key

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        issue = folder / "vol-2.4.txt"
        write_issue(issue)
        sink = Sink(pipelining)
        config = write_config(folder, sink.port, connections, database_url)
        setup_store(config, subscribers)
        message = prebuilt_message(folder, config, issue)
        bare = run_child("bare", str(sink.port), str(connections), str(subscribers), str(message))
        ours = run_child("send", str(config), str(issue))
        signed: dict[str, float] = {}
        if dkim:
            key = generate_key("bench", "policy-lab.test", folder)
            dkim_config = write_config(
                folder, sink.port, connections, database_url, key.private_path
            )
            setup_store(dkim_config, subscribers)
            signed = run_child("send", str(dkim_config), str(issue))
            assert signed["sent"] == subscribers, signed
        received = sink.stop()
    assert ours["sent"] == subscribers, ours
    assert received == (3 if dkim else 2) * subscribers, received
    return {
        "bare_rate": bare["sent"] / bare["seconds"],
        "rate": ours["sent"] / ours["seconds"],
        "signed_rate": signed["sent"] / signed["seconds"] if signed else 0.0,
        "peak_mb": ours["peak_mb"],
        "bare_peak_mb": bare["peak_mb"],
        "queue_seconds": ours["queue_seconds"],
        "message_bytes": ours["message_bytes"],
    }


def signing_cost(rounds: int = 7, batch: int = 200) -> tuple[float, float]:
    """Median milliseconds per message to render, and to render and sign, in this process."""
    import statistics

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=1)
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
    parser.add_argument("--sink", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(args.sink[0], bool(args.sink[1]))
        return
    if args.child:
        kind, *rest = args.child
        child = {"send": child_send, "bare": child_bare, "worker": child_worker}[kind]
        result = child(*rest)
        result["peak_mb"] = peak_mb()
        print(json.dumps(result))
        return
    import statistics

    if args.workers:
        if not args.database_url.startswith("postgresql"):
            parser.error("--workers needs --database-url postgresql+psycopg://…")
        per = args.connections[0]
        print(f"subscribers: {args.subscribers:,}; PostgreSQL; {per} connection(s) per worker")
        for n in args.workers:
            runs = [
                measure_workers(args.subscribers, n, per, args.database_url)
                for _ in range(args.rounds)
            ]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"workers {n} ({n * per} connections): bare smtplib {med['bare_rate']:,.0f}/s; "
                f"digest-mailer {med['rate']:,.0f}/s; ratio {med['rate'] / med['bare_rate']:.2f}; "
                f"peak per worker {med['peak_mb']:.0f} MB",
                flush=True,
            )
        return

    print(
        f"subscribers: {args.subscribers:,}; database: {args.database_url or 'SQLite file'}; "
        f"sink offers PIPELINING: {'yes' if args.pipelining else 'no'}"
    )
    if args.dkim:
        plain_ms, signed_ms = signing_cost()
        print(
            f"per message: render {plain_ms:.3f} ms; render + DKIM sign {signed_ms:.3f} ms; "
            f"signing costs {signed_ms - plain_ms:.3f} ms (target <= 1.5 ms)",
            flush=True,
        )
    for connections in args.connections:
        runs = [
            measure(args.subscribers, connections, args.database_url, args.pipelining, args.dkim)
            for _ in range(args.rounds)
        ]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(
            f"connections {connections}: message {med['message_bytes'] / 1024:.1f} KB; "
            f"bare smtplib {med['bare_rate']:,.0f}/s; digest-mailer {med['rate']:,.0f}/s; "
            f"ratio {med['rate'] / med['bare_rate']:.2f} (target >= 0.8); "
            f"peak {med['peak_mb']:.0f} MB (bare {med['bare_peak_mb']:.0f} MB); "
            f"queueing {med['queue_seconds']:.2f} s"
            + (
                f"; DKIM-signed {med['signed_rate']:,.0f}/s "
                f"({med['signed_rate'] / med['rate']:.2f} of unsigned)"
                if args.dkim
                else ""
            ),
            flush=True,
        )
    if args.memory_check:
        small = measure(args.subscribers, args.connections[-1], args.database_url, args.pipelining)
        large = measure(args.memory_check, args.connections[-1], args.database_url, args.pipelining)
        print(
            f"memory: {args.subscribers:,} subscribers peak {small['peak_mb']:.0f} MB; "
            f"{args.memory_check:,} subscribers peak {large['peak_mb']:.0f} MB "
            f"(rate {large['rate']:,.0f}/s)"
        )


if __name__ == "__main__":
    main()
