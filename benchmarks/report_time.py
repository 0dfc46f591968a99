"""Reports on a store a think-tank might have after two years: the time and CPU of
`report ISSUE`, `report --since` and `report --since --html`, each a fresh child process
(as staff run them), next to `digest-mailer --help` as the start-up baseline.

The store (SQLite, or PostgreSQL with --database-url) gets --subscribers readers, a
status history of about three events each spread over --weeks weeks, --issues issues
sent to every reader (one delivery row per reader and issue), 1 % of deliveries bounced
and 0.3 % unsubscribed through their link. Prints the median wall time and the median
CPU time of the child (user + sys, from os.wait4) over --runs runs, and the rows read.

    python benchmarks/report_time.py [--subscribers 20000] [--issues 52] [--runs 5]
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, text

from digest_mailer import db
from digest_mailer.models import Bounce, Delivery, Event, Issue, Subscriber


def populate(url: str, subscribers: int, issues: int, weeks: int) -> tuple[int, int, str]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    rng = random.Random(7)
    now = datetime.now(UTC)
    start = now - timedelta(weeks=weeks)
    people, events = [], []
    for n in range(1, subscribers + 1):
        joined = start + timedelta(seconds=rng.randrange(int((now - start).total_seconds())))
        left = rng.random() < 0.1
        people.append(
            {
                "id": n,
                "email": f"reader{n}@corp{n % 97}.test",
                "email_key": f"reader{n}@corp{n % 97}.test",
                "name": f"Reader {n}",
                "status": "unsubscribed" if left else "active",
                "source": "import",
                "created_at": joined,
                "updated_at": joined,
                "link_salt": "",
            }
        )
        events.append(
            {"subscriber_id": n, "kind": "status", "old_status": None, "new_status": "pending",
             "actor": "web", "detail": "", "created_at": joined}
        )  # fmt: skip
        confirmed = joined + timedelta(hours=2)
        events.append(
            {"subscriber_id": n, "kind": "status", "old_status": "pending",
             "new_status": "active", "actor": "web", "detail": "", "created_at": confirmed}
        )  # fmt: skip
        if left:
            events.append(
                {"subscriber_id": n, "kind": "status", "old_status": "active",
                 "new_status": "unsubscribed", "actor": "web", "detail": "",
                 "created_at": confirmed + (now - confirmed) * rng.random()}
            )  # fmt: skip
    issue_rows = []
    for i in range(issues):
        when = start + (now - start) * (i + 0.5) / issues
        issue_rows.append(
            {"id": f"{i // 26 + 1}.{i % 26 + 1}", "subject": f"Digest {i}", "fingerprint": "f" * 64,
             "state": "sent", "started_at": when, "finished_at": when + timedelta(minutes=4),
             "created_at": when, "updated_at": when}
        )  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Subscriber), people)
        conn.execute(insert(Event), events)
        conn.execute(insert(Issue), issue_rows)
        delivery_id = 0
        for issue in issue_rows:
            rows, bounces = [], []
            for n in range(1, subscribers + 1):
                delivery_id += 1
                rows.append(
                    {"id": delivery_id, "issue_id": issue["id"], "subscriber_id": n,
                     "address": people[n - 1]["email"], "state": "sent", "attempts": 1,
                     "smtp_code": 250, "queued_at": issue["started_at"],
                     "updated_at": issue["started_at"]}
                )  # fmt: skip
                if rng.random() < 0.01:
                    bounces.append(
                        {"delivery_id": delivery_id, "subscriber_id": n,
                         "address": people[n - 1]["email"], "kind": "hard", "status": "5.1.1",
                         "diagnostic": "550 5.1.1 user unknown", "matched_by": "verp",
                         "report_key": f"r{delivery_id}",
                         "report_message_id": f"<r{delivery_id}@mx.test>",
                         "occurred_at": issue["finished_at"],
                         "created_at": issue["finished_at"]}
                    )  # fmt: skip
            conn.execute(insert(Delivery), rows)
            if bounces:
                conn.execute(insert(Bounce), bounces)
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    engine.dispose()
    return len(events), delivery_id, issue_rows[-1]["id"]


def child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv)} failed: {process.stderr.read().decode()[-500:]}")  # type: ignore[union-attr]
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument("--issues", type=int, default=52)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database-url", default="")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="report-bench."))
    url = args.database_url or f"sqlite:///{folder / 'digest.db'}"
    if args.database_url:
        schema = f"bench_report_{os.getpid()}"
        engine = db.make_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE SCHEMA {schema}"))
        engine.dispose()
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    t0 = time.perf_counter()
    events, deliveries, last = populate(url, args.subscribers, args.issues, args.weeks)
    print(
        f"store: {args.subscribers:,} subscribers, {events:,} events, {args.issues} issues, "
        f"{deliveries:,} deliveries ({time.perf_counter() - t0:.1f} s to build)"
    )
    config = folder / "config.toml"
    config.write_text(
        f'[database]\nurl = "{url}"\n\n[newsletter]\ntitle = "Bench Digest"\n'
        'from_address = "d@bench.test"\nrequest_address = "d@bench.test"\n', "utf-8"
    )  # fmt: skip
    exe = str(Path(sys.executable).parent / "digest-mailer")
    since = (datetime.now(UTC) - timedelta(weeks=args.weeks)).strftime("%Y-%m-%d")
    commands = {
        "--help (start-up)": [exe, "--help"],
        f"report {last}": [exe, "--config", str(config), "report", last],
        "report --since": [exe, "--config", str(config), "report", "--since", since],
        "report --since --html": [
            exe, "--config", str(config), "report", "--since", since, "--html",
            str(folder / "report.html"),
        ],
    }  # fmt: skip
    env = {**os.environ, "PYTHONPYCACHEPREFIX": str(folder / "pycache")}
    for argv in commands.values():
        child(argv, env)  # warm-up: bytecode, the database's cache
    print(f"{'command':<24}{'wall (median)':>15}{'CPU (median)':>15}")
    for name, argv in commands.items():
        runs = [child(argv, env) for _ in range(args.runs)]
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{name:<24}{wall:>13.2f} s{cpu:>13.2f} s")
    size = (folder / "report.html").stat().st_size
    print(f"report.html: {size:,} bytes; CPU per event for the weekly sizes is in the")
    print("difference between `report --since` and `report ISSUE`.")


if __name__ == "__main__":
    main()
