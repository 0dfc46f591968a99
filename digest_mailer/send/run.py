"""The two ways to send an issue: alone (``send``), or as one worker of several
(``send --worker``, PostgreSQL). Each composes a :class:`~digest_mailer.send.loop.SendLoop`
with its :class:`~digest_mailer.send.claims.ClaimPolicy`."""

import threading
from collections.abc import Callable

from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.kinds import IssueState, WorkerState
from digest_mailer.lease import LeaseKeeper, process_identity
from digest_mailer.message import MessageTemplate
from digest_mailer.send.claims import LeasedClaims, LocalClaims, require_postgresql
from digest_mailer.send.loop import ProgressCallback, SendLoop
from digest_mailer.send.report import SendReport
from digest_mailer.transport import Transport


def run_send(
    store: Store,
    issue_id: str,
    config: Config,
    template: MessageTemplate,
    make_transport: Callable[[], Transport],
    secret: bytes,
    *,
    progress: ProgressCallback | None = None,
    stop: threading.Event | None = None,
    lease: str | None = None,
) -> SendReport:
    """Send every queued or deferred delivery of ``issue_id`` alone; commits as it goes.
    ``lease``: the id :func:`digest_mailer.lease.take_lease` gave; it is renewed while the
    send runs and ended with it."""
    loop = SendLoop(
        store,
        issue_id,
        config,
        make_transport,
        template,
        secret,
        LocalClaims(issue_id),
        progress=progress,
        stop=stop,
    )
    if lease is None:
        return loop.run()
    with LeaseKeeper(store, lease, config.workers.lease_seconds) as keeper:
        report = loop.run()
        keeper.final_state = (
            WorkerState.FINISHED if report.state == IssueState.SENT else WorkerState.STOPPED
        )
    return report


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
    claims = LeasedClaims(issue_id, config, worker_id or process_identity())
    loop = SendLoop(
        store,
        issue_id,
        config,
        make_transport,
        template,
        secret,
        claims,
        progress=progress,
        stop=stop,
    )
    return loop.run()
