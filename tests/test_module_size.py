"""No module of the package is over 600 lines: a module a newcomer can read on its own
does one thing. A longer one is split by what its parts do (see digest_mailer/web/ or
digest_mailer/inbox/classify.py and its parts), not into arbitrary halves."""

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "digest_mailer"
MAX_LINES = 600


def test_no_module_is_over_600_lines() -> None:
    sizes = {
        path.relative_to(PACKAGE.parent).as_posix(): len(path.read_text("utf-8").splitlines())
        for path in sorted(PACKAGE.rglob("*.py"))
        if "__pycache__" not in path.parts
    }
    assert len(sizes) > 40, sorted(sizes)
    over = [f"{name} ({lines} lines)" for name, lines in sizes.items() if lines > MAX_LINES]
    assert over == [], f"over {MAX_LINES} lines, to split by what the parts do: {over}"
