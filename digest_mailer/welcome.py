"""The welcome mail: one message to each new reader, once per subscriber ever.

A subscription confirmed by email or on the confirmation page
(:func:`welcome_confirmed`, called by
:func:`~digest_mailer.inbox.subscriptions.confirm_token` and the web app), or an address
staff add with ``subscribers add --welcome`` (:func:`welcome_added`), gets one message
from ``templates/welcome.txt.j2`` and ``welcome.html.j2`` (a staff copy in ``[newsletter]
templates`` wins): what the newsletter is, how often it comes, the reader's own
unsubscribe link, and a link to the latest published issue of the archive when there is
one and ``public_url`` is set.

- Once ever: ``subscribers.welcomed_at`` is set by ``UPDATE … WHERE welcomed_at IS NULL``
  in the transaction that queues the message, and only the transaction whose UPDATE
  changed the row queues it. Two confirmations racing (the second waits for the first's
  row lock, then finds the column set), a second confirmation, or an unsubscribe and a
  new subscription give no second welcome. A purged person is a new person.
- Through the outbox (:func:`~digest_mailer.inbox.replies.add_reply`, kind ``welcome``):
  sent, DKIM-signed, by :func:`~digest_mailer.inbox.outbox.send_replies` (``requests
  process``, ``requests resolve``, ``subscribers add --welcome``), never twice.
- An event on the subscriber says it was queued (kind ``welcome``).
- ``[newsletter] welcome = false`` sends none.

Imports no send engine: the confirmation page queues the welcome too.
"""

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from typing import Any

import jinja2
from sqlalchemy import update
from sqlalchemy.orm import Session

from digest_mailer.addresses import normalize_address, wire_address
from digest_mailer.archive.store import latest_published
from digest_mailer.composer import one_line, render_template, template_environment
from digest_mailer.config import Config
from digest_mailer.errors import DigestMailerError
from digest_mailer.inbox.classify import Incoming
from digest_mailer.inbox.replies import add_reply, serialize
from digest_mailer.kinds import ReplyKind, SubscriberStatus
from digest_mailer.message import (
    domain_of,
    format_recipient,
    list_unsubscribe,
    make_message_id,
    one_click_allowed,
)
from digest_mailer.models import Subscriber, utcnow
from digest_mailer.subscribers import find_subscriber, record_event
from digest_mailer.tokens import make_token, signing_secret

EVENT = "welcome"  # the kind of the subscriber's event
TEMPLATES = ("welcome.txt.j2", "welcome.html.j2")


@dataclass(frozen=True)
class Welcome:
    """What became of one subscriber's welcome: ``queued`` or not, and ``detail`` saying
    it in one line."""

    address: str
    queued: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"address": self.address, "queued": self.queued, "detail": self.detail}


def queue_welcome(
    session: Session,
    config: Config,
    subscriber: Subscriber,
    *,
    actor: str,
    origin: str,
    now: datetime | None = None,
    secret: bytes | None = None,
    env: jinja2.Environment | None = None,
    incoming: Incoming | None = None,
    dry_run: bool = False,
) -> Welcome:
    """Queue the subscriber's welcome in the caller's transaction unless the switch is
    off, the subscriber is not active, or was welcomed before.

    ``secret`` signs the unsubscribe link (default: ``[newsletter] secret_env``); ``env``
    the templates (default: made here); ``incoming`` the email that confirmed, which the
    welcome answers (``In-Reply-To``). A dry run records the reply without building it.
    A template or config problem raises before anything is written."""
    address = subscriber.email
    if not config.newsletter.welcome:
        return Welcome(address, False, f"no welcome mail to {address}: [newsletter] welcome is off")
    if subscriber.status != SubscriberStatus.ACTIVE:
        return Welcome(address, False, f"no welcome mail to {address}: {subscriber.status}")
    if subscriber.welcomed_at is not None:
        return Welcome(address, False, f"no welcome mail to {address}: welcomed before")
    now = now or utcnow()
    nl = config.newsletter
    subject = one_line(f"Welcome to {nl.title}")
    message_id = make_message_id(domain_of(nl.from_address), "welcome")
    data = None
    if not dry_run:  # built first: a broken template changes nothing
        data = build_welcome(
            session, config, subscriber, subject=subject, message_id=message_id, now=now,
            secret=secret, env=env, incoming=incoming,
        )  # fmt: skip
    # the one place a welcome is claimed: a racing transaction waits for this row's lock,
    # then finds welcomed_at set and changes nothing
    claimed = session.execute(
        update(Subscriber)
        .where(Subscriber.id == subscriber.id, Subscriber.welcomed_at.is_(None))
        .values(welcomed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    session.expire(subscriber, ["welcomed_at"])
    if claimed != 1:
        return Welcome(address, False, f"no welcome mail to {address}: welcomed before")
    add_reply(
        session, kind=ReplyKind.WELCOME, address=address, subject=subject,
        message_id=message_id, data=data, now=now,
    )  # fmt: skip
    record_event(session, subscriber, EVENT, actor, f"welcome mail queued ({origin})")
    return Welcome(address, True, f"welcome mail queued for {address}")


def welcome_confirmed(
    session: Session, config: Config, subscriber: Subscriber, **options: Any
) -> Welcome:
    """:func:`queue_welcome` after a confirmation, which must stand whatever happens to
    the welcome: a template or config problem (a staff template with a typo, the secret
    missing) is recorded as an event on the subscriber instead of raised."""
    try:
        return queue_welcome(session, config, subscriber, **options)
    except DigestMailerError as exc:
        record_event(session, subscriber, EVENT, options["actor"], f"welcome mail not sent: {exc}")
        return Welcome(subscriber.email, False, f"no welcome mail to {subscriber.email}: {exc}")


def welcome_added(
    session: Session,
    config: Config,
    addresses: list[str],
    *,
    actor: str = "cli",
    secret: bytes | None = None,
    now: datetime | None = None,
) -> list[Welcome]:
    """Welcome the addresses staff just added (``subscribers add --welcome``), each that
    ended up active and was never welcomed; what became of each, in order."""
    env = template_environment(config) if config.newsletter.welcome else None
    allow = config.subscribers.allow_test_domains
    outcomes = []
    for address in dict.fromkeys(normalize_address(a, allow_test_domains=allow) for a in addresses):
        subscriber = find_subscriber(session, address)
        if subscriber is None:
            outcomes.append(Welcome(address, False, f"no welcome mail to {address}: not added"))
            continue
        options = {"actor": actor, "origin": "added by staff", "now": now, "secret": secret}
        outcomes.append(queue_welcome(session, config, subscriber, env=env, **options))
    return outcomes


def unsubscribe_link(config: Config, subscriber: Subscriber, secret: bytes | None = None) -> str:
    """The subscriber's own signed link to the unsubscribe page (bound to its
    ``link_salt``, as in every issue), or a mailto to the request address without
    ``public_url``."""
    nl = config.newsletter
    if not nl.public_url:
        return _mailto(config)
    key = secret if secret is not None else signing_secret(config)
    token = make_token(key, "unsubscribe", subscriber.id, subscriber.link_salt)
    return f"{nl.public_url.rstrip('/')}/u/{token}"


def _mailto(config: Config) -> str:
    return f"mailto:{config.newsletter.request_address}?subject=unsubscribe"


def latest_issue(session: Session, config: Config) -> dict[str, str] | None:
    """The newest published issue of the archive for the welcome's link (title, date as
    written, url), or None: none is published, or there is no ``public_url``."""
    base = config.newsletter.public_url.rstrip("/")
    issue = latest_published(session) if base else None
    if issue is None:
        return None
    return {
        "title": issue.title,
        "date": issue.issue_date,
        "url": f"{base}/archive/{issue.issue_id}/",
    }


def render_welcome(
    config: Config,
    address: str,
    unsubscribe_url: str,
    latest: dict[str, str] | None,
    env: jinja2.Environment | None = None,
) -> tuple[str, str]:
    """The welcome's text and HTML from the templates; a problem is one
    :class:`~digest_mailer.errors.TemplateError` line."""
    nl = config.newsletter
    values = {
        "newsletter": nl.title,
        "address": address,
        "request_address": nl.request_address,
        "postal_address": nl.postal_address,
        "language": nl.language,
        "unsubscribe_url": unsubscribe_url,
        "latest_issue": latest,
    }
    env = env if env is not None else template_environment(config)
    text, html = (render_template(env, name, values) for name in TEMPLATES)
    return text, html


def sample_welcome(config: Config) -> tuple[str, str]:
    """The welcome for a sample reader, an archived issue linked (``doctor`` checks the
    templates with it; no store, no secret)."""
    base = config.newsletter.public_url.rstrip("/")
    url = f"{base}/u/SAMPLE-TOKEN" if base else _mailto(config)
    latest = {"title": "Sample issue", "date": "1 January 2026", "url": f"{base}/archive/0.1/"}
    return render_welcome(config, "reader@example.org", url, latest if base else None)


def build_welcome(
    session: Session,
    config: Config,
    subscriber: Subscriber,
    *,
    subject: str,
    message_id: str,
    now: datetime,
    secret: bytes | None = None,
    env: jinja2.Environment | None = None,
    incoming: Incoming | None = None,
) -> bytes:
    """The welcome message: text and HTML, ``List-Id`` and ``List-Unsubscribe`` (with the
    RFC 8058 one-click header beside an https link) like an issue; DKIM-signed when the
    outbox sends it."""
    nl = config.newsletter
    url = unsubscribe_link(config, subscriber, secret)
    latest = latest_issue(session, config)
    text, html = render_welcome(config, subscriber.email, url, latest, env)
    msg = EmailMessage(policy=SMTP)
    from_address = nl.from_address
    if not from_address.isascii():  # the domain as A-labels, as in the envelope
        from_address = wire_address(from_address).text
    msg["From"] = Address(display_name=one_line(nl.from_name), addr_spec=from_address)
    msg["To"] = format_recipient(subscriber.email)  # no name: a request may have made it up
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    if nl.reply_to:
        msg["Reply-To"] = nl.reply_to
    if incoming is not None and incoming.message_id:  # the email that confirmed
        msg["In-Reply-To"] = incoming.message_id
        msg["References"] = one_line(f"{incoming.references} {incoming.message_id}".strip())
    msg["List-Id"] = f"{one_line(nl.title)} <{nl.list_id}>"
    web = url.startswith(("https://", "http://"))
    if web and one_click_allowed(nl.public_url):
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Auto-Submitted"] = "auto-replied" if incoming is not None else "auto-generated"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.set_content(text, charset="utf-8", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    head, _, body = serialize(msg, subscriber.email).partition(b"\r\n\r\n")
    # written as an issue writes it, one address a line (the email package would fold
    # the line after the colon)
    unsubscribe = list_unsubscribe(url if web else "", nl.request_address)
    return b"%s\r\nList-Unsubscribe: %s\r\n\r\n%s" % (head, unsubscribe.encode("ascii"), body)
