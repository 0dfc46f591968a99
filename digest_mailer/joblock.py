"""One job in one place at a time: PostgreSQL advisory locks for `digest-mailer run`.

Several `run` processes (on several machines) may share one PostgreSQL store. Each job
they run (one scheduled send, the request mailbox, the bounce mailbox, the outbox of
replies) first takes ``pg_try_advisory_lock`` on a key derived from the job's name and
the schema the store lives in, on a connection of its own that it keeps while the job
runs; a job whose lock another process holds is skipped until the next poll. A lock is
the session's, so it ends when its connection does: a process that dies holds nothing.

On SQLite a single machine is assumed (one `run` process; the send lease in
:mod:`digest_mailer.lease` still keeps one send of an issue at a time), and
:func:`job_lock` always says yes.

If the lock's connection is lost during a job (a restart of the database), the job goes
on without it: a second process may then start the same job, and what each job writes is
already safe for that (the send lease refuses a second sender of an issue; a mailbox
message is recorded once under its key).
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select

from digest_mailer.db import Store

NAMESPACE = "digest-mailer job"


def lock_key(scope: str, job: str) -> int:
    """The advisory lock key of ``job`` in ``scope`` (the store's schema): a signed
    64-bit integer, as PostgreSQL's ``bigint`` form takes."""
    digest = hashlib.sha256(f"{NAMESPACE}\0{scope}\0{job}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def job_lock(store: Store, job: str) -> Iterator[bool]:
    """Yield True when this process may run ``job`` now (it holds the lock until the
    block ends), False when another process runs it. Always True on SQLite."""
    if store.engine.dialect.name != "postgresql":
        yield True
        return
    conn = store.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        scope = conn.execute(select(func.current_schema())).scalar() or ""
        key = lock_key(scope, job)
        held = bool(conn.execute(select(func.pg_try_advisory_lock(key))).scalar())
    except BaseException:
        conn.invalidate()  # whatever it holds ends with the session
        conn.close()
        raise
    try:
        yield held
    finally:
        try:
            if held:
                conn.execute(select(func.pg_advisory_unlock(key)))
            conn.close()
        except Exception:  # the connection is gone, and its lock with it
            conn.invalidate()
            conn.close()
