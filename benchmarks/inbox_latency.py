"""Inbound mail in bounded time, and one-click unsubscribes while a mailbox is processed.

1. Reading one 80 KB single-line message (a request, and a plain-text bounce), parse and
   decide, median of 5, against reading the same bytes with Python's email package
   alone (the floor). Target: under 0.2 s.
2. One-click POSTs (`serve`, uvicorn, SQLite in WAL mode) from 4 clients while
   `requests process --mbox` reads and acts on 10,000 messages (no dry run; the
   confirmations go to a capture SMTP server). Prints the POSTs' median and p99 latency
   (target p99 < 0.5 s) and the processing's wall time and CPU per message, against
   the same POSTs with nothing else running.

    python benchmarks/inbox_latency.py [--messages 10000] [--posts 600]
"""

import argparse
import email
import email.policy
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from request_classify import build_mbox  # noqa: E402
from web_load import SECRET, free_port, hammer, wait_for  # noqa: E402

from digest_mailer import db  # noqa: E402
from digest_mailer import subscribers as subs  # noqa: E402
from digest_mailer.config import load_config  # noqa: E402
from digest_mailer.inbox.classify import OurAddresses, Policy, decide, parse  # noqa: E402
from digest_mailer.tokens import make_token  # noqa: E402


def one_line_messages() -> dict[str, bytes]:
    words = ("please remove me from the list thank you " * 2000)[:80_000]
    return {
        "request, 80 KB one line": (
            "From: reader@mail.test\r\nSubject: hello\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n\r\n" + words
        ).encode(),
        "request, 80 KB of 'a@'": (
            "From: reader@mail.test\r\nSubject: hello\r\n\r\n" + "a@" * 40_000
        ).encode(),
        "bounce, 80 KB one line": (
            "From: MAILER-DAEMON@mx.corp.test\r\nSubject: failure notice\r\n\r\n"
            "<x@corp.test>: 550 5.1.1 " + "b" * 80_000
        ).encode(),
    }


def time_one_line() -> None:
    policy = Policy(OurAddresses.of("digest@policy.test"))
    print("1. one message on a single 80 KB line (median of 5)")
    for name, raw in one_line_messages().items():
        floor, ours = [], []
        for _ in range(5):
            t0 = time.perf_counter()
            email.message_from_bytes(raw, policy=email.policy.compat32)
            floor.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            decide(parse(raw), policy)
            ours.append(time.perf_counter() - t0)
        print(
            f"   {name:<26} parse+decide {statistics.median(ours) * 1000:7.1f} ms   "
            f"email package alone {statistics.median(floor) * 1000:6.1f} ms"
        )


def p(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def one_click_during_processing(messages: int, posts: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="digest-inbox-latency-"))
    web_port, smtp_port = free_port(), free_port()
    config_file = folder / "config.toml"
    config_file.write_text(
        f'[database]\nurl = "sqlite:///{folder}/digest.db"\n'
        f'[newsletter]\npublic_url = "http://127.0.0.1:{web_port}"\n'
        'from_address = "weekly@transit-lab.test"\nrequest_address = "weekly@transit-lab.test"\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nsecurity = "none"\n'
        "[subscribers]\nallow_test_domains = true\n"
        "[inbox]\nconfirmations_per_hour_per_domain = 100000\nconfirmations_per_hour = 100000\n"
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
            session, [f"reader{i}@corp.test" for i in range(2 * posts)], allow_test_domains=True
        )
        ids = sorted(s.id for s in subs.list_subscribers(session))
    store.dispose()
    secret = SECRET.encode()
    mbox = folder / "requests.mbox"
    build_mbox(mbox, messages)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        capture = subprocess.Popen(
            [*cli, "capture-smtp", "--port", str(smtp_port), "--maildir", str(folder / "mail")],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        serve = subprocess.Popen(
            [*cli, "serve", "--port", str(web_port)], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs += [capture, serve]
        wait_for(smtp_port, capture)
        wait_for(web_port, serve)
        base = f"http://127.0.0.1:{web_port}"
        idle_tokens = [make_token(secret, "unsubscribe", i) for i in ids[:posts]]
        busy_tokens = [make_token(secret, "unsubscribe", i) for i in ids[posts:]]
        codes, idle, _ = hammer(base, idle_tokens, 4)
        print(f"2. one-click POSTs ({posts}, 4 clients) and `requests process` of {messages:,}")
        print(
            f"   alone:      answers {dict(codes)} median {statistics.median(idle) * 1000:6.1f} ms"
            f"  p99 {p(idle, 0.99) * 1000:6.1f} ms"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        process = subprocess.Popen(
            [*cli, "requests", "process", "--mbox", str(mbox), "--json"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        busy: list[float] = []
        answers: dict[int, int] = {}

        def load() -> None:
            time.sleep(1.0)  # the run is under way
            got, times, _ = hammer(base, busy_tokens, 4)
            busy.extend(times)
            answers.update(got)

        thread = threading.Thread(target=load)
        thread.start()
        _, stderr = process.communicate()
        wall = time.perf_counter() - t0
        thread.join()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if process.returncode != 0:
            raise SystemExit(f"requests process failed: {stderr.decode()[-500:]}")
        print(
            f"   during:     answers {answers} median {statistics.median(busy) * 1000:6.1f} ms"
            f"  p99 {p(busy, 0.99) * 1000:6.1f} ms  (target p99 < 500 ms)"
        )
        print(
            f"   processing: {wall:6.1f} s wall, {messages / wall:6.0f} messages/s, "
            f"{cpu / messages * 1e6:6.0f} µs CPU a message (startup included)"
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=600)
    args = parser.parse_args()
    time_one_line()
    one_click_during_processing(args.messages, args.posts)


if __name__ == "__main__":
    main()
