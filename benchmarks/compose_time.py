"""Compose time for a typical issue (the five-headline digest in examples/), with the
share taken by each stage, medians of several runs in one process. Target: < 0.5 s.

    python benchmarks/compose_time.py [--runs 20] [ISSUE_FILE]
"""

import argparse
import statistics
import time
from pathlib import Path

from digest_mailer import composer, lint, message
from digest_mailer.config import Config
from digest_mailer.source import read_issue

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("issue", nargs="?", default=str(ROOT / "examples" / "vol-2.4.txt"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    config = Config()
    path = Path(args.issue)
    composer.compose_file(path, config)  # warm-up: imports, template compilation caches
    stages: dict[str, list[float]] = {k: [] for k in ("parse", "render", "inline", "whole")}
    for _ in range(args.runs):
        t0 = time.perf_counter()
        source = read_issue(path)
        t1 = time.perf_counter()
        env = composer.template_environment(config)
        context, _ = composer.build_context(source, config)
        page = composer.render_template(env, "issue.html.j2", context)
        t2 = time.perf_counter()
        composer.inline_css(page)
        t3 = time.perf_counter()
        composed = composer.compose_file(path, config)
        lint.lint(composed)
        message.preview_message(composed, config)
        t4 = time.perf_counter()
        stages["parse"].append(t1 - t0)
        stages["render"].append(t2 - t1)
        stages["inline"].append(t3 - t2)
        stages["whole"].append(t4 - t3)
    med = {k: statistics.median(v) for k, v in stages.items()}
    print(f"issue: {path.name}, runs: {args.runs}, HTML {composed.html_bytes:,} bytes")
    print(f"parse source:        {med['parse'] * 1000:7.1f} ms (median)")
    print(f"markdown+templates:  {med['render'] * 1000:7.1f} ms")
    print(f"premailer inlining:  {med['inline'] * 1000:7.1f} ms")
    print(f"compose+lint+preview:{med['whole'] * 1000:7.1f} ms  (target < 500 ms)")


if __name__ == "__main__":
    main()
