"""Import throughput: a generated 100,000-row CSV imported into a fresh SQLite store,
next to the rate of email-validator alone on the same addresses, in the same run.

Each measurement runs in a child process of its own so that its peak memory (ru_maxrss)
is its own. Prints medians of several rounds. Target: import >= 0.6 x validation rate,
peak memory < 200 MB.

    python benchmarks/import_throughput.py [--rows 100000] [--rounds 3] [--database-url URL]
"""

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST = ["Ana", "Bo", "Cyrus", "Dana", "Eitan", "Fatima", "Gil", "Hana", "Ivan", "Jo", "Zoë"]
LAST = ["Lima", "Chen", "Okafor", "Kowalski", "Roth", "Haddad", "Santos", "Sato", "Petrov"]
DOMAINS = ["policy-lab.test", "ministry.test", "university.test", "press.test", "ngo.test"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(42)
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("Email Address,First Name,Last Name\n")
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            f.write(f"{first.lower()}.{last.lower()}.{i}@{rng.choice(DOMAINS)},{first},{last}\n")


def child_validate(csv_path: str) -> dict[str, float]:
    import csv

    from email_validator import validate_email

    with open(csv_path, encoding="utf-8") as f:
        addresses = [row[0] for row in list(csv.reader(f))[1:]]
    start = time.perf_counter()
    for address in addresses:
        validate_email(address, check_deliverability=False, test_environment=True)
    return {"seconds": time.perf_counter() - start, "rows": len(addresses)}


def child_import(csv_path: str, database_url: str) -> dict[str, float]:
    from digest_mailer import db, subscribers

    engine = db.make_engine(database_url)
    db.upgrade(engine)
    engine.dispose()
    store = db.open_store(database_url)
    start = time.perf_counter()
    with store.Session.begin() as session:
        report = subscribers.import_csv(session, Path(csv_path), allow_test_domains=True)
    seconds = time.perf_counter() - start
    store.dispose()
    return {"seconds": seconds, "rows": report.added}


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default="", help="default: a fresh SQLite file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = child_validate(*rest) if kind == "validate" else child_import(*rest)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "subscribers.csv"
        generate(csv_path, args.rows)
        validate_rates, import_rates, peaks = [], [], []
        for round_no in range(args.rounds):
            v = run_child("validate", str(csv_path))
            url = args.database_url or f"sqlite:///{tmp}/round{round_no}.db"
            if args.database_url:
                _reset(url)
            i = run_child("import", str(csv_path), url)
            assert i["rows"] == args.rows, i
            validate_rates.append(v["rows"] / v["seconds"])
            import_rates.append(i["rows"] / i["seconds"])
            peaks.append(i["peak_mb"])
            print(
                f"round {round_no + 1}: validation {validate_rates[-1]:,.0f}/s, "
                f"import {import_rates[-1]:,.0f}/s, import peak {peaks[-1]:.0f} MB",
                flush=True,
            )
    v, i = statistics.median(validate_rates), statistics.median(import_rates)
    print(f"rows: {args.rows:,}  rounds: {args.rounds}")
    print(f"email-validator alone: {v:,.0f} addresses/s (median)")
    print(f"import:                {i:,.0f} rows/s (median)")
    print(f"ratio:                 {i / v:.2f} (target >= 0.6)")
    print(f"import peak memory:    {statistics.median(peaks):.0f} MB (target < 200 MB)")


def _reset(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as conn:
        for table in ("events", "list_members", "lists", "subscribers", "alembic_version"):
            conn.execute(text(f"DROP TABLE IF EXISTS {table} CASCADE"))
        conn.execute(text("DROP FUNCTION IF EXISTS events_append_only() CASCADE"))
    engine.dispose()


if __name__ == "__main__":
    main()
