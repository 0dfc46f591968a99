"""Proof before a send: test sends to the seed list (or given addresses), and dry runs
that write every message the send would make without sending any.

A test send never touches the send log's deliveries; when every copy is accepted, the
issue's text (its fingerprint) counts as tested and the real send may start.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from digest_mailer.addresses import UnencodableAddress, normalize_address
from digest_mailer.clicks.store import record_links
from digest_mailer.composer import ComposedIssue
from digest_mailer.config import Config
from digest_mailer.errors import InputError
from digest_mailer.kinds import FINAL_DELIVERY_STATES, IssueState, OutcomeKind, SubscriberStatus
from digest_mailer.message import MessageTemplate, make_message_id
from digest_mailer.models import Delivery, Subscriber, TestSend, list_members, utcnow
from digest_mailer.send.envelope import envelope_sender, unsubscribe_url
from digest_mailer.send.plan import record_issue, refuse_on_lint_errors, refuse_reused_id
from digest_mailer.signing import DkimSigner
from digest_mailer.subscribers import get_list
from digest_mailer.transport import Outcome, Transport, run_coroutine
from digest_mailer.transport.retry import send_with_reconnects, unsendable


@dataclass
class TestResult:
    __test__ = False
    address: str
    outcome: Outcome


def test_recipients(
    session: Session, config: Config, to: Iterable[str] = ()
) -> list[tuple[str, str, int | None, str]]:
    """(address, name, subscriber id, link salt) for a test send: given addresses, else the
    seed list."""
    given = list(to)
    if given:
        allow = config.subscribers.allow_test_domains
        out = []
        for address in given:
            normalized = normalize_address(address, allow_test_domains=allow)
            out.append((normalized, "", None, ""))
        return out
    seed = get_list(session, config.seed.list)
    rows = session.execute(
        select(Subscriber.email, Subscriber.name, Subscriber.id, Subscriber.link_salt)
        .join(list_members, list_members.c.subscriber_id == Subscriber.id)
        .where(list_members.c.list_id == seed.id, Subscriber.status == "active")
        .order_by(Subscriber.email_key)
    ).all()
    if not rows:
        raise InputError(
            f"the seed list {seed.name!r} has no active members: add some with "
            f"`digest-mailer subscribers add ADDRESS --list {seed.name}` or use --to ADDRESS"
        )
    return [(r.email, r.name, r.id, r.link_salt) for r in rows]


def test_send(
    session: Session,
    composed: ComposedIssue,
    config: Config,
    transport: Transport,
    secret: bytes,
    recipients: list[tuple[str, str, int | None]],
) -> list[TestResult]:
    """Send ``[TEST]`` copies; log them as test sends of this fingerprint. Never touches
    deliveries. When all are accepted the issue counts as tested. Closes ``transport``."""
    refuse_on_lint_errors(composed)
    issue = record_issue(session, composed)
    refuse_reused_id(issue, composed)
    unsent = issue.state in (IssueState.DRAFT, IssueState.TESTED)
    if composed.links or unsent:  # the test copies' /r/ links work ([tracking] clicks)
        record_links(session, issue.id, composed.links, fresh=unsent)
    template = MessageTemplate(
        composed, config, subject_prefix="[TEST] ", signer=DkimSigner.from_config(config)
    )
    messages: list[tuple[str, str, bytes | Outcome]] = []
    for address, name, subscriber_id, salt in recipients:
        message_id = make_message_id(template.domain, "test", composed.issue_id)
        url = template.unsubscribe_target(unsubscribe_url(config, secret, subscriber_id, salt))
        try:
            data: bytes | Outcome = template.render(address, name, message_id, url)
        except UnencodableAddress as exc:  # that address fails alone
            data = unsendable(exc)
        messages.append((address, message_id, data))

    async def deliver_all() -> list[Outcome]:
        outcomes = []
        try:
            for address, _, data in messages:
                if isinstance(data, Outcome):
                    outcomes.append(data)
                    continue
                outcomes.append(
                    await send_with_reconnects(
                        transport,
                        envelope_sender(config),
                        address,
                        data,
                        config.smtp.retry_base_seconds,
                    )
                )
        finally:
            await transport.close()
        return outcomes

    results = []
    for (address, message_id, _), outcome in zip(
        messages, run_coroutine(deliver_all()), strict=True
    ):
        session.add(
            TestSend(
                issue_id=issue.id,
                fingerprint=composed.fingerprint,
                address=address,
                state=outcome.kind,
                smtp_code=outcome.code,
                smtp_message=outcome.message,
                message_id=message_id,
                created_at=utcnow(),
            )
        )
        results.append(TestResult(address, outcome))
    if results and all(r.outcome.kind == OutcomeKind.SENT for r in results):
        issue.tested_fingerprint = composed.fingerprint
        if issue.state == IssueState.DRAFT:
            issue.state = IssueState.TESTED
        issue.updated_at = utcnow()
    session.flush()
    return results


# --------------------------------------------------------------------------- dry run


def dry_run(
    session: Session,
    composed: ComposedIssue,
    config: Config,
    transport: Transport,
    secret: bytes,
) -> int:
    """Write every message the send would make through ``transport`` (then closed);
    changes nothing. Returns how many were written: an address that cannot be written for
    SMTP (its send would fail it) is left out."""
    template = MessageTemplate(composed, config, signer=DkimSigner.from_config(config))
    sent_already = select(Delivery.subscriber_id).where(
        Delivery.issue_id == composed.issue_id,
        Delivery.state.in_(FINAL_DELIVERY_STATES),
        Delivery.subscriber_id.is_not(None),
    )
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.name, Subscriber.link_salt)
        .where(Subscriber.status == SubscriberStatus.ACTIVE, Subscriber.id.not_in(sent_already))
        .order_by(Subscriber.id)
        .execution_options(yield_per=1000)
    )

    async def write_all() -> int:
        count = 0
        for row in rows:
            message_id = make_message_id(template.domain, composed.issue_id, "dry", row.id)
            url = template.unsubscribe_target(
                unsubscribe_url(config, secret, row.id, row.link_salt, composed.issue_id)
            )
            try:
                data = template.render(row.email, row.name, message_id, url)
            except UnencodableAddress:
                continue
            outcome = await transport.send(envelope_sender(config), row.email, data)
            count += outcome.kind == OutcomeKind.SENT
        await transport.close()
        return count

    return run_coroutine(write_all())
