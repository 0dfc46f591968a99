"""Engine, sessions and schema migrations.

One ``sessionmaker`` per store; commands own the transaction (``with Session.begin()``)
and library functions take the session first and never commit.
"""

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Table, create_engine, event, insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from digest_mailer.errors import StoreError

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
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(files("digest_mailer") / "migrations"))
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(_alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except OperationalError as exc:
        raise StoreError(f"cannot open the database {_safe(engine)}: {_first_line(exc)}") from None


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Create or upgrade the schema to the newest migration; returns (before, after)."""
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
    engine = make_engine(url)
    if check:
        current, head = current_revision(engine), head_revision(engine)
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


def _safe(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc)
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def insert_many(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT many rows through the driver's executemany, bind-processing each distinct
    value once: for large imports SQLAlchemy's per-row parameter processing costs more
    than the insert itself. All rows must have the keys of the first."""
    if not rows:
        return
    conn = session.connection()
    dialect = conn.dialect
    keys = list(rows[0])
    compiled = insert(table).compile(dialect=dialect, column_keys=keys)
    processors = {}
    for key in keys:
        column_type = table.c[key].type
        processor = column_type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors[key] = processor
    cache: dict[tuple[str, int], Any] = {}

    def value(key: str, raw: Any) -> Any:
        processor = processors.get(key)
        if processor is None or raw is None:
            return raw
        slot = (key, id(raw))
        if slot not in cache:  # the same object (a shared timestamp) is processed once
            cache[slot] = (raw, processor(raw))
        return cache[slot][1]

    if compiled.positional:
        order = compiled.positiontup or []
        params: list[Any] = [tuple(value(k, row[k]) for k in order) for row in rows]
    else:
        params = [{k: value(k, row[k]) for k in keys} for row in rows]
    conn.exec_driver_sql(str(compiled), params)
