"""Engine, sessions and schema migrations.

One ``sessionmaker`` per store; commands own the transaction (``with Session.begin()``)
and library functions take the session first and never commit.
"""

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, bindparam, create_engine, event, insert, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql.base import Executable

from digest_mailer.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

SQLITE_BUSY_TIMEOUT_MS = 30_000


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    # Take over transaction control from pysqlite so that BEGIN IMMEDIATE can be issued:
    # a writer then waits for the lock up front instead of failing on lock upgrade.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    """``BEGIN IMMEDIATE``, waiting for the write lock by polling every few milliseconds.

    SQLite's own busy handler sleeps ever longer (up to 100 ms a time) while it waits, so
    a short request (a one-click unsubscribe) waiting beside a long run that takes the
    lock again and again (a mailbox run, a send) keeps missing the moments it is free
    and waited over a second. Polling every 1-4 ms finds those moments: the wait is
    bounded by one of the run's transactions."""
    cursor = conn.connection.dbapi_connection.cursor()
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.001
    try:
        cursor.execute("PRAGMA busy_timeout=0")
        while True:
            try:
                cursor.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() >= deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.004)
    finally:
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


# The newest migration, which every command checks the database against without loading
# Alembic (a tenth of a second at every start); tests/test_db.py holds it to Alembic's head.
SCHEMA_REVISION = "0011"


def _alembic_config(engine: Engine) -> "AlembicConfig":
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(files("digest_mailer") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    """The newest migration, as Alembic reads it from the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (Alembic's ``alembic_version`` table), None for a
    database never initialised."""
    try:
        conn = engine.connect()
    except OperationalError as exc:
        raise StoreError(f"cannot open the database {_safe(engine)}: {_first_line(exc)}") from None
    with conn:
        try:
            versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
            return next(iter(versions.all()), None)
        except DBAPIError as exc:
            if "alembic_version" in str(exc.orig):  # no such table: not initialised
                return None
            raise StoreError(
                f"cannot read the database {_safe(engine)}: {_first_line(exc)}"
            ) from None


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Create or upgrade the schema to the newest migration; returns (before, after).
    A SQLite file's missing folder is created (``init`` says so first)."""
    create_sqlite_folder(engine.url.render_as_string(hide_password=False))
    from alembic import command

    before = current_revision(engine)
    command.upgrade(_alembic_config(engine), "head")
    return before, current_revision(engine)


@dataclass
class Store:
    """An opened database: the engine and the one sessionmaker built on it."""

    engine: Engine
    Session: sessionmaker[Session]

    def dispose(self) -> None:
        self.engine.dispose()


def open_store(url: str, *, check: bool = True) -> Store:
    """Open the database at ``url``; with ``check`` refuse one not at the newest migration."""
    parsed = make_url(url)
    if check and parsed.get_backend_name() == "sqlite" and parsed.database:
        if not Path(parsed.database).exists():  # do not leave an empty file behind
            raise StoreError(
                f"the database {parsed.database} is not initialised: run `digest-mailer init`"
            )
    engine = make_engine(url)
    if check:
        current, head = current_revision(engine), SCHEMA_REVISION
        if current is None:
            engine.dispose()
            raise StoreError(
                f"the database {_safe(engine)} is not initialised: run `digest-mailer init`"
            )
        if current != head:
            engine.dispose()
            raise StoreError(
                f"the database {_safe(engine)} is at revision {current}, this version needs "
                f"{head}: run `digest-mailer init` to upgrade it"
            )
    return Store(engine, sessionmaker(engine, expire_on_commit=False))


def create_sqlite_folder(url: str) -> Path | None:
    """For ``init``: a SQLite file's folder is created when missing (0700; returned then),
    and the file is private (0600) whether new or not, with its WAL and shared-memory
    files, which SQLite creates with the file's mode."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    file = Path(parsed.database)
    created = None
    if not file.parent.is_dir():
        file.parent.mkdir(parents=True, mode=0o700)
        created = file.parent
    if file.is_dir():
        raise StoreError(f"the database {file} is a folder: name a file in it")
    if not file.exists():
        os.close(os.open(file, os.O_CREAT | os.O_WRONLY, 0o600))
    elif not _is_sqlite(file):
        raise StoreError(f"{file} is not a SQLite database: check [database] url")
    for path in (file, Path(f"{file}-wal"), Path(f"{file}-shm"), Path(f"{file}-journal")):
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
    return created


def _is_sqlite(file: Path) -> bool:
    """An empty file (made by an earlier init) or one with SQLite's header."""
    with file.open("rb") as f:
        head = f.read(16)
    return head in (b"", b"SQLite format 3\x00")


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


class FastStatement:
    """A DML statement compiled once for a dialect and run on the driver's cursor.

    For hot loops (the send log's claims and outcomes, bulk imports) SQLAlchemy's
    per-call overhead costs more than the statement itself. Values are bind-processed here
    with the column types' own processors; one shared object (a timestamp used by every
    row) is processed once.
    """

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        self.order = list(compiled.positiontup or [])
        # constants written into the statement (literal values) travel as bound parameters
        names = compiled.bind_names  # bind parameter -> the name it has in the SQL
        self.defaults = {name: b.effective_value for b, name in names.items() if not b.required}
        self.processors: dict[str, Any] = {}
        for bind, name in names.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        self._cache: dict[tuple[str, int], tuple[Any, Any]] = {}

    def _value(self, key: str, raw: Any) -> Any:
        processor = self.processors.get(key)
        if processor is None or raw is None:
            return raw
        slot = (key, id(raw))
        hit = self._cache.get(slot)
        if hit is None or hit[0] is not raw:
            if len(self._cache) > 10_000:
                self._cache.clear()
            hit = self._cache[slot] = (raw, processor(raw))
        return hit[1]

    def params(self, values: dict[str, Any]) -> Any:
        if self.positional:
            get = values.get
            return tuple(
                self._value(k, get(k, self.defaults.get(k)))
                if k in values or k in self.processors
                else self.defaults[k]
                for k in self.order
            )
        merged = {**self.defaults, **values}
        return {k: self._value(k, v) for k, v in merged.items()}

    def execute(self, cursor: Any, values: dict[str, Any]) -> int:
        cursor.execute(self.sql, self.params(values))
        return cursor.rowcount

    def executemany(self, cursor: Any, rows: list[dict[str, Any]]) -> None:
        if rows:
            cursor.executemany(self.sql, [self.params(row) for row in rows])


@contextmanager
def driver_transaction(connection: Connection) -> Iterator[Any]:
    """One transaction run on the driver connection itself, yielding its cursor: for hot
    loops, where SQLAlchemy's transaction bookkeeping costs more than the statements.
    SQLite gets BEGIN IMMEDIATE like every other transaction here."""
    dbapi = connection.connection.driver_connection
    cursor = dbapi.cursor()  # type: ignore[union-attr]
    try:
        if connection.dialect.name == "sqlite":
            cursor.execute("BEGIN IMMEDIATE")
        yield cursor
    except BaseException:
        try:
            dbapi.rollback()  # type: ignore[union-attr]
        except Exception:  # a connection that died cannot roll back; the error that
            pass  # killed it is the one to report
        raise
    else:
        dbapi.commit()  # type: ignore[union-attr]
    finally:
        try:
            cursor.close()
        except Exception:  # likewise on a dead connection
            pass


def driver_cursor(connection: Connection) -> Any:
    """A cursor on the driver connection inside SQLAlchemy's current transaction."""
    return connection.connection.driver_connection.cursor()  # type: ignore[union-attr]


def insert_many(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows with one driver executemany (see :class:`FastStatement`).
    All rows must have the keys of the first."""
    if not rows:
        return
    conn = session.connection()
    statement = insert(table).values({key: bindparam(key) for key in rows[0]})
    cursor = driver_cursor(conn)
    try:
        FastStatement(statement, conn.dialect).executemany(cursor, rows)
    finally:
        cursor.close()
