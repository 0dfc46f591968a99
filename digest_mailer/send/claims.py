"""How a sender gets the rows it sends and makes them its own: a :class:`ClaimPolicy`.

The send loop (:mod:`digest_mailer.send.loop`) is the same for one process and for many;
what differs is handed to it as a policy object:

- :class:`LocalClaims`: one process sends the issue alone (its lease in ``send_workers``,
  kind ``single``, keeps others out). It reads queued rows in id order and claims each
  ``sending`` in the group commit that lets its final dot go.
- :class:`LeasedClaims`: one of several ``send --worker`` processes on PostgreSQL. It
  first takes a batch of queued rows with ``SELECT … FOR UPDATE SKIP LOCKED`` (they become
  ``claimed``, with its id and a lease), then claims each ``sending`` as above. A live
  worker renews its lease every third of ``[workers] lease_seconds``; when a worker dies
  its lease runs out and any other puts its ``claimed`` rows back to ``queued`` and its
  ``sending`` rows to ``uncertain`` (at most its connection count). A worker leaves only
  when nothing is claimable and no other worker holds rows, so the last one standing also
  recovers the rows of one that died. The rate limit is shared: each worker takes its part
  from the number of live workers.

Either way at most one row per SMTP connection is ever ``sending``.
"""

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Row, and_, exists, or_, select, update
from sqlalchemy.orm import Session

from digest_mailer.config import Config
from digest_mailer.db import FastStatement, Store
from digest_mailer.errors import SendRefused
from digest_mailer.kinds import DeliveryState, WorkerKind, WorkerState
from digest_mailer.lease import host_name
from digest_mailer.models import SendWorker, Subscriber, utcnow
from digest_mailer.send import statements
from digest_mailer.send.plan import expire_leases, live_workers
from digest_mailer.send.statements import DELIVERIES as _D

CANDIDATE_BATCH = 1000  # rows a single sender reads ahead
CHECK_SECONDS = 1.0  # how often an idle worker looks for work or for others' rows


@dataclass
class Candidate:
    """A row a sender holds, with what its message needs."""

    delivery_id: int
    subscriber_id: int | None
    address: str
    name: str
    salt: str  # the subscriber's link_salt


def _candidates(rows: Sequence[Row[Any]]) -> list[Candidate]:
    return [
        Candidate(r.id, r.subscriber_id, r.address, r.name or "", r.link_salt or "") for r in rows
    ]


class ClaimPolicy(Protocol):
    """What the send loop asks of whoever decides which rows are its own."""

    # the state of a row waiting for a retry within this run, and of a row taken back
    # from a claim that never committed (the database went away mid-commit)
    retry_state: DeliveryState
    held_state: DeliveryState

    def start(self, session: Session) -> int:
        """Register; the number of senders sharing the rate limit."""
        ...

    def bind(self, conn: Connection) -> None:
        """Compile the claim statements for this connection's dialect."""
        ...

    def fetch(self, conn: Connection) -> list[Candidate]:
        """The next rows to send, or [] when none are due now (see :attr:`exhausted`)."""
        ...

    @property
    def exhausted(self) -> bool:
        """Nothing more to fetch for now."""
        ...

    def busy_elsewhere(self) -> bool:
        """Others hold rows that may come back to this sender (it must not leave yet)."""
        ...

    def claim(self, cursor: Any, delivery_id: int, message_id: str, now: datetime) -> bool:
        """Turn one held row ``sending`` (True) or ``skipped`` (its subscriber left)."""
        ...

    def after_commit(self, conn: Connection) -> int | None:
        """Keep the claims alive (when due); the number of senders sharing the rate, or
        None when unchanged."""
        ...

    def release(self, session: Session, stopped: bool) -> int:
        """At the end of this sender's run: give back rows it holds and did not send;
        the number of other live senders (0 for a sender alone)."""
        ...


class LocalClaims:
    """One process sends the issue alone."""

    retry_state = DeliveryState.DEFERRED
    held_state = DeliveryState.QUEUED

    def __init__(self, issue_id: str) -> None:
        self.issue_id = issue_id
        self.last_id = 0
        self._exhausted = False

    def start(self, session: Session) -> int:
        return 1

    def bind(self, conn: Connection) -> None:
        self._claim = FastStatement(statements.LOCAL_CLAIM, conn.dialect)
        self._skip = FastStatement(statements.LOCAL_SKIP, conn.dialect)

    def fetch(self, conn: Connection) -> list[Candidate]:
        if self._exhausted:
            return []
        with conn.begin():
            rows = conn.execute(
                statements.candidates(self.issue_id, self.last_id, CANDIDATE_BATCH)
            ).all()
        self._exhausted = len(rows) < CANDIDATE_BATCH
        if rows:
            self.last_id = rows[-1].id
        return _candidates(rows)

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def busy_elsewhere(self) -> bool:
        return False

    def claim(self, cursor: Any, delivery_id: int, message_id: str, now: datetime) -> bool:
        params = {"b_id": delivery_id, "message_id": message_id, "now": now}
        if self._claim.execute(cursor, params) == 1:
            return True
        self._skip.execute(cursor, params)
        return False

    def after_commit(self, conn: Connection) -> int | None:
        return None

    def release(self, session: Session, stopped: bool) -> int:
        return 0


def require_postgresql(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        raise SendRefused(
            '--worker needs PostgreSQL ([database] url = "postgresql+psycopg://…"): SQLite '
            "lets one process send at a time; run `send` without --worker"
        )


class LeasedClaims:
    """One worker among several sharing a send (PostgreSQL row locks alone)."""

    retry_state = DeliveryState.CLAIMED  # a row waiting for its retry stays with this worker
    held_state = DeliveryState.CLAIMED

    def __init__(self, issue_id: str, config: Config, worker_id: str) -> None:
        self.issue_id = issue_id
        self.worker_id = worker_id
        self.connections = config.smtp.connections
        self.lease = timedelta(seconds=config.workers.lease_seconds)
        self.batch = config.workers.claim_batch
        self.started = utcnow()
        self.next_check = 0.0
        self.next_renewal = 0.0
        self.others_busy = False
        self._exhausted = False

    def start(self, session: Session) -> int:
        now = utcnow()
        session.add(
            SendWorker(
                id=self.worker_id,
                issue_id=self.issue_id,
                kind=WorkerKind.WORKER,
                host=host_name(),
                pid=os.getpid(),
                connections=self.connections,
                state=WorkerState.RUNNING,
                started_at=now,
                heartbeat_at=now,
                lease_until=now + self.lease,
            )
        )
        session.flush()
        self.next_renewal = time.monotonic() + self.lease.total_seconds() / 3
        return max(1, live_workers(session, self.issue_id, now))

    def bind(self, conn: Connection) -> None:
        self._claim = FastStatement(statements.WORKER_CLAIM, conn.dialect)
        self._skip = FastStatement(statements.WORKER_SKIP, conn.dialect)

    def fetch(self, conn: Connection) -> list[Candidate]:
        clock = time.monotonic()
        if self._exhausted and clock < self.next_check:
            return []
        now = utcnow()
        claimable = or_(
            _D.c.state == DeliveryState.QUEUED,
            and_(_D.c.state == DeliveryState.DEFERRED, _D.c.updated_at < self.started),
        )
        batch = (
            select(_D.c.id)
            .where(_D.c.issue_id == self.issue_id, claimable)
            .order_by(_D.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with conn.begin():
            expire_leases(conn, self.issue_id, now)
            ids = (
                conn.execute(
                    update(_D)
                    .where(_D.c.id.in_(batch))
                    .values(
                        state=DeliveryState.CLAIMED,
                        worker_id=self.worker_id,
                        lease_until=now + self.lease,
                        updated_at=now,
                    )
                    .returning(_D.c.id)
                )
                .scalars()
                .all()
            )
            rows = (
                conn.execute(
                    select(
                        _D.c.id,
                        _D.c.subscriber_id,
                        _D.c.address,
                        Subscriber.name,
                        Subscriber.link_salt,
                    )
                    .outerjoin(Subscriber, Subscriber.id == _D.c.subscriber_id)
                    .where(_D.c.id.in_(ids))
                    .order_by(_D.c.id)
                ).all()
                if ids
                else []
            )
            self.others_busy = bool(
                conn.execute(
                    select(
                        exists().where(
                            _D.c.issue_id == self.issue_id,
                            _D.c.state.in_((DeliveryState.CLAIMED, DeliveryState.SENDING)),
                            _D.c.worker_id != self.worker_id,
                        )
                    )
                ).scalar()
            )
        self._exhausted = len(rows) < self.batch
        self.next_check = clock + CHECK_SECONDS
        return _candidates(rows)

    @property
    def exhausted(self) -> bool:
        return self._exhausted

    def busy_elsewhere(self) -> bool:
        """While other workers hold rows: if one dies, its rows come back here."""
        return self.others_busy

    def claim(self, cursor: Any, delivery_id: int, message_id: str, now: datetime) -> bool:
        params = {
            "b_id": delivery_id,
            "message_id": message_id,
            "now": now,
            "w": self.worker_id,
            "lease": now + self.lease,
        }
        if self._claim.execute(cursor, params) == 1:
            return True
        self._skip.execute(cursor, params)
        return False

    def after_commit(self, conn: Connection) -> int | None:
        """Extend this worker's lease and its rows' every third of the lease; take this
        worker's share of the rate."""
        if time.monotonic() < self.next_renewal:
            return None
        now = utcnow()
        with conn.begin():
            conn.execute(
                update(_D)
                .where(
                    _D.c.issue_id == self.issue_id,
                    _D.c.worker_id == self.worker_id,
                    _D.c.state.in_((DeliveryState.CLAIMED, DeliveryState.SENDING)),
                )
                .values(lease_until=now + self.lease)
            )
            conn.execute(
                update(SendWorker.__table__)
                .where(SendWorker.id == self.worker_id)
                .values(heartbeat_at=now, lease_until=now + self.lease, state=WorkerState.RUNNING)
            )
            workers = max(1, live_workers(conn, self.issue_id, now))
        self.next_renewal = time.monotonic() + self.lease.total_seconds() / 3
        return workers

    def release(self, session: Session, stopped: bool) -> int:
        """Rows claimed and not sent (a stop, a pause) go straight back to the others;
        the lapsed leases of dead workers are recovered; this worker is marked done."""
        now = utcnow()
        session.execute(
            update(_D)
            .where(
                _D.c.issue_id == self.issue_id,
                _D.c.worker_id == self.worker_id,
                _D.c.state == DeliveryState.CLAIMED,
            )
            .values(state=DeliveryState.QUEUED, worker_id=None, lease_until=None)
        )
        expire_leases(session, self.issue_id, now)
        session.execute(
            update(SendWorker.__table__)
            .where(SendWorker.id == self.worker_id)
            .values(
                state=WorkerState.STOPPED if stopped else WorkerState.FINISHED,
                heartbeat_at=now,
            )
        )
        return live_workers(session, self.issue_id, now)
