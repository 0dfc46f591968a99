"""Where the send loop's group commits run: commit lanes, and the database going away.

A commit waits for the database server's disk (a millisecond or more on PostgreSQL). So
that the SMTP conversations never wait for it, and so that one connection's commit need
not wait for another's, PostgreSQL gets several lanes (one per SMTP connection, at most
four), each a thread with database connections of its own: a driver connection in
autocommit mode for the one-statement group commit
(:func:`~digest_mailer.send.statements.pg_group_commit`) and a SQLAlchemy connection for
the rarer transactions (a refusal recorded as a bounce, claims taken back). SQLite commits
in microseconds, with one writer at a time: one lane, run inline.

When the database goes away (a restart, a full disk), the errors that say so are
:func:`database_errors`; a lane reconnects, and :class:`DatabaseAway` says it could not
for ``[database] retry_seconds``.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, update
from sqlalchemy import exc as sa_exc

from digest_mailer.db import FastStatement, Store, driver_transaction
from digest_mailer.kinds import DeliveryState
from digest_mailer.models import Delivery
from digest_mailer.send import statements
from digest_mailer.send.claims import ClaimPolicy

T = TypeVar("T")
MAX_LANES = 4


class DatabaseAway(Exception):
    """The database stayed unreachable for ``[database] retry_seconds``."""


def database_errors(store: Store) -> tuple[type[BaseException], ...]:
    """The errors that mean "the database is away" (a lost connection, a full disk), as
    SQLAlchemy raises them and as the driver does on the raw connections."""
    dbapi = store.engine.dialect.dbapi
    errors: list[type[BaseException]] = [sa_exc.OperationalError, sa_exc.InterfaceError]
    for name in ("OperationalError", "InterfaceError"):
        error = getattr(dbapi, name, None)
        if isinstance(error, type):
            errors.append(error)
    return tuple(errors)


def one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    return (text[:200] + "…") if len(text) > 200 else text or type(orig).__name__


def _close(connection: Any) -> None:
    try:
        connection.close()
    except Exception:  # a dead connection may fail to close; it is dropped
        pass


class CommitLane:
    """One place a group commit runs, with its own database connections."""

    def __init__(self, store: Store, claims: ClaimPolicy, *, threaded: bool) -> None:
        self.store = store
        self.claims = claims
        self.postgresql = store.engine.dialect.name == "postgresql"
        self.thread = ThreadPoolExecutor(1, "send-commit") if threaded else None
        self.conn: Connection | None = None
        self.fast: Any = None
        self.group_sql = statements.pg_group_commit(claims.kind)
        self.connect()

    def connect(self) -> None:
        self.close_connections()
        self.conn = self.store.engine.connect()
        self.record = FastStatement(statements.RECORD, self.conn.dialect)
        self.bounce = FastStatement(statements.bounce_insert(self.conn.dialect), self.conn.dialect)
        self.claims.bind(self.conn)
        if self.postgresql:
            raw = self.store.engine.raw_connection()
            driver = raw.driver_connection
            raw.detach()  # never back to the pool: it stays in autocommit
            driver.rollback()  # type: ignore[union-attr]
            driver.autocommit = True  # type: ignore[union-attr]
            self.fast = driver

    def close_connections(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()
            except Exception:  # already gone
                pass
            _close(self.conn)
            self.conn = None
        if self.fast is not None:
            _close(self.fast)
            self.fast = None

    def close(self) -> None:
        self.close_connections()
        if self.thread is not None:
            self.thread.shutdown()

    async def run(self, step: Callable[..., T], *args: Any) -> T:
        """``step`` on this lane's thread (PostgreSQL), or inline (SQLite)."""
        if self.thread is None:
            return step(*args)
        return await asyncio.get_running_loop().run_in_executor(self.thread, step, *args)

    def commit(
        self,
        rows: list[dict[str, Any]],
        bounces: list[dict[str, Any]],
        claims: list[tuple[int, str]],
        now: datetime,
    ) -> list[bool]:
        """Record outcomes (``rows``, ``bounces``) and claim ``(delivery id, message id)``
        ``sending``, or ``skipped`` when the subscriber left, in one transaction; whether
        each claim was granted."""
        if self.fast is not None and not bounces:
            params = {
                "now": now,
                "r_id": [r["b_id"] for r in rows],
                "r_state": [str(r["state"]) for r in rows],
                "r_code": [r["smtp_code"] for r in rows],
                "r_message": [r["smtp_message"] for r in rows],
                "r_sent": [r["sent_at"] for r in rows],
                "c_id": [c[0] for c in claims],
                "c_message_id": [c[1] for c in claims],
                "not_active": statements.NOT_ACTIVE_MESSAGE,
                **self.claims.claim_values(now),
            }
            granted = {row[0] for row in self.fast.execute(self.group_sql, params).fetchall()}
            return [c[0] in granted for c in claims]
        assert self.conn is not None
        with driver_transaction(self.conn) as cursor:
            self.record.executemany(cursor, rows)
            if bounces:
                self.bounce.executemany(cursor, bounces)
            return [self.claims.claim(cursor, id_, message_id, now) for id_, message_id in claims]

    def take_back(self, ids: list[int]) -> None:
        """Claims that may have committed as the connection died: nothing was sent for
        them (their connections were told no), so they are held rows again."""
        assert self.conn is not None
        with self.conn.begin():
            self.conn.execute(
                update(Delivery)
                .where(Delivery.id.in_(ids), Delivery.state == DeliveryState.SENDING)
                .values(state=self.claims.held_state)
            )
