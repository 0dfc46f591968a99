"""Load check for `digest-mailer serve`: one-click unsubscribe POSTs from concurrent
clients against SQLite while a send to a capture server runs, and a body flood.

Everything runs as real processes on loopback: `capture-smtp`, `serve` (uvicorn), and
`send`. First a body flood: concurrent POSTs each claiming a 200 MB body (Content-Length,
then chunked) and sending it until the server closes; it prints the answers, what each
client got to send, and the server's peak memory (VmHWM, and VmRSS sampled every 10 ms,
from /proc; target below 150 MB). Then a baseline: one-click POSTs with no send running;
then the POSTs while the send runs. It prints for both: answers by status, latency
median and 95th percentile, requests/s; then whether every targeted subscriber is
unsubscribed, whether the send completed, and whether any process reported `database is
locked`. About a minute with the defaults.

    python benchmarks/web_load.py [--posts 1000] [--clients 20] [--subscribers 2500]
        [--flood 20] [--flood-mb 200]
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
import threading
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


def hammer(base: str, paths: list[str], clients: int) -> tuple[Counter[int], list[float], float]:
    def worker(chunk: list[str]) -> list[tuple[int, float]]:
        out = []
        with httpx.Client(timeout=60) as client:
            for path in chunk:
                t0 = time.perf_counter()
                reply = client.post(
                    f"{base}{path}",
                    content=b"List-Unsubscribe=One-Click",
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                )
                out.append((reply.status_code, time.perf_counter() - t0))
        return out

    chunks = [paths[i::clients] for i in range(clients)]
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(worker, chunks) for r in part]
    elapsed = time.perf_counter() - started
    return Counter(code for code, _ in results), [t for _, t in results], elapsed


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in kB, from /proc/PID/status."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def flood_one(port: int, path: str, megabytes: int, chunked: bool) -> tuple[str, int]:
    """One POST claiming a ``megabytes`` body, sent until the server closes; returns the
    status of the answer (or what went wrong) and how many bytes got sent."""
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {megabytes << 20}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    ).encode()
    piece = b"List-Unsubscribe=One-Click&" + b"x" * (65536 - 27)
    if chunked:
        piece = b"10000\r\n" + piece + b"\r\n"
    sent = 0
    deadline = time.monotonic() + 30
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(head)
            while sent < megabytes << 20 and time.monotonic() < deadline:
                sock.sendall(piece)
                sent += 65536
        except OSError:
            pass  # the server closed: its answer is read below
        try:
            answer = sock.recv(4096)
        except OSError as error:
            return type(error).__name__, sent
    parts = answer.split(b" ", 2)
    return (parts[1].decode() if len(parts) > 1 else "closed without an answer"), sent


def flood(port: int, pid: int, path: str, clients: int, megabytes: int) -> None:
    before = memory(pid)
    peak = before["VmRSS"]
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, memory(pid)["VmRSS"])
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    lines = []
    for chunked in (False, True):
        with ThreadPoolExecutor(clients) as pool:
            jobs = [pool.submit(flood_one, port, path, megabytes, chunked) for _ in range(clients)]
            results = [job.result() for job in jobs]
        answers = Counter(status for status, _ in results)
        most = max(sent for _, sent in results) / 2**20
        how = "chunked" if chunked else "Content-Length"
        lines.append(
            f"  {how:<15} answers {dict(answers)}; a client sent at most {most:.1f} MB "
            "before the server closed"
        )
    stop.set()
    sampler.join()
    after = memory(pid)
    print(
        f"body flood: {clients} concurrent POSTs each claiming {megabytes} MB, twice, "
        f"{time.perf_counter() - started:.1f} s"
    )
    print("\n".join(lines))
    print(
        f"  server memory: {before['VmRSS'] / 1024:.0f} MB before, peak "
        f"{max(peak, after['VmRSS']) / 1024:.0f} MB sampled, VmHWM {after['VmHWM'] / 1024:.0f} MB"
        " (target < 150 MB)"
    )


def report(name: str, codes: Counter[int], times: list[float], elapsed: float) -> None:
    times = sorted(times)
    p95 = times[int(len(times) * 0.95) - 1]
    print(
        f"{name:<22} answers {dict(codes)}  median {statistics.median(times) * 1000:6.1f} ms  "
        f"p95 {p95 * 1000:6.1f} ms  {len(times) / elapsed:6.0f} req/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--subscribers", type=int, default=2500)
    parser.add_argument("--flood", type=int, default=20, help="clients of the body flood")
    parser.add_argument("--flood-mb", type=int, default=200, help="body each claims")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="digest-web-load-"))
    try:
        run(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run(args: argparse.Namespace, folder: Path) -> None:
    web_port, smtp_port = free_port(), free_port()
    config_file = folder / "config.toml"
    config_file.write_text(
        f'[database]\nurl = "sqlite:///{folder}/digest.db"\n'
        f'[newsletter]\npublic_url = "http://127.0.0.1:{web_port}"\n'
        'title = "Transit Policy Weekly"\nfrom_address = "weekly@transit-lab.test"\n'
        'request_address = "weekly@transit-lab.test"\nlist_id = "weekly.transit-lab.test"\n'
        'postal_address = "Transit Lab, 9 Depot Road, Rivertown"\n'
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
    secret = SECRET.encode()
    with store.Session.begin() as session:
        subs.add_subscribers(
            session,
            [f"reader{i}@corp.test" for i in range(args.subscribers)],
            allow_test_domains=True,
        )
        ids = sorted(p.id for p in subs.list_subscribers(session))
        # each link is signed with its subscriber's link_salt, as the send signs it
        links = {
            p.id: f"/u/{make_token(secret, 'unsubscribe', p.id, p.link_salt)}"
            for p in subs.list_subscribers(session)
        }
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
        flood(
            web_port,
            serve.pid,
            links[ids[0]],
            args.flood,
            args.flood_mb,
        )
        print(
            f"{args.posts} one-click POSTs from {args.clients} clients, SQLite, "
            f"{args.subscribers} subscribers"
        )
        report(
            "baseline (no send)",
            *hammer(base, [links[i] for i in baseline_ids], args.clients),
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
        during = hammer(base, [links[i] for i in during_ids], args.clients)
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
        store.dispose()
        for p in procs:
            p.terminate()
        logs = b"".join(p.communicate(timeout=10)[1] or b"" for p in procs)
    locked = b"database is locked" in logs + errors
    print(f"send still running when the POSTs ended: {send_running}")
    last = (out.decode().strip() or errors.decode().strip() or "(no output)").splitlines()[-1]
    print(f"send exit code {send.returncode}: {last}")
    print(f"targeted subscribers by status: {dict(statuses)} (want all unsubscribed)")
    print(f"'database is locked' reported: {locked}")
    counts = {k: v for k, v in json.loads(status.stdout)[0]["counts"].items() if v}
    print(f"send log: {counts}")


if __name__ == "__main__":
    main()
