"""Start-up stays short: `--help` loads no library module, `status` no composer or mail
reader. Structural, not timed (benchmarks/cli_startup.py times it): each command runs
in a fresh interpreter with ``-X importtime``, whose tree of imports names, for every
module loaded, the chain of imports that brought it in."""

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
from conftest import Cli, write_config

# what the entry point in pyproject's [project.scripts] runs
ENTRY = "import sys; from digest_mailer.cli import main; sys.argv[0] = 'digest-mailer'; main()"

# libraries no command's help needs; a command loads them when it runs
HEAVY = (
    "sqlalchemy",
    "sqlalchemy.orm",
    "alembic",
    "premailer",
    "lxml",
    "jinja2",
    "markdown_it",
    "email_validator",
    "cryptography",
    "dkim",
    "uvicorn",
    "starlette",
    "psycopg",
    "rich",  # help is Click's plain text; commands print through rich
    "matplotlib",  # the HTML report's charts alone
)
# of the package, help needs the command modules, the errors and the kinds alone
HELP_MODULES = ("digest_mailer", "digest_mailer.errors", "digest_mailer.kinds")
# `status` reads the store: neither the composer nor signing nor the web app is for it
NOT_FOR_STATUS = (
    "premailer",
    "jinja2",
    "markdown_it",
    "cryptography",
    "dkim",
    "uvicorn",
    "starlette",
    "digest_mailer.composer",
    "digest_mailer.signing",
    "digest_mailer.web",
    "alembic",  # the revision check reads alembic_version with one query
)
# nor the mail readers
MAIL_READERS = ("lxml", "digest_mailer.bounces", "digest_mailer.inbox")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DIGEST_MAILER_CONFIG"}
    env.pop("PYTHONPROFILEIMPORTTIME", None)
    return env


def imports_of(*args: str, cwd: Path) -> dict[str, list[str]]:
    """Run the CLI with ``args`` in a new interpreter: each module it imported, with the
    chain of imports that loaded it (outermost first). A module imported through
    ``importlib.import_module`` (a package's lazy attribute) is not in the tree: the
    chains of what it imports start at the outermost level."""
    run = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", ENTRY, *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("import time:")]
    other = "\n".join(ln for ln in run.stderr.splitlines() if not ln.startswith("import time:"))
    assert run.returncode == 0, (args, run.stdout, other)
    # "import time: self | cumulative | <two spaces per level>name", each module after
    # the modules it imported: a line's parent is the next line one level out
    tree = []
    for line in lines[1:]:  # the first is the column headings
        field = line.split("|")[2]
        name = field.strip()
        tree.append(((len(field) - len(field.lstrip(" ")) - 1) // 2, name))
    chains: dict[str, list[str]] = {}
    for i, (depth, name) in enumerate(tree):
        chain, want = [name], depth - 1
        for outer_depth, outer in tree[i + 1 :]:
            if want < 0:
                break
            if outer_depth == want:
                chain.insert(0, outer)
                want -= 1
        chains[name] = chain
    return chains


def loaded(chains: dict[str, list[str]], prefixes: Iterable[str]) -> dict[str, str]:
    """The modules of ``prefixes`` (packages and their submodules) that were loaded, each
    with the chain that loaded it: the message of a failure names what to make lazy."""
    found = {}
    for prefix in prefixes:
        names = [m for m in chains if m == prefix or m.startswith(prefix + ".")]
        if names:
            first = min(names, key=lambda m: len(chains[m]))  # the outermost import
            found[prefix] = " -> ".join(chains[first])
    return found


def explain(found: dict[str, str]) -> str:
    return "loaded, and by what:\n" + "\n".join(f"  {m}: {c}" for m, c in found.items())


def test_the_import_tree_is_read_right(tmp_path: Path) -> None:
    """The chain reader itself, on modules whose importers are known."""
    chains = imports_of("--version", cwd=tmp_path)
    assert chains["digest_mailer.cli"] == ["digest_mailer.cli"]  # the entry point's import
    assert chains["digest_mailer.cli.app"] == ["digest_mailer.cli", "digest_mailer.cli.app"]
    state = chains["digest_mailer.cli.state"]  # by app, or a command module app imports
    assert state[:2] == ["digest_mailer.cli", "digest_mailer.cli.app"], state
    assert state[-1] == "digest_mailer.cli.state", state


def test_importing_the_cli_loads_no_library() -> None:
    code = "import json, sys, digest_mailer.cli; print(json.dumps(sorted(sys.modules)))"
    run = subprocess.run(
        [sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True
    )
    modules = set(json.loads(run.stdout))
    assert not [m for m in HEAVY if m in modules], sorted(modules)
    ours = {m for m in modules if m.startswith("digest_mailer")}
    assert ours - {m for m in ours if m.startswith("digest_mailer.cli")} <= set(HELP_MODULES)


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["send", "--help"],
        ["subscribers", "list", "--help"],
        ["status", "--help"],
        ["report", "--help"],
    ],
    ids=" ".join,
)
def test_help_loads_no_library(args: list[str], tmp_path: Path) -> None:
    chains = imports_of(*args, cwd=tmp_path)
    heavy = loaded(chains, HEAVY)
    assert not heavy, explain(heavy)
    ours = [m for m in chains if m.startswith("digest_mailer")]
    library = loaded(
        chains, [m for m in ours if not m.startswith("digest_mailer.cli") and m not in HELP_MODULES]
    )
    assert not library, explain(library)


@pytest.fixture
def sqlite_config(tmp_path: Path) -> Path:
    config = write_config(tmp_path / "config.toml", f"sqlite:///{tmp_path / 'store' / 'd.db'}")
    Cli(config).ok("init")
    return config


def test_status_loads_no_composer(sqlite_config: Path, tmp_path: Path) -> None:
    chains = imports_of("--config", str(sqlite_config), "status", cwd=tmp_path)
    assert "digest_mailer.db" in chains  # the command ran and opened the store
    found = loaded(chains, NOT_FOR_STATUS)
    assert not found, explain(found)


def test_status_loads_no_mail_reader(sqlite_config: Path, tmp_path: Path) -> None:
    chains = imports_of("--config", str(sqlite_config), "status", cwd=tmp_path)
    assert "digest_mailer.db" in chains  # the command ran and opened the store
    found = loaded(chains, MAIL_READERS)
    assert not found, explain(found)
