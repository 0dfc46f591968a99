"""One send at a time: the lease a sending process holds on an issue.

Every send process registers a row in ``send_workers`` with its host, process id, start
time and a lease that a background thread renews every third of ``[workers]
lease_seconds``. A plain ``send`` holds the issue alone (kind ``single``): a second
``send`` of the same issue, or a ``--worker`` joining it, is refused with a message naming
the process, whatever the database, and the rows that process holds are never called
uncertain. ``--worker`` processes (kind ``worker``) share a send and exclude a plain one.

A lease ends when its process finishes, or when it is not renewed in time; a process on
this host that no longer exists has lost its lease at once (a restart after a crash need
not wait for the lease to run out). Recovery of a dead process's rows then works as before.
"""

import os
import secrets
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from digest_mailer.db import Store
from digest_mailer.errors import SendRefused
from digest_mailer.kinds import WorkerKind, WorkerState
from digest_mailer.models import SendWorker, utcnow

SINGLE = WorkerKind.SINGLE
WORKER = WorkerKind.WORKER


def host_name() -> str:
    return socket.gethostname()[:255]


def process_identity() -> str:
    """A unique id for this process's part in a send."""
    return f"{socket.gethostname()[:50]}-{os.getpid()}-{secrets.token_hex(3)}"


def process_alive(host: str, pid: int) -> bool | None:
    """Whether ``pid`` on ``host`` still runs: None when it is on another host."""
    if host != host_name():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class Holder:
    id: str
    kind: str
    host: str
    pid: int
    started_at: datetime

    def describe(self) -> str:
        return f"process {self.pid} on {self.host} (started {self.started_at:%Y-%m-%d %H:%M} UTC)"


def live_holders(session: Session, issue_id: str, now: datetime) -> list[Holder]:
    """The processes whose lease on ``issue_id`` still runs. A lease of a process on this
    host that has died is ended here (its rows are then recovered by the caller)."""
    holders = []
    for row in session.scalars(
        select(SendWorker).where(
            SendWorker.issue_id == issue_id,
            SendWorker.state == WorkerState.RUNNING,
            SendWorker.lease_until >= now,
        )
    ):
        if process_alive(row.host, row.pid) is False:
            row.state, row.lease_until = WorkerState.LOST, now
            continue
        holders.append(Holder(row.id, row.kind, row.host, row.pid, row.started_at))
    session.flush()
    return holders


def refuse_while_held(session: Session, issue_id: str, *, joining_as_worker: bool) -> None:
    """A plain send refuses any live holder; a worker refuses only a plain send."""
    holders = live_holders(session, issue_id, utcnow())
    single = [h for h in holders if h.kind == SINGLE]
    if single:
        raise SendRefused(
            f"issue {issue_id} is being sent by {single[0].describe()}; wait until it "
            "finishes (or stop it with Ctrl-C), then run the command again"
        )
    if holders and not joining_as_worker:
        raise SendRefused(
            f"{len(holders)} worker(s) are sending issue {issue_id} (first: "
            f"{holders[0].describe()}): join them with `send --yes --worker`, or wait "
            "until they finish"
        )


def take_lease(session: Session, issue_id: str, lease_seconds: float, connections: int) -> str:
    """Register this process as the one sender of ``issue_id``; returns the lease id."""
    now = utcnow()
    holder = process_identity()
    session.add(
        SendWorker(
            id=holder,
            issue_id=issue_id,
            kind=SINGLE,
            host=host_name(),
            pid=os.getpid(),
            connections=connections,
            state=WorkerState.RUNNING,
            started_at=now,
            heartbeat_at=now,
            lease_until=now + timedelta(seconds=lease_seconds),
        )
    )
    session.flush()
    return holder


class LeaseKeeper:
    """Renews a lease from a thread of its own (so a slow SMTP server or a long commit
    never lets it lapse while the process lives), and ends it on exit."""

    def __init__(self, store: Store, holder: str, lease_seconds: float) -> None:
        self.store = store
        self.holder = holder
        self.lease = timedelta(seconds=lease_seconds)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="send-lease", daemon=True)
        self.final_state = WorkerState.FINISHED

    def __enter__(self) -> "LeaseKeeper":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        try:
            self._write(self.final_state if exc[0] is None else WorkerState.STOPPED)
        except Exception:  # the database is away (the send reports it): the lease ends
            pass  # anyway, when it runs out or as soon as this process is gone

    def _run(self) -> None:
        while not self.done.wait(self.lease.total_seconds() / 3):
            try:
                self._write(WorkerState.RUNNING)
            except Exception:  # a missed renewal is retried; the lease has slack
                continue

    def _write(self, state: str) -> None:
        now = utcnow()
        with self.store.engine.begin() as conn:
            conn.execute(
                update(SendWorker.__table__)
                .where(SendWorker.id == self.holder)
                .values(state=state, heartbeat_at=now, lease_until=now + self.lease)
            )
