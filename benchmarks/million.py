"""A million subscribers on PostgreSQL: inserted, queued, sent by 4 workers to smtp-sink.

The subscribers are inserted, an issue is queued for them, and it is sent with 4 workers
of 2 connections each to Postfix's smtp-sink.

The benchmark works in a database of its own (``--db-name``, created on the server of
--database-url and dropped at the end; the URL's own database is not touched). It
inserts the subscribers with COPY (then ANALYZE), composes the example issue (a small
message), queues it as the first ``send --worker`` does (``prepare_send``, which calls
``queue_recipients``: both are timed), then starts the workers, each a child process
running ``run_worker`` as ``digest-mailer send --worker`` would, all at one moment after
their imports. Prints the time to insert and to queue, the send's time and rate, each
worker's peak memory (VmHWM, read by the worker itself at the end; target < 200 MB) and
the CPU per message of the workers (user+sys from wait4, less their start-up).

    python benchmarks/million.py [--subscribers 1000000] [--workers 4] [--connections 2]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Skipped, with one line saying why, when Postfix's smtp-sink is not installed or the
server does not answer.
"""

import argparse
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import send_throughput as bench

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MEMORY_TARGET_MB = 200


def time_queue_recipients(engine: ModuleType) -> list[float]:
    """Time ``queue_recipients`` when ``prepare_send`` calls it: the function is wrapped
    wherever digest-mailer's modules refer to it (before and after the engine's move).
    Returns the list each call's seconds go to (empty if no module referred to it)."""
    original = engine.queue_recipients
    spent: list[float] = []

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - t0)

    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        if name.startswith("digest_mailer") and vars(module).get("queue_recipients") is original:
            module.queue_recipients = timed
    return spent


def sink_count(log: Path) -> int:
    """Messages smtp-sink has accepted so far (its -c counters, the last in its log)."""
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 200))
            tail = f.read()
    except OSError:
        return 0
    counters = bench.re.findall(rb"mesg=(\d+)", tail)
    return int(counters[-1]) if counters else 0


def progress(log: Path, total: int, every: float, done: threading.Event) -> Callable[[], None]:
    """A thread that prints the sink's count every ``every`` seconds until ``done``."""

    def run() -> None:
        last, last_t = sink_count(log), time.monotonic()
        while not done.wait(every):
            now, now_t = sink_count(log), time.monotonic()
            rate = (now - last) / (now_t - last_t)
            print(f"  … {now:,} of {total:,} accepted ({rate:,.0f}/s lately)", flush=True)
            last, last_t = now, now_t

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread.join


def per_worker_counts(url: str) -> list[tuple[str, int]]:
    import psycopg

    with psycopg.connect(bench.libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT worker_id, count(*) FROM deliveries WHERE state = 'sent' "
            "GROUP BY worker_id ORDER BY worker_id"
        ).fetchall()
    return [(str(w), int(n)) for w, n in rows]


def run(args: argparse.Namespace) -> None:
    from digest_mailer import composer, db
    from digest_mailer.config import load_config
    from digest_mailer.message import MessageTemplate

    engine, _ = bench.send_engine()
    n, workers, per = args.subscribers, args.workers, args.connections
    print(f"million: {n:,} subscribers; {workers} workers x {per} connections; smtp-sink")
    print(f"engine {engine.__name__}; load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"database {args.db_name} (created here, dropped at the end)")
    with (
        tempfile.TemporaryDirectory() as tmp,
        bench.scratch_database(args.database_url, args.db_name) as url,
    ):
        folder = Path(tmp)
        sa_engine = db.make_engine(url)
        db.upgrade(sa_engine)
        sa_engine.dispose()

        t0 = time.perf_counter()
        bench.copy_subscribers(url, n)
        insert_s = time.perf_counter() - t0
        print(f"insert: {insert_s:.1f} s ({n / insert_s:,.0f} rows/s; COPY, then ANALYZE)")

        issue = folder / "vol-2.4.txt"
        bench.write_issue(issue, pad=0)  # the example as it is: a small issue
        with bench.Sink("smtp-sink", folder, args.pipelining) as sink:
            config_path = bench.write_config(folder, sink.port, per, url)
            config = load_config(config_path)
            composed = composer.compose_file(issue, config)
            size = len(
                MessageTemplate(composed, config).render(
                    "reader1@corp.test", "Reader 1", "<m.1@policy-lab.test>", "https://d.test/u/x"
                )
            )
            store = db.open_store(url)
            spent = time_queue_recipients(engine)
            t0 = time.perf_counter()
            with store.Session.begin() as session:
                plan = engine.prepare_send(session, composed, skip_test=True, worker=True)
            queue_s = time.perf_counter() - t0
            store.dispose()
            inner = f" (queue_recipients {sum(spent):.1f} s)" if spent else ""
            print(f"queue: prepare_send {queue_s:.1f} s{inner}; {plan.queued:,} deliveries")
            print(f"message {size / 1024:.1f} KB")
            start_at = time.time() + 3.0 + 0.75 * workers  # after every worker's imports
            procs = [
                bench.spawn_child("worker", str(config_path), str(issue), str(start_at))
                for _ in range(workers)
            ]
            done = threading.Event()
            join = progress(sink.log, n, args.progress, done) if args.progress else None
            try:
                results, hung = bench.collect_workers(procs, url, args.stall)
            finally:
                done.set()
                for p in procs:
                    bench.stop_process(p)
                if join:
                    join()
            received = sink.stop()
        counts = per_worker_counts(url)
        state = bench.send_state(url)

    start = min((r["start"] for r in results), default=start_at)
    end = max((r["end"] for r in results), default=start)
    if hung:  # the send ends with its last delivery
        end = state["last_sent_at"]
    seconds = end - start
    sent = int(state["sent"])
    print(f"send: {seconds:.1f} s, {n / seconds:,.0f} messages/s")
    print(f"  sink accepted {received:,}; sent {sent:,}")
    late = max((r["late"] for r in results), default=0.0)
    if late > 0:
        print(f"  (a worker started {late:.1f} s late: its imports took longer)")
    cpu = sum(r["cpu"] for r in results) + sum(h["cpu_total"] for h in hung)
    with_start = (sum(r["cpu_total"] for r in results) + sum(h["cpu_total"] for h in hung)) / n
    print(f"CPU: {cpu / n * 1e6:.0f} µs per message, all workers (user+sys from wait4)")
    print(
        f"  less their start-up{' (not of hung ones)' if hung else ''}; "
        f"{with_start * 1e6:.0f} µs with it"
    )
    for i, r in enumerate(results):
        print(f"  worker {i + 1}: peak {r['peak_mb']:.0f} MB (VmHWM); CPU {r['cpu']:.1f} s")
    for h in hung:
        print(f"  hung worker: peak {h['peak_mb']:.0f} MB (VmHWM); CPU {h['cpu_total']:.1f} s")
    print(f"  sent per worker: {' / '.join(f'{c:,}' for _, c in counts)}")
    peak = max([r["peak_mb"] for r in results] + [h["peak_mb"] for h in hung])
    ok = peak < MEMORY_TARGET_MB
    print(f"  {'PASS' if ok else 'MISS'} peak per worker {peak:.0f} MB < {MEMORY_TARGET_MB} MB")
    if hung:
        print(
            f"  MISS {len(hung)} of {workers} workers still running {args.stall:g} s after "
            "every delivery was done: stopped"
        )
    if received != n or sent != n:
        print(f"  MISS every subscriber once: sink {received:,}, sent {sent:,}, of {n:,}")
    if n < 1_000_000:
        scale = 1_000_000 / n
        total = (insert_s + queue_s) * scale + 1_000_000 / (n / seconds)
        send_min = 1_000_000 / (n / seconds) / 60
        print(
            f"projected for 1,000,000 (linear): insert {insert_s * scale:.0f} s, "
            f"queue {queue_s * scale:.0f} s, send {send_min:.1f} min"
        )
        print(f"  {total / 60:.1f} min in all")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--connections", type=int, default=2, help="per worker (default 2)")
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument(
        "--db-name", default="bench_million", help="the database it creates and drops"
    )
    parser.add_argument(
        "--pipelining", action="store_true", help="smtp-sink also offers PIPELINING"
    )
    parser.add_argument(
        "--progress", type=float, default=30.0, metavar="S", help="print progress every S s"
    )
    parser.add_argument(
        "--stall",
        type=float,
        default=bench.STALL_SECONDS,
        metavar="S",
        help="stop workers still running S s after every delivery was done (default 120)",
    )
    args = parser.parse_args()
    if not bench.postfix_tool("smtp-sink"):
        print("Postfix's smtp-sink not found (Debian: apt-get install postfix): skipped")
        return
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url must be postgresql+psycopg://…")
    why = bench.postgres_reachable(args.database_url)
    if why:
        print(f"PostgreSQL not reachable ({why}): skipped")
        return
    run(args)


if __name__ == "__main__":
    main()
