"""CLI start-up: `digest-mailer --help` and `digest-mailer status` next to a bare
`python -c "import typer"`, each in a fresh child process, on the same machine, in the
same run.

The status command reads a temporary config and a SQLite database made with
`digest-mailer init`. Bytecode is cached (in a temporary PYTHONPYCACHEPREFIX, filled by
the warm-up runs) whatever PYTHONDONTWRITEBYTECODE says: the numbers are those of every
run after a user's first. Runs are interleaved (one of each command per round) so that a
busy moment on a shared machine weighs on all of them alike. Prints the median wall time,
the median CPU time of the child (user + sys, from os.wait4) and the ratio of each to
the baseline's. Target: every command within 2x the baseline's wall time.

    python benchmarks/cli_startup.py [--runs 15] [--warmup 2]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 2.0


def digest_mailer_command() -> list[str]:
    """The installed console script next to this Python (else on PATH), as users run it."""
    script = Path(sys.executable).parent / "digest-mailer"
    if script.exists():
        return [str(script)]
    found = shutil.which("digest-mailer")
    if found is None:
        sys.exit("digest-mailer is not installed: run `make` (pip install -e .)")
    return [found]


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) for one run; the run must succeed."""
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    errors = child.stderr.read().decode(errors="replace") if child.stderr else ""
    if child.stderr:
        child.stderr.close()
    if child.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {child.returncode}:\n{errors}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="measured runs of each command")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured runs of each first")
    args = parser.parse_args()

    cli = digest_mailer_command()
    with tempfile.TemporaryDirectory(prefix="cli-startup-") as tmp:
        folder = Path(tmp)
        config = folder / "config.toml"
        config.write_text(
            f'[database]\nurl = "sqlite:///{folder / "store" / "digest.db"}"\n', encoding="utf-8"
        )
        ignored = ("DIGEST_MAILER_CONFIG", "PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME")
        env = {k: v for k, v in os.environ.items() if k not in ignored}
        env |= {"COLUMNS": "80", "PYTHONPYCACHEPREFIX": str(folder / "pycache")}
        subprocess.run([*cli, "--config", str(config), "init"], cwd=folder, env=env,
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        commands = {
            'python -c "import typer"': [sys.executable, "-c", "import typer"],
            "digest-mailer --help": [*cli, "--help"],
            "digest-mailer status": [*cli, "--config", str(config), "status"],
        }
        for _ in range(args.warmup):
            for argv in commands.values():
                run_once(argv, folder, env)
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                samples[name].append(run_once(argv, folder, env))

    walls = {n: statistics.median(w for w, _ in s) * 1000 for n, s in samples.items()}
    cpus = {n: statistics.median(c for _, c in s) * 1000 for n, s in samples.items()}
    base = next(iter(commands))
    python = sys.version.split()[0]
    print(f"medians of {args.runs} runs after {args.warmup} warm-up run(s); Python {python}")
    head = ("command", "wall ms", "cpu ms", "wall x", "cpu x", "target")
    print("{:<26} {:>8} {:>7} {:>7} {:>6} {:>7}  result".format(*head))
    for name in commands:
        wall_ratio, cpu_ratio = walls[name] / walls[base], cpus[name] / cpus[base]
        if name == base:
            target, result = "", "baseline"
        else:
            target, result = f"<={TARGET:g}x", "PASS" if wall_ratio <= TARGET else "MISS"
        print(
            f"{name:<26} {walls[name]:>8.1f} {cpus[name]:>7.1f} {wall_ratio:>6.2f}x "
            f"{cpu_ratio:>5.2f}x {target:>7}  {result}"
        )  # fmt: skip


if __name__ == "__main__":
    main()
