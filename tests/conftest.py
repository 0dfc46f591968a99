"""Shared fixtures: a real database on each back end, a config file, the CLI runner.

Every test that takes ``database_url`` runs on SQLite (a file in tmp_path) and, when
``DIGEST_MAILER_TEST_DATABASE_URL`` is set, on that PostgreSQL database too, inside a
schema of its own that is dropped afterwards.
"""

import mailbox
import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from digest_mailer import db
from digest_mailer.cli import app
from digest_mailer.screenshots import CHROMIUM_ARGS as SCREENSHOT_CHROMIUM_ARGS

PG_URL = os.environ.get("DIGEST_MAILER_TEST_DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if PG_URL else [])


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store' / 'digest.db'}"
        return
    yield from _pg_schema()


@pytest.fixture
def pg_database_url():
    """PostgreSQL only (a schema of the test's own), for what SQLite cannot do."""
    if not PG_URL:
        pytest.skip("set DIGEST_MAILER_TEST_DATABASE_URL to a PostgreSQL database")
    yield from _pg_schema()


def _pg_schema():  # type: ignore[no-untyped-def]
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    url = make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


def write_config(path: Path, database_url: str, extra: str = "") -> Path:
    path.write_text(
        f'[database]\nurl = "{database_url}"\n\n[subscribers]\nallow_test_domains = true\n\n'
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_file(tmp_path: Path, database_url: str) -> Path:
    return write_config(tmp_path / "config.toml", database_url)


@pytest.fixture
def store(database_url: str):
    yield from _initialised_store(database_url)


@pytest.fixture
def pg_store(pg_database_url: str):
    yield from _initialised_store(pg_database_url)


def _initialised_store(url: str):  # type: ignore[no-untyped-def]
    engine = db.make_engine(url)
    db.upgrade(engine)
    engine.dispose()
    opened = db.open_store(url)
    yield opened
    opened.dispose()


class Cli:
    """Runs commands in-process through Typer's runner against one config file."""

    def __init__(self, config: Path):
        self.config = config
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):  # noqa: A002
        return self.runner.invoke(app, ["--config", str(self.config), *args], input=input)

    def ok(self, *args: str, input: str | None = None):  # noqa: A002
        result = self(*args, input=input)
        assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
        return result


@pytest.fixture
def cli(config_file: Path) -> Cli:
    runner = Cli(config_file)
    runner.ok("init")
    return runner


DATA = Path(__file__).parent / "data"
REQUESTS = DATA / "requests"


def write_mbox(path: Path, names: list[str]) -> Path:
    """An mbox holding the named messages of the request corpus."""
    box = mailbox.mbox(str(path))
    for name in names:
        box.add((REQUESTS / name).read_bytes())
    box.close()
    return path


ARTIFACTS = Path(__file__).parent / "artifacts"

NEWSLETTER = """
[newsletter]
title = "Transit Policy Weekly"
from_name = "Transit Policy Weekly"
from_address = "weekly@transit-lab.test"
request_address = "weekly@transit-lab.test"
list_id = "weekly.transit-lab.test"
public_url = "https://digest.transit-lab.test"
postal_address = "Transit Lab, 9 Depot Road, Rivertown"
"""


@pytest.fixture
def newsletter_config(tmp_path: Path):
    from digest_mailer.config import load_config

    path = tmp_path / "newsletter.toml"
    path.write_text(NEWSLETTER + "\n[subscribers]\nallow_test_domains = true\n", "utf-8")
    return load_config(path)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = SCREENSHOT_CHROMIUM_ARGS  # the same flags compose --screenshots uses


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (no browser download)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


SECRET = "test-secret-0123456789abcdef0123456789"


@pytest.fixture
def smtp_server():
    from smtp_server import SMTPServer

    server = SMTPServer().start()
    yield server
    server.stop()


def smtp_section(port: int, connections: int = 2, extra: str = "") -> str:
    return (
        f'\n[smtp]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
        f"connections = {connections}\ntimeout = 5\nretry_base_seconds = 0.02\n{extra}"
    )


@pytest.fixture
def send_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DIGEST_MAILER_SECRET", SECRET)
    return SECRET


@pytest.fixture
def dovecot():  # type: ignore[no-untyped-def]
    """A real IMAP server (Dovecot) on a loopback port, with a CA of the test's own."""
    import shutil
    import tempfile

    from imap_server import DOVECOT, Dovecot

    if not Path(DOVECOT).exists():
        pytest.skip("Dovecot is not installed (.ci/run installs dovecot-imapd)")
    folder = Path(tempfile.mkdtemp(prefix="digest-imap-"))
    server = Dovecot(folder).start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)
