"""Load check for `digest-mailer serve`: one-click unsubscribe POSTs from concurrent
clients against SQLite while a send to a capture server runs.

Everything runs as real processes on loopback: `capture-smtp`, `serve` (uvicorn), and
`send`. First a baseline: the same number of one-click POSTs with no send running; then
the POSTs while the send runs. It prints for both: answers by status, latency median and
95th percentile, requests/s; then whether every targeted subscriber is unsubscribed,
whether the send completed, and whether any process reported `database is locked`.

    python benchmarks/web_load.py [--posts 2000] [--clients 20] [--subscribers 6000]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from digest_mailer import db
from digest_mailer import subscribers as subs
from digest_mailer.config import load_config
from digest_mailer.tokens import make_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "benchmark-secret-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a process exited early: {process.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def hammer(base: str, tokens: list[str], clients: int) -> tuple[Counter[int], list[float], float]:
    def worker(chunk: list[str]) -> list[tuple[int, float]]:
        out = []
        with httpx.Client(timeout=60) as client:
            for token in chunk:
                t0 = time.perf_counter()
                reply = client.post(
                    f"{base}/u/{token}",
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                out.append((reply.status_code, time.perf_counter() - t0))
        return out

    chunks = [tokens[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(worker, chunks) for r in part]
    elapsed = time.perf_counter() - started
    return Counter(code for code, _ in results), [t for _, t in results], elapsed


def report(name: str, codes: Counter[int], times: list[float], elapsed: float) -> None:
    times = sorted(times)
    p95 = times[int(len(times) * 0.95) - 1]
    print(
        f"{name:<22} answers {dict(codes)}  median {statistics.median(times) * 1000:6.1f} ms  "
        f"p95 {p95 * 1000:6.1f} ms  {len(times) / elapsed:6.0f} req/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=6000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="digest-web-load-"))
    web_port, smtp_port = free_port(), free_port()
    config_file = folder / "config.toml"
    config_file.write_text(
        f'[database]\nurl = "sqlite:///{folder}/digest.db"\n'
        f'[newsletter]\npublic_url = "http://127.0.0.1:{web_port}"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\nconnections = 2\n'
        "[subscribers]\nallow_test_domains = true\n"
    )
    env = {**os.environ, "DIGEST_MAILER_SECRET": SECRET}
    cli = [sys.executable, "-m", "digest_mailer", "--config", str(config_file)]
    config = load_config(config_file)
    engine = db.make_engine(config.database_url)
    db.upgrade(engine)
    engine.dispose()
    store = db.open_store(config.database_url)
    with store.Session.begin() as session:
        subs.add_subscribers(
            session,
            [f"reader{i}@corp.test" for i in range(args.subscribers)],
            allow_test_domains=True,
        )
        ids = sorted(p.id for p in subs.list_subscribers(session))
    secret = SECRET.encode()
    baseline_ids = ids[: args.posts]
    during_ids = ids[-args.posts :]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        capture = subprocess.Popen(
            [*cli, "capture-smtp", "--port", str(smtp_port), "--maildir", str(folder / "mail")],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(capture)
        serve = subprocess.Popen(
            [*cli, "serve", "--port", str(web_port)], env=env, stderr=subprocess.PIPE
        )
        procs.append(serve)
        wait_for(smtp_port, capture)
        wait_for(web_port, serve)
        base = f"http://127.0.0.1:{web_port}"
        print(
            f"{args.posts} one-click POSTs from {args.clients} clients, SQLite, "
            f"{args.subscribers} subscribers"
        )
        report(
            "baseline (no send)",
            *hammer(
                base, [make_token(secret, "unsubscribe", i) for i in baseline_ids], args.clients
            ),
        )
        issue = folder / "vol-2.4.txt"
        shutil.copy(ROOT / "examples" / "vol-2.4.txt", issue)
        send = subprocess.Popen(
            [*cli, "send", str(issue), "--yes", "--skip-test"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(1.0)  # let the send get going
        during = hammer(
            base, [make_token(secret, "unsubscribe", i) for i in during_ids], args.clients
        )
        send_running = send.poll() is None
        report("during a send", *during)
        out, errors = send.communicate(timeout=600)
        with store.Session() as session:
            statuses = Counter(
                subs.get_subscriber(session, f"reader{i - 1}@corp.test").status
                for i in during_ids + baseline_ids
            )
        status = subprocess.run([*cli, "status", "--json"], env=env, capture_output=True)
    finally:
        for p in procs:
            p.terminate()
        logs = b"".join(p.communicate(timeout=10)[1] or b"" for p in procs)
    locked = b"database is locked" in logs + errors
    print(f"send still running when the POSTs ended: {send_running}")
    print(f"send exit code {send.returncode}: {out.decode().strip().splitlines()[-1]}")
    print(f"targeted subscribers by status: {dict(statuses)} (want all unsubscribed)")
    print(f"'database is locked' reported: {locked}")
    counts = {k: v for k, v in json.loads(status.stdout)[0]["counts"].items() if v}
    print(f"send log: {counts}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
