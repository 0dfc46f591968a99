"""Several senders share one send, coordinated by PostgreSQL row locks alone.

``digest-mailer send ISSUE --yes --worker`` starts a send or joins one under way. Each
worker claims a batch of queued deliveries with ``SELECT … FOR UPDATE SKIP LOCKED``
(they become ``claimed``, with the worker's id and a lease), turns each ``sending`` in the
same group commit that lets its final dot go, as a single sender does, records outcomes,
and claims the next batch until none is left. A live worker renews its lease every third
of ``[workers] lease_seconds``. When a worker dies its lease runs out: any other worker
then puts its ``claimed`` rows back to ``queued`` and marks its ``sending`` rows
``uncertain`` (not resent unless ``--resend-uncertain``), exactly as after a single
sender's crash, so a dead worker leaves at most its connection count uncertain.

A worker leaves only when nothing is claimable and no other worker holds rows, so the
last one standing also recovers the rows of one that died. The rate limit is the total
over all live workers: each takes its share from the number recorded in ``send_workers``.
SQLite has one writer at a time and no row locks: there ``--worker`` is refused.
"""

import os
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, exists, or_, select, update

from digest_mailer.bounces.scoring import score_pending
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.lease import WORKER, host_name, process_identity
from digest_mailer.message import MessageTemplate
from digest_mailer.models import Delivery, Issue, SendWorker, Subscriber, UTCDateTime, utcnow
from digest_mailer.sender import (
    ProgressCallback,
    SendRefused,
    SendReport,
    _Job,
    _SendLoop,
    claim_statements,
    delivery_counts,
    expire_leases,
    live_workers,
)
from digest_mailer.transport import Transport

CHECK_SECONDS = 1.0  # how often an idle worker looks for work or for others' rows
_D = Delivery.__table__


def require_postgresql(store: Store) -> None:
    if store.engine.dialect.name != "postgresql":
        raise SendRefused(
            '--worker needs PostgreSQL ([database] url = "postgresql+psycopg://…"): SQLite '
            "lets one process send at a time; run `send` without --worker"
        )


# A worker turns only its own claimed rows ``sending`` (or ``skipped``).
_MINE = and_(
    _D.c.id == bindparam("b_id"),
    _D.c.state == "claimed",
    _D.c.worker_id == bindparam("w"),
)
_CLAIM, _SKIP = claim_statements(_MINE, lease_until=bindparam("lease", type_=UTCDateTime()))


class WorkerLoop(_SendLoop):
    """The send loop of one worker among several."""

    RETRY_STATE = "claimed"  # a row waiting for its retry stays with this worker

    def __init__(self, *args: Any, worker_id: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_id = worker_id
        self.lease = timedelta(seconds=self.config.workers.lease_seconds)
        self.batch = self.config.workers.claim_batch
        self.rate = self.config.smtp.max_per_second
        self.started = utcnow()
        self.next_check = 0.0
        self.next_renewal = 0.0
        self.others_busy = False

    # -- claims
    def _statements(self) -> tuple[Any, Any]:
        return _CLAIM, _SKIP

    def _claim_params(self, now: datetime) -> dict[str, Any]:
        return {"w": self.worker_id, "lease": now + self.lease}

    def _refill(self) -> None:
        clock = time.monotonic()
        if self.exhausted and clock < self.next_check:
            return
        assert self.conn is not None
        now = utcnow()
        claimable = or_(
            _D.c.state == "queued",
            and_(_D.c.state == "deferred", _D.c.updated_at < self.started),
        )
        batch = (
            select(_D.c.id)
            .where(_D.c.issue_id == self.issue_id, claimable)
            .order_by(_D.c.id)
            .limit(self.batch)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        with self.conn.begin():
            expire_leases(self.conn, self.issue_id, now)
            ids = (
                self.conn.execute(
                    update(_D)
                    .where(_D.c.id.in_(batch))
                    .values(
                        state="claimed",
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
                self.conn.execute(
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
                self.conn.execute(
                    select(
                        exists().where(
                            _D.c.issue_id == self.issue_id,
                            _D.c.state.in_(("claimed", "sending")),
                            _D.c.worker_id != self.worker_id,
                        )
                    )
                ).scalar()
            )
        self.exhausted = len(rows) < self.batch
        self.next_check = clock + CHECK_SECONDS
        for row in rows:
            self.candidates.append(
                _Job(row.id, row.subscriber_id, row.address, row.name or "", row.link_salt or "")
            )

    def _pending(self) -> bool:
        """Also while other workers hold rows: if one dies, its rows come back here."""
        return super()._pending() or self.others_busy

    # -- the lease
    def _commit(self, finished: Any, picked: list[_Job]) -> list[bool]:
        verdicts = super()._commit(finished, picked)
        if time.monotonic() >= self.next_renewal:
            self._renew()
        return verdicts

    def _renew(self) -> None:
        """Extend this worker's lease and its rows'; take this worker's share of the rate."""
        assert self.conn is not None
        now = utcnow()
        with self.conn.begin():
            self.conn.execute(
                update(_D)
                .where(
                    _D.c.issue_id == self.issue_id,
                    _D.c.worker_id == self.worker_id,
                    _D.c.state.in_(("claimed", "sending")),
                )
                .values(lease_until=now + self.lease)
            )
            self.conn.execute(
                update(SendWorker.__table__)
                .where(SendWorker.id == self.worker_id)
                .values(heartbeat_at=now, lease_until=now + self.lease, state="running")
            )
            workers = max(1, live_workers(self.conn, self.issue_id, now))
        if self.rate > 0:
            self.interval = workers / self.rate
        self.next_renewal = time.monotonic() + self.lease.total_seconds() / 3

    # -- run
    def run(self) -> SendReport:
        now = utcnow()
        with self.Session.begin() as session:
            session.add(
                SendWorker(
                    id=self.worker_id,
                    issue_id=self.issue_id,
                    kind=WORKER,
                    host=host_name(),
                    pid=os.getpid(),
                    connections=self.connections,
                    state="running",
                    started_at=now,
                    heartbeat_at=now,
                    lease_until=now + self.lease,
                )
            )
            workers = max(1, live_workers(session, self.issue_id, now))
        if self.rate > 0:
            self.interval = workers / self.rate
        self.next_renewal = time.monotonic() + self.lease.total_seconds() / 3
        return super().run()

    def _finish(self) -> SendReport:
        now = utcnow()
        stopped = bool(self.paused_reason or self.fatal or self.stop.is_set())
        with self.Session.begin() as session:
            # rows claimed and not sent (a stop, a pause) go straight back to the others
            session.execute(
                update(_D)
                .where(
                    _D.c.issue_id == self.issue_id,
                    _D.c.worker_id == self.worker_id,
                    _D.c.state == "claimed",
                )
                .values(state="queued", worker_id=None, lease_until=None)
            )
            expire_leases(session, self.issue_id, now)
            score_pending(session, self.config)
            session.execute(
                update(SendWorker.__table__)
                .where(SendWorker.id == self.worker_id)
                .values(state="stopped" if stopped else "finished", heartbeat_at=now)
            )
            counts = delivery_counts(session, self.issue_id)
            others = live_workers(session, self.issue_id, now)
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            open_rows = sum(counts[s] for s in ("queued", "deferred", "claimed", "sending"))
            if open_rows == 0 and not stopped:
                issue.state, issue.finished_at = "sent", issue.finished_at or now
            elif not others:
                issue.state = "paused"
            issue.updated_at = now
            state = issue.state
        reason = self.fatal or self.paused_reason
        if not reason and self.stop.is_set() and state != "sent":
            reason = "stopped by request"
        if not reason and counts["deferred"] and state != "sent":
            reason = f"{counts['deferred']} recipient(s) were refused temporarily"
        return SendReport(self.issue_id, state, counts, reason)


def run_worker(
    store: Store,
    issue_id: str,
    config: Config,
    template: MessageTemplate,
    make_transport: Callable[[], Transport],
    secret: bytes,
    *,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    worker_id: str | None = None,
) -> SendReport:
    """Take part in ``issue_id``'s send as one worker until nothing is left."""
    require_postgresql(store)
    loop = WorkerLoop(
        store,
        issue_id,
        config,
        make_transport,
        template,
        secret,
        progress,
        stop or threading.Event(),
        worker_id=worker_id or process_identity(),
    )
    return loop.run()
