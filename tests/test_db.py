import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from digest_mailer import db
from digest_mailer.errors import StoreError
from digest_mailer.models import Base, Event


def test_migrations_build_exactly_the_models(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
        )
    engine.dispose()
    assert diff == []


def test_the_revision_every_command_checks_is_alembics_head(database_url: str) -> None:
    engine = db.make_engine(database_url)
    assert db.SCHEMA_REVISION == db.head_revision(engine)
    engine.dispose()


def test_upgrade_twice_is_harmless(database_url: str) -> None:
    engine = db.make_engine(database_url)
    before, after = db.upgrade(engine)
    assert before is None and after == db.head_revision(engine)
    assert db.upgrade(engine) == (after, after)
    engine.dispose()


def test_uninitialised_store_is_refused(database_url: str) -> None:
    with pytest.raises(StoreError, match="not initialised: run `digest-mailer init`"):
        db.open_store(database_url)


def test_outdated_store_is_refused(database_url: str) -> None:
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'old0'"))
    engine.dispose()
    with pytest.raises(StoreError, match="at revision old0.*run `digest-mailer init`"):
        db.open_store(database_url)


def test_events_are_append_only(store: db.Store) -> None:
    with store.Session.begin() as session:
        session.add(Event(kind="note", actor="test", detail="first"))
    with pytest.raises(DBAPIError, match="append-only"):
        with store.Session.begin() as session:
            session.execute(text("UPDATE events SET detail = 'rewritten'"))
    with store.Session.begin() as session:
        assert session.scalars(text("SELECT detail FROM events")).all() == ["first"]


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    engine = db.make_engine(url)
    db.upgrade(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()


def test_unreachable_database_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="cannot open the database"):
        db.open_store("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
