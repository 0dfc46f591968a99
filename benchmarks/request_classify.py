"""Classifying a 10,000-message request mailbox with `requests process --mbox F --dry-run`.

The mbox is built from the test corpus (tests/data/requests), each copy with its own
Message-ID, so every message is decided (none is "already processed"). Three timings,
medians of several rounds in one run:

- baseline: reading the mbox and parsing every message with Python's email package
  (compat32, as the classifier does: the floor any classifier in Python pays);
- library: ``process_inbox(dry_run=True)`` on a fresh SQLite store (parse, cut quotes,
  decide, then record and act on each message in a savepoint of its own, all rolled
  back);
- command: the whole `digest-mailer requests process --dry-run --json` in a subprocess.

Target: the command under 10 s for 10,000 messages. That held while one transaction
took 200 messages with batched inserts; since each message is acted on in a savepoint of
its own (one failing message never stops the others) and unsubscribes look for proof,
it is about 4 ms a message (40 s): see the closing note of the inbound-mail work.

    python benchmarks/request_classify.py [--messages 10000] [--rounds 3]
"""

import argparse
import email
import email.policy
import mailbox
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from digest_mailer import db
from digest_mailer.config import load_config
from digest_mailer.inbox.actions import process_inbox
from digest_mailer.inbox.sources import MboxSource

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "data" / "requests"


def build_mbox(path: Path, count: int) -> None:
    samples = [p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))]
    box = mailbox.mbox(str(path))
    box.lock()
    for i in range(count):
        raw = samples[i % len(samples)]
        raw = re.sub(rb"(?im)^Message-ID:.*\r?\n", b"", raw, count=1)
        box.add(f"Message-ID: <bench.{i}@corpus.test>\r\n".encode() + raw)
    box.unlock()
    box.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        mbox = folder / "requests.mbox"
        build_mbox(mbox, args.messages)
        config_file = folder / "config.toml"
        config_file.write_text(
            f'[database]\nurl = "sqlite:///{folder}/digest.db"\n'
            '[newsletter]\nrequest_address = "weekly@transit-lab.test"\n'
            "[subscribers]\nallow_test_domains = true\n"
        )
        config = load_config(config_file)
        engine = db.make_engine(config.database_url)
        db.upgrade(engine)
        engine.dispose()
        store = db.open_store(config.database_url)
        size = mbox.stat().st_size
        print(f"{args.messages:,} messages, mbox {size / 1e6:.1f} MB, {args.rounds} rounds")
        timings: dict[str, list[float]] = {"baseline": [], "library": [], "command": []}
        command = [sys.executable, "-m", "digest_mailer", "--config", str(config_file)]
        command += ["requests", "process", "--mbox", str(mbox), "--dry-run", "--json"]
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            box = mailbox.mbox(str(mbox), create=False)
            for key in box.iterkeys():
                email.message_from_bytes(box.get_bytes(key), policy=email.policy.compat32)
            box.close()
            t1 = time.perf_counter()
            run, _ = process_inbox(store, config, MboxSource(mbox), dry_run=True)
            results = run.results
            t2 = time.perf_counter()
            assert len(results) == args.messages
            run = subprocess.run(command, capture_output=True, env=os.environ, check=True)
            t3 = time.perf_counter()
            assert run.stdout.count(b'"label"') == args.messages
            timings["baseline"].append(t1 - t0)
            timings["library"].append(t2 - t1)
            timings["command"].append(t3 - t2)
        store.dispose()
    med = {k: statistics.median(v) for k, v in timings.items()}
    per = 1e6 / args.messages
    base, lib = med["baseline"], med["library"]
    print(f"baseline (read + parse only): {base:6.2f} s  {base * per:6.0f} µs/msg")
    print(f"library (dry run):            {lib:6.2f} s  {lib * per:6.0f} µs/msg", end="")
    print(f"  ({lib / base:.1f}x the baseline)")
    print(f"command (dry run, --json):    {med['command']:6.2f} s  (target < 10 s)")


if __name__ == "__main__":
    main()
