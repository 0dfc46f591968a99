"""The send loop: exactly once to every recipient, with a durable send log.

The database is the source of truth. Each delivery row is committed as ``sending`` before
its message can be accepted (the transport's commit point, just before the end-of-data
dot) and with its outcome after it. One event loop in the caller's thread owns the
database and drives ``[smtp] connections`` SMTP connections, each with at most one message
in hand. So at most ``connections`` rows are ever ``sending``: after a crash those become
``uncertain`` and are not resent unless asked; every other recipient is sent exactly once.
Outcomes and the next claims share one commit (group commit), which keeps the guarantee
and makes the database cost per message small.

Which rows are this sender's, and how it makes them its own, is a
:class:`~digest_mailer.send.claims.ClaimPolicy` handed to :class:`SendLoop`: alone
(:class:`~digest_mailer.send.claims.LocalClaims`) or as one worker of several
(:class:`~digest_mailer.send.claims.LeasedClaims`).

When the database goes away mid-send (a restart, a full disk), the loop holds every
message at its commit point, keeps the outcomes it has not recorded yet, and reconnects
with backoff for ``[database] retry_seconds``; then it records them (so a message the
server accepted is ``sent``, not ``uncertain``) and goes on. If the database stays away
the send pauses; the same command resumes it.

The loop knows transports only through :class:`~digest_mailer.transport.Transport` and
the outcome kinds; it knows nothing of SMTP itself. Long-running: it takes a
:class:`~digest_mailer.db.Store` and commits per group of messages.
"""

import asyncio
import heapq
import itertools
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, func, select, update
from sqlalchemy import exc as sa_exc

from digest_mailer.addresses import UnencodableAddress, wire_address
from digest_mailer.bounces.scoring import is_recipient_refusal, score_pending
from digest_mailer.config import Config
from digest_mailer.db import FastStatement, Store, driver_transaction
from digest_mailer.kinds import (
    CLAIMABLE_DELIVERY_STATES,
    OPEN_DELIVERY_STATES,
    DeliveryState,
    IssueState,
    OutcomeKind,
)
from digest_mailer.message import MessageTemplate, message_id_maker
from digest_mailer.models import Delivery, Issue, utcnow
from digest_mailer.send import statements
from digest_mailer.send.claims import Candidate, ClaimPolicy
from digest_mailer.send.envelope import envelope_sender, unsubscribe_url
from digest_mailer.send.report import SendReport, delivery_counts
from digest_mailer.transport import Outcome, Transport, run_coroutine
from digest_mailer.transport.retry import send_with_reconnects, unsendable

ProgressCallback = Callable[[int, int], None]
T = TypeVar("T")
_K = OutcomeKind
_NOT_TRANSMITTED = (_K.UNAVAILABLE, _K.FATAL)  # nothing went out: the row goes back


@dataclass
class Job:
    """One message in the loop's hands: its row, its rendered bytes, its claim."""

    row: Candidate
    message_id: str = ""
    claimed: "asyncio.Future[bool] | None" = None
    data: "asyncio.Future[bytes] | None" = None  # the message, rendered (and signed) ahead
    refusal: Outcome | None = None  # the address cannot be sent to: fail it, send nothing
    requeue: bool = False  # its claim was lost with the database: send it again later

    @property
    def delivery_id(self) -> int:
        return self.row.delivery_id

    async def commit_point(self) -> bool:
        """Before the final dot: wait until the claim is committed (True) or refused."""
        assert self.claimed is not None
        return await asyncio.shield(self.claimed)

    def refused(self) -> bool:
        """The row's claim was refused (the subscriber is no longer active)."""
        return self.claimed is not None and self.claimed.done() and not self.claimed.result()


class DatabaseAway(Exception):
    """The database stayed unreachable for ``[database] retry_seconds``."""


class SendLoop:
    """One thread, one event loop: the database steps run between SMTP events, so the
    connections never wait for a lock held by the bookkeeping, nor it for them."""

    def __init__(
        self,
        store: Store,
        issue_id: str,
        config: Config,
        make_transport: Callable[[], Transport],
        template: MessageTemplate,
        secret: bytes,
        claims: ClaimPolicy,
        *,
        progress: ProgressCallback | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.conn: Connection | None = None
        self.issue_id = issue_id
        self.config = config
        self.template = template
        self.make_transport = make_transport
        self.secret = secret
        self.claims = claims
        self.progress = progress
        self.stop = stop or threading.Event()
        self.connections = config.smtp.connections
        self.max_attempts = config.smtp.max_attempts
        self.retry_base = config.smtp.retry_base_seconds
        self.rate = config.smtp.max_per_second
        self.interval = 1.0 / self.rate if self.rate > 0 else 0.0
        self.next_slot = 0.0
        self.candidates: deque[Job] = deque()
        self.retry_heap: list[tuple[float, int, Job]] = []
        self.run_attempts: Counter[int] = Counter()
        self.in_flight = 0
        self.done = 0
        self.total = 0
        self.paused_reason = ""
        self.fatal = ""
        self.seq = itertools.count()
        self.signing: ThreadPoolExecutor | None = None
        self.db_errors = _database_errors(store)
        self.db_thread: ThreadPoolExecutor | None = None
        self.make_message_id = message_id_maker(template.domain, issue_id)

    # -- candidates
    def _refill(self) -> None:
        assert self.conn is not None
        self.candidates.extend(Job(row) for row in self.claims.fetch(self.conn))

    def _pending(self) -> bool:
        return bool(
            self.candidates
            or not self.claims.exhausted
            or self.retry_heap
            or self.claims.busy_elsewhere()
        )

    def _stopping(self) -> bool:
        return bool(self.paused_reason or self.fatal or self.stop.is_set())

    def _share_rate(self, senders: int | None) -> None:
        if senders is not None and self.rate > 0:
            self.interval = senders / self.rate

    # -- the next messages for free connections (in memory; candidates are prefetched)
    def _pick(self, now: float) -> list[Job]:
        picked: list[Job] = []
        free = 0 if self._stopping() else self.connections - self.in_flight
        while free > 0:
            if self.interval and now < self.next_slot:
                break
            if self.retry_heap and self.retry_heap[0][0] <= now:
                job = heapq.heappop(self.retry_heap)[2]
            elif self.candidates:
                job = self.candidates.popleft()
            else:
                break
            self._prepare(job)
            picked.append(job)
            free -= 1
            if self.interval:
                self.next_slot = max(self.next_slot, now) + self.interval
        return picked

    def _prepare(self, job: Job) -> None:
        """Render a message before its connection needs it: with DKIM, on the signing
        threads (OpenSSL releases the GIL), for the next messages too, so that signing
        overlaps the SMTP round trips. A retry sends the same message again."""
        if job.data is not None or job.refusal is not None:
            return
        row = job.row
        job.message_id = self.make_message_id(row.delivery_id)
        if not row.address.isascii():
            try:
                wire_address(row.address)  # cached: render and the transport reuse it
            except UnencodableAddress as exc:
                job.refusal = unsendable(exc)
                return
        url = self.template.unsubscribe_target(
            unsubscribe_url(self.config, self.secret, row.subscriber_id, row.salt, self.issue_id)
        )
        args = (row.address, row.name, job.message_id, url)
        loop = asyncio.get_running_loop()
        if self.signing is None:
            job.data = loop.create_future()
            try:
                job.data.set_result(self.template.render(*args))
            except Exception as exc:  # as on the signing threads: its connection reports it
                job.data.set_exception(exc)
        else:
            job.data = loop.run_in_executor(self.signing, self.template.render, *args)

    def _prepare_ahead(self) -> None:
        if self.signing is not None:
            for job in itertools.islice(self.candidates, self.connections):
                self._prepare(job)

    # -- one group commit: outcomes that came in, new claims
    def _commit(self, finished: list[tuple[Job, Outcome]], picked: list[Job]) -> list[bool]:
        """Record outcomes and claim the picked rows as ``sending`` in one transaction.

        The picked messages are already travelling: each sends its final dot only after
        this commit says yes (see :meth:`Job.commit_point`). A crash before the commit
        leaves their rows as they were, and no server can have accepted a message without
        its dot. So at most one row per connection is ever ``sending``.
        """
        assert self.conn is not None
        now = utcnow()
        with driver_transaction(self.conn) as cursor:
            if finished:
                self._record(cursor, finished, now)
            verdicts = [
                self.claims.claim(cursor, job.delivery_id, job.message_id, now) for job in picked
            ]
        self._settle(finished)
        return verdicts

    def _housekeep(self) -> None:
        """Between commits: keep the claims alive, read the next candidates."""
        assert self.conn is not None
        self._share_rate(self.claims.after_commit(self.conn))
        if len(self.candidates) < 2 * self.connections:
            self._refill()

    def _record(self, cursor: Any, finished: list[tuple[Job, Outcome]], now: datetime) -> None:
        """Write the outcomes. Pure bookkeeping of what to do next (retries, counts) waits
        for the commit (:meth:`_settle`), so that a failed commit can be tried again."""
        rows = []
        bounces = []
        for job, outcome in finished:
            kind = outcome.kind
            if job.requeue or kind == _K.CANCELLED:
                continue  # nothing was sent: taken back, or already marked skipped
            if kind not in _NOT_TRANSMITTED and job.refused():
                continue
            state = kind
            if kind == _K.DEFERRED and self.run_attempts[job.delivery_id] + 1 < self.max_attempts:
                state = self.claims.retry_state
            elif kind in _NOT_TRANSMITTED:
                state = self.claims.held_state  # never transmitted: back for the next run
            elif kind != _K.DEFERRED and is_recipient_refusal(outcome):
                bounces.append(
                    statements.bounce_row(job.row, outcome, now)
                )  # scored by score_pending
            rows.append(
                {
                    "b_id": job.delivery_id,
                    "state": state,
                    "smtp_code": outcome.code,
                    "smtp_message": outcome.message or None,
                    "sent_at": now if kind == _K.SENT else None,
                    "updated_at": now,
                }
            )
        self.record.executemany(cursor, rows)
        if bounces:
            self.bounce.executemany(cursor, bounces)

    def _settle(self, finished: list[tuple[Job, Outcome]]) -> None:
        """After the outcomes are committed: schedule retries, count what is done."""
        clock = time.monotonic()
        for job, outcome in finished:
            kind = outcome.kind
            if job.requeue:
                job.requeue, job.claimed = False, None
                self.candidates.appendleft(job)  # its claim never committed: send it later
            elif kind == _K.CANCELLED or (kind not in _NOT_TRANSMITTED and job.refused()):
                continue
            elif kind == _K.DEFERRED:
                self.run_attempts[job.delivery_id] += 1
                tries = self.run_attempts[job.delivery_id]
                if tries < self.max_attempts:
                    due = clock + self.retry_base * 2 ** (tries - 1)
                    heapq.heappush(self.retry_heap, (due, next(self.seq), job))
                else:
                    self.done += 1
            elif kind == _K.FATAL:
                self.fatal = self.fatal or outcome.message
            elif kind == _K.UNAVAILABLE:
                self.paused_reason = self.paused_reason or outcome.message
            else:
                self.done += 1

    # -- the database going away and coming back
    async def _commit_until_done(
        self, finished: list[tuple[Job, Outcome]], picked: list[Job]
    ) -> list[bool]:
        """:meth:`_commit` and :meth:`_housekeep`, reconnecting with backoff while the
        database is away. When the commit itself fails, the picked messages are held back
        at once (their claims may or may not have committed; nothing is sent for them) and
        sent again later, and the outcomes are recorded once the database is back.
        Raises :class:`DatabaseAway` when it stays away for ``[database] retry_seconds``."""
        committed: list[list[bool]] = []
        try:
            return await self._offload(self._step, finished, picked, committed)
        except self.db_errors as exc:
            error: BaseException = exc
        verdicts = committed[0] if committed else None
        unrecorded: list[tuple[Job, Outcome]] = []
        void: list[Job] = []
        if verdicts is None:  # the commit failed: its outcomes wait, its claims are void
            unrecorded, void = finished, picked
            for job in picked:
                job.requeue = True
                if job.claimed is not None and not job.claimed.done():
                    job.claimed.set_result(False)  # its connection drops it (RSET) now
            verdicts = [False] * len(picked)

        def recover() -> None:
            nonlocal void, unrecorded
            self._reconnect()
            if void:
                self._take_back(void)
                void = []
            if unrecorded:
                self._commit(unrecorded, [])
                unrecorded = []
            self._housekeep()

        deadline = time.monotonic() + self.config.database.retry_seconds
        delay = 0.2
        while True:
            await asyncio.sleep(delay)
            try:
                await self._offload(recover)
                return verdicts
            except self.db_errors as exc:
                error = exc
            if time.monotonic() >= deadline or self.stop.is_set():
                raise DatabaseAway(_one_line(error)) from error
            delay = min(delay * 2, 5.0)

    def _step(
        self, finished: list[tuple[Job, Outcome]], picked: list[Job], committed: list[list[bool]]
    ) -> list[bool]:
        """One commit and the housekeeping after it; ``committed`` gets the verdicts as
        soon as the commit is done (so that a failure after it is told apart)."""
        committed.append(self._commit(finished, picked))
        self._housekeep()
        return committed[0]

    async def _offload(self, step: Callable[..., T], *args: Any) -> T:
        """Run a database step. On PostgreSQL, in the database thread: a commit waits for
        the server's disk (a millisecond or more), and meanwhile the event loop goes on
        with the SMTP conversations, so the next messages travel during the commit. The
        loop's own state is safe: the main coroutine waits for the step, and the
        connections touch only their own jobs. SQLite commits in microseconds: inline."""
        if self.db_thread is None:
            return step(*args)
        return await asyncio.get_running_loop().run_in_executor(self.db_thread, step, *args)

    def _reconnect(self) -> None:
        if self.conn is not None:
            try:
                self.conn.invalidate()
                self.conn.close()
            except Exception:  # a dead connection may fail to close; it is dropped
                pass
        self.conn = None
        self.conn = self.store.engine.connect()

    def _take_back(self, jobs: list[Job]) -> None:
        """Claims that may have committed as the connection died: nothing was sent for
        them (their connections were told no), so they are held rows again."""
        if not jobs:
            return
        assert self.conn is not None
        with self.conn.begin():
            self.conn.execute(
                update(Delivery)
                .where(
                    Delivery.id.in_([job.delivery_id for job in jobs]),
                    Delivery.state == DeliveryState.SENDING,
                )
                .values(state=self.claims.held_state)
            )

    # -- run
    def run(self) -> SendReport:
        with self.store.Session.begin() as session:
            self._share_rate(self.claims.start(session))
            score_pending(session, self.config)  # refusals a crashed run recorded
            self.total = (
                session.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(
                        Delivery.issue_id == self.issue_id,
                        Delivery.state.in_(CLAIMABLE_DELIVERY_STATES),
                    )
                )
                or 0
            )
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            issue.state = IssueState.SENDING
            issue.started_at = issue.started_at or utcnow()
            issue.updated_at = utcnow()
        self.conn = self.store.engine.connect()
        try:
            self.claims.bind(self.conn)
            self.record = FastStatement(statements.RECORD, self.conn.dialect)
            self.bounce = FastStatement(
                statements.bounce_insert(self.conn.dialect), self.conn.dialect
            )
            run_coroutine(self._main())
        except DatabaseAway as exc:
            return self._database_away(str(exc))
        finally:
            if self.conn is not None:
                self.conn.close()
        try:
            return self._finish()
        except self.db_errors as exc:
            return self._database_away(_one_line(exc))

    def _database_away(self, why: str) -> SendReport:
        """No word from the database: the report says so; the rows are as committed
        (at most one ``sending`` per connection, found uncertain by the next run)."""
        return SendReport(
            self.issue_id,
            IssueState.PAUSED,
            {},
            f"the database did not answer for {self.config.database.retry_seconds:g} s ({why})",
        )

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        results: asyncio.Queue[tuple[Job, Outcome]] = asyncio.Queue()
        jobs: asyncio.Queue[Job | None] = asyncio.Queue()

        async def connection() -> None:
            """One SMTP connection: takes a message, sends it, reports; until told to stop."""
            transport = self.make_transport()
            try:
                while (job := await jobs.get()) is not None:
                    try:
                        if job.refusal is not None:
                            results.put_nowait((job, job.refusal))  # nothing goes out
                            continue
                        assert job.data is not None
                        outcome = await send_with_reconnects(
                            transport,
                            envelope_sender(self.config, self.secret, job.delivery_id),
                            job.row.address,
                            await job.data,
                            self.retry_base,
                            job.commit_point,
                        )
                    except Exception as exc:  # a bug must not lose the row: report it
                        message = f"internal error: {type(exc).__name__}: {exc}"
                        outcome = Outcome(_K.FATAL, None, message)
                    results.put_nowait((job, outcome))
            finally:
                await transport.close()

        self.signing = (
            ThreadPoolExecutor(min(self.connections + 1, os.cpu_count() or 1), "dkim")
            if self.template.signer is not None
            else None
        )
        if self.store.engine.dialect.name == "postgresql":
            self.db_thread = ThreadPoolExecutor(1, "send-db")
        connections = [asyncio.create_task(connection()) for _ in range(self.connections)]
        finished: list[tuple[Job, Outcome]] = []
        try:
            self._refill()
            while True:
                now = time.monotonic()
                picked = self._pick(now)
                self._prepare_ahead()
                for job in picked:
                    job.claimed = loop.create_future()
                    jobs.put_nowait(job)
                self.in_flight += len(picked)
                if picked:
                    await asyncio.sleep(0)  # let them put MAIL FROM on the wire first
                try:
                    verdicts = await self._commit_until_done(finished, picked)
                except BaseException:
                    for job in picked:
                        if job.claimed is not None and not job.claimed.done():
                            job.claimed.set_result(False)
                    raise
                for job, ok in zip(picked, verdicts, strict=True):
                    if not ok and not job.requeue:
                        self.done += 1
                    assert job.claimed is not None
                    if not job.claimed.done():  # a requeued job was told no already
                        job.claimed.set_result(ok)
                if self.progress:
                    self.progress(self.done, self.total)
                if self.in_flight == 0 and (self._stopping() or not self._pending()):
                    return
                finished = await self._wait(results, now)
        finally:
            for _ in connections:
                jobs.put_nowait(None)
            await asyncio.gather(*connections, return_exceptions=True)
            if self.signing is not None:
                self.signing.shutdown(cancel_futures=True)
            if self.db_thread is not None:
                self.db_thread.shutdown()

    async def _wait(
        self, results: asyncio.Queue[tuple[Job, Outcome]], now: float
    ) -> list[tuple[Job, Outcome]]:
        """Until a message is done, a retry or a rate slot is due (when a connection is
        free to take it), or 0.5 s have passed (so that a stop request is noticed)."""
        wake = [now + 0.5]
        if self.in_flight < self.connections and not self._stopping():
            if self.retry_heap:
                wake.append(self.retry_heap[0][0])
            if self.interval and self.next_slot > now:
                wake.append(self.next_slot)
        timeout = min(wake) - time.monotonic()
        finished = []
        if timeout <= 0:
            await asyncio.sleep(0)  # always let the connections run
        else:
            try:
                async with asyncio.timeout(timeout):
                    finished.append(await results.get())
            except TimeoutError:
                return []
        while not results.empty():
            finished.append(results.get_nowait())
        self.in_flight -= len(finished)
        return finished

    def _finish(self) -> SendReport:
        stopped = self._stopping()
        now = utcnow()
        with self.store.Session.begin() as session:
            others = self.claims.release(session, stopped)
            score_pending(session, self.config)
            counts = delivery_counts(session, self.issue_id)
            issue = session.get(Issue, self.issue_id)
            assert issue is not None
            open_rows = sum(counts[s] for s in OPEN_DELIVERY_STATES)
            if open_rows == 0 and not stopped:
                issue.state, issue.finished_at = IssueState.SENT, issue.finished_at or now
            elif not others:
                issue.state = IssueState.PAUSED
            issue.updated_at = now
            state = issue.state
        reason = self.fatal or self.paused_reason
        if not reason and self.stop.is_set() and state != IssueState.SENT:
            reason = "stopped by request"
        if not reason and counts[DeliveryState.DEFERRED] and state != IssueState.SENT:
            reason = (
                f"{counts[DeliveryState.DEFERRED]} recipient(s) were refused temporarily "
                f"{self.max_attempts} times"
            )
        return SendReport(self.issue_id, state, counts, reason)


def _database_errors(store: Store) -> tuple[type[BaseException], ...]:
    """The errors that mean "the database is away" (a lost connection, a full disk), as
    SQLAlchemy raises them and as the driver does on the hot path's raw cursor."""
    dbapi = store.engine.dialect.dbapi
    errors: list[type[BaseException]] = [sa_exc.OperationalError, sa_exc.InterfaceError]
    for name in ("OperationalError", "InterfaceError"):
        error = getattr(dbapi, name, None)
        if isinstance(error, type):
            errors.append(error)
    return tuple(errors)


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = " ".join(str(orig).split())
    return (text[:200] + "…") if len(text) > 200 else text or type(orig).__name__
