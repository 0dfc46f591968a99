"""Bounces and complaints: delivery reports turned into subscriber status.

A report is read (:func:`read_report`) into the recipients it says failed:

- RFC 3464 delivery status notifications (``multipart/report; report-type=
  delivery-status``) from Postfix, Exim, Sendmail, Microsoft, Google…: one failure per
  per-recipient block whose Action is ``failed`` (or ``delayed``, a warning that scores
  nothing);
- RFC 5965 ARF feedback reports (``report-type=feedback-report``): a complaint, which
  makes the subscriber ``complained``, unless its Feedback-Type says it is not one
  (``not-spam``, ``virus``, ``auth-failure``);
- the common plain-text failure notices (qmail, older Exim and Postfix, Exchange) that
  name the failed address and quote an SMTP code.

Each failure is matched to a delivery by, in order: the VERP token in our return path
(``bounces+TOKEN@domain``, HMAC-signed, so it cannot be forged or mistyped), the
Message-ID of the original message (attached or quoted), then the Original-Recipient or
Final-Recipient address. It is recorded once (:class:`~digest_mailer.models.Bounce`,
unique per report and address, so reading the same report again changes nothing) and
scored like Mailman does: a hard bounce adds ``hard_weight`` (1.0), a soft one
``soft_weight`` (0.5), at most one bounce's worth per subscriber per day; at
``bounce_threshold`` (3.0, or ``no_such_user_threshold``, 1.0, for 5.1.1 "no such user")
the subscriber becomes ``bounced``; the score starts again after ``bounce_reset_days``
without a bounce. Every change is an event.

A permanent refusal of the recipient at send time (5xx to RCPT, or a 5.1.x/5.2.x
refusal after the message) is recorded by the sender in the same commit as the outcome
and scored here (:func:`score_pending`).
"""

import base64
import binascii
import dataclasses
import email
import email.policy
import email.utils
import quopri
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import Message
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from digest_mailer.classify import (
    ADDRESS,
    Incoming,
    OurAddresses,
    Unreadable,
    decide,
    decode_words,
    parse,
)
from digest_mailer.config import Config
from digest_mailer.db import Store
from digest_mailer.inbox import MessageSource, process_in_chunks
from digest_mailer.models import Bounce, Delivery, Subscriber, utcnow
from digest_mailer.subscribers import address_key, find_subscriber, record_event, set_status
from digest_mailer.tokens import signing_secret, verp_deliveries
from digest_mailer.transport import Outcome

ACTOR = "bounces"
NO_SUCH_USER = frozenset({"5.1.1", "5.1.10"})
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "other", ""})
SCORED_STATUSES = ("active", "pending")
DATE_WINDOW = timedelta(days=60)  # a report's Date older than this (or in the future): now

ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")
MESSAGE_ID = re.compile(r"^\s*Message-I[Dd]\s*:\s*(<[^<>\s]+>)", re.M | re.I)
# where a plain-text notice starts quoting the returned message
RETURNED = re.compile(
    r"^\s*(-+\s*)?(below this line is a copy of the message|this is a copy of the message"
    r"|original message( follows)?|the original message was received|returned message"
    r"|undelivered message|--- ?below this line)|^(Return-Path|Received|Received-SPF|"
    r"DKIM-Signature):\s",
    re.I | re.M,
)
PERMANENT = re.compile(r"permanent|fatal|does not exist|no such user|user unknown", re.I)
NO_USER_TEXT = re.compile(
    r"no such user|user unknown|unknown user|does not exist|recipient not found|"
    r"mailbox (is )?unavailable|no mailbox|doesn't have an? [\w.-]+ account",
    re.I,
)


@dataclass(frozen=True)
class Failure:
    """One recipient a report says failed. ``address`` is the address to blame
    (Original-Recipient when given: that is what we sent to; else Final-Recipient)."""

    address: str
    kind: str  # hard | soft | delayed | complaint | unknown
    status: str = ""
    diagnostic: str = ""
    final: str = ""


@dataclass
class Report:
    kind: str  # dsn | arf | plain
    failures: list[Failure]
    original_ids: list[str] = field(default_factory=list)
    searchable: str = ""  # headers and text where a VERP address may appear


@dataclass
class BounceResult:
    message_id: str | None
    address: str | None
    kind: str | None
    status: str
    action: str

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- reading


def _one_line(value: object) -> str:
    return re.sub(r"\s+", " ", decode_words(str(value or ""))).strip()


def _typed_address(value: object) -> str:
    """``rfc822; user@example.org`` -> ``user@example.org``."""
    text = _one_line(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    text = text.strip().strip("<>").strip()
    return text if "@" in text else ""


def _status_blocks(part: Message) -> list[Message]:
    """The field groups of a message/delivery-status or message/feedback-report part
    (parsed by the email package, or from the decoded text when the part is encoded or
    of a type the package does not parse)."""
    payload = part.get_payload()
    encoding = (part.get("Content-Transfer-Encoding") or "").strip().lower()
    encoded = encoding in ("base64", "quoted-printable")
    if isinstance(payload, list) and not encoded:
        if part.get_content_type() == "message/delivery-status":
            return payload  # the email package parsed the groups
        # other message/* types are parsed as one message: its fields, then a body
        text = "\n\n".join(b.as_string() for b in payload)
    elif isinstance(payload, list):  # encoded text taken apart as if it were fields
        data = "".join(str(b.get_payload()) for b in payload).encode("ascii", "replace")
        decode = base64.b64decode if encoding == "base64" else quopri.decodestring
        try:
            raw = decode(data)
        except binascii.Error:  # a broken report: no fields to read
            return []
        text = raw.decode("utf-8", "replace")
    else:
        decoded = part.get_payload(decode=True)
        text = decoded.decode("utf-8", "replace") if isinstance(decoded, bytes) else str(payload)
    return [
        email.message_from_string(block.strip() + "\n", policy=email.policy.compat32)
        for block in re.split(r"\r?\n[ \t]*\r?\n", text)
        if block.strip()
    ]


def _kind_of(action: str, status: str, diagnostic: str) -> str:
    if action == "delayed":
        return "delayed"
    first = (status or _code(diagnostic) or "5")[0]
    return "soft" if first == "4" else "hard"


def _code(text: str) -> str:
    """The enhanced status code (5.1.1) in ``text``, else the basic one (550), else ''."""
    enhanced = ENHANCED.search(text)
    if enhanced:
        return enhanced.group(0)
    basic = BASIC.search(text)
    return basic.group(1) if basic else ""


def _original_headers(msg: Message) -> Message | None:
    for part in msg.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload:
                return payload[0]
        if kind in ("text/rfc822-headers", "message/rfc822-headers"):
            raw = part.get_payload(decode=True)
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""
            return email.message_from_string(text, policy=email.policy.compat32)
    return None


def _text_of(msg: Message) -> str:
    """Every text part of the report, attached original included (decoded)."""
    chunks = []
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    chunks.append(raw.decode(charset, "replace"))
                except LookupError:
                    chunks.append(raw.decode("utf-8", "replace"))
    return "\n".join(chunks)


def read_report(incoming: Incoming, ours: OurAddresses) -> Report:
    """The failed recipients a delivery or complaint report names."""
    msg = incoming.message
    original = _original_headers(msg)
    text = _text_of(msg)
    ids = []
    if original is not None and original.get("Message-ID"):
        ids.append(_one_line(original.get("Message-ID")))
    ids += [m for m in MESSAGE_ID.findall(text) if m not in ids]
    # the whole report as sent (every header and report field) plus the decoded text
    searchable = incoming.raw.decode("utf-8", "replace") + "\n" + text
    if (msg.get_param("report-type") or "").lower() == "feedback-report":  # type: ignore[union-attr]
        return Report("arf", _arf_failures(msg, original), ids, searchable)
    failures = _dsn_failures(msg) if msg.get_content_type() == "multipart/report" else []
    if failures or msg.get_content_type() == "multipart/report" and _has_status_part(msg):
        return Report("dsn", failures, ids, searchable)
    return Report("plain", _plain_failures(incoming, ours, text), ids, searchable)


STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")


def _has_status_part(msg: Message) -> bool:
    return any(p.get_content_type() in STATUS_PARTS for p in msg.walk())


def _dsn_failures(msg: Message) -> list[Failure]:
    failures: list[Failure] = []
    for part in msg.walk():
        if part.get_content_type() not in STATUS_PARTS:
            continue
        for block in _status_blocks(part)[1:] or _status_blocks(part):
            final = _typed_address(block.get("Final-Recipient"))
            original = _typed_address(block.get("Original-Recipient"))
            action = _one_line(block.get("Action")).lower()
            if not (final or original) or action in ("delivered", "relayed", "expanded"):
                continue
            diagnostic = _one_line(block.get("Diagnostic-Code"))
            if ";" in diagnostic[:12]:
                diagnostic = diagnostic.split(";", 1)[1].strip()
            status = ENHANCED.search(_one_line(block.get("Status")))
            detail = ENHANCED.search(diagnostic)
            code = status.group(0) if status else _code(diagnostic)
            if status and detail and code.endswith(".0.0") and detail.group(1) == code[0]:
                code = detail.group(0)  # Exim says 5.0.0 and quotes the server's 5.1.1
            failures.append(
                Failure(
                    original or final,
                    _kind_of(action, code, diagnostic),
                    code,
                    diagnostic[:1000],
                    final,
                )
            )
        break
    return failures


def _arf_failures(msg: Message, original: Message | None) -> list[Failure]:
    fields: Message | None = None
    for part in msg.walk():
        if part.get_content_type() == "message/feedback-report":
            blocks = _status_blocks(part)
            fields = blocks[0] if blocks else None
            break
    feedback = _one_line(fields.get("Feedback-Type") if fields else "").lower()
    address = _typed_address(fields.get("Original-Rcpt-To")) if fields else ""
    address = address or (_typed_address(fields.get("Removal-Recipient")) if fields else "")
    if not address and original is not None:
        address = email.utils.parseaddr(_one_line(original.get("To")))[1]
        address = address if "@" in address and "redacted" not in address.lower() else ""
    kind = "complaint" if feedback in COMPLAINT_TYPES else "unknown"
    detail = f"feedback report: {feedback or 'no type given'}"
    agent = _one_line(fields.get("User-Agent")) if fields else ""
    return [Failure(address, kind, "", f"{detail} ({agent})" if agent else detail)]


def _plain_failures(incoming: Incoming, ours: OurAddresses, text: str) -> list[Failure]:
    """Failed addresses in a plain-text notice: X-Failed-Recipients (Exim) or the
    addresses it names before quoting the returned message, each with the first SMTP
    code after it."""
    msg = incoming.message
    body = text
    cut = RETURNED.search(body)
    if cut:
        body = body[: cut.start()]
    skip = {address_key(incoming.sender)}
    for name in ("To", "Delivered-To", "X-Original-To"):
        for value in msg.get_all(name) or []:
            skip.add(address_key(email.utils.parseaddr(str(value))[1]))
    listed = [
        a.strip()
        for value in msg.get_all("X-Failed-Recipients") or []
        for a in str(value).split(",")
        if "@" in a
    ]
    positions: list[tuple[int, str]] = []
    for match in ADDRESS.finditer(body):
        address = match.group(0).strip(".'")
        key = address_key(address)
        if key in skip or address in ours or any(p[1] == key for p in positions):
            continue
        positions.append((match.end(), key))
    if listed:
        keys = [address_key(a) for a in listed]
        positions = [p for p in positions if p[1] in keys] or [(0, k) for k in keys]
    failures = []
    for i, (end, key) in enumerate(positions):
        stop = positions[i + 1][0] if i + 1 < len(positions) else len(body)
        after = body[end:stop]
        code = _code(after) or _code(body)
        line = next((ln.strip() for ln in after.splitlines() if _code(ln)), "")
        if code:
            kind = "soft" if code[0] == "4" else "hard"
        else:
            kind = "hard" if PERMANENT.search(body) else "soft"
        failures.append(Failure(key, kind, code, line[:1000]))
    return failures


# --------------------------------------------------------------------------- matching


class BounceContext:
    """What handling a report needs besides the session: config, our addresses, the
    VERP secret (when ``bounce_address`` is set) and the time."""

    def __init__(self, config: Config, *, now: datetime | None = None) -> None:
        nl = config.newsletter
        self.config = config
        self.now = now or utcnow()
        self.ours = OurAddresses.of(
            nl.from_address, nl.request_address, nl.reply_to, nl.bounce_address
        )
        self._secret: bytes | None = None
        self.seen: set[tuple[str, str]] = set()  # (report key, address) this run

    def verp_ids(self, text: str) -> list[int]:
        """Deliveries named by valid VERP addresses in ``text``. The secret is read on
        first use: reading reports needs it only when VERP is on (``bounce_address``)."""
        bounce = self.config.newsletter.bounce_address
        if not bounce:
            return []
        if self._secret is None:
            self._secret = signing_secret(self.config)
        return verp_deliveries(self._secret, bounce, text)


def _match(
    session: Session, ctx: BounceContext, report: Report, failure: Failure, single: bool
) -> tuple[Delivery | None, Subscriber | None, str]:
    wanted = {address_key(a) for a in (failure.address, failure.final) if a}

    def pick(candidates: Sequence[Delivery]) -> Delivery | None:
        by_address = [d for d in candidates if address_key(d.address) in wanted]
        if by_address:
            return by_address[0]
        return candidates[0] if len(candidates) == 1 and single else None

    for how, candidates in (
        ("verp", _by_ids(session, ctx.verp_ids(report.searchable))),
        ("message-id", _by_message_ids(session, report.original_ids)),
    ):
        delivery = pick(candidates)
        if delivery is not None:
            subscriber = (
                session.get(Subscriber, delivery.subscriber_id) if delivery.subscriber_id else None
            )
            return delivery, subscriber, how
    for address in (failure.address, failure.final):
        subscriber = find_subscriber(session, address) if address else None
        if subscriber is not None:
            delivery = session.scalars(
                select(Delivery)
                .where(Delivery.subscriber_id == subscriber.id)
                .order_by(Delivery.id.desc())
                .limit(1)
            ).first()
            return delivery, subscriber, "address"
    return None, None, ""


def _by_ids(session: Session, ids: list[int]) -> Sequence[Delivery]:
    if not ids:
        return []
    return session.scalars(select(Delivery).where(Delivery.id.in_(ids)).order_by(Delivery.id)).all()


def _by_message_ids(session: Session, ids: list[str]) -> Sequence[Delivery]:
    keys = {f"<{i.strip().strip('<>')}>" for i in ids if i.strip("<> ")}
    if not keys:
        return []
    return session.scalars(
        select(Delivery).where(Delivery.message_id.in_(keys)).order_by(Delivery.id)
    ).all()


# --------------------------------------------------------------------------- recording


def handle_report(session: Session, ctx: BounceContext, incoming: Incoming) -> list[BounceResult]:
    """Record and score every failure of one report that :func:`decide` called a
    bounce. Reading the same report again changes nothing."""
    report = read_report(incoming, ctx.ours)
    if not report.failures:
        return [BounceResult(incoming.message_id, None, None, "", "none: no failed recipient")]
    occurred = ctx.now
    if incoming.date and ctx.now - DATE_WINDOW <= incoming.date <= ctx.now + timedelta(hours=1):
        occurred = min(incoming.date, ctx.now)
    results = []
    single = len(report.failures) == 1
    for failure in report.failures:
        delivery, subscriber, how = _match(session, ctx, report, failure, single)
        address = subscriber.email if subscriber is not None else failure.address
        key = (incoming.key, address_key(address))
        if key in ctx.seen or session.scalar(
            select(Bounce.id).where(Bounce.report_key == key[0], Bounce.address == key[1])
        ):
            results.append(
                BounceResult(
                    incoming.message_id,
                    address,
                    failure.kind,
                    failure.status,
                    "none: already processed",
                )
            )
            continue
        ctx.seen.add(key)
        bounce = Bounce(
            report_key=incoming.key,
            report_message_id=incoming.message_id,
            address=key[1],
            subscriber_id=subscriber.id if subscriber is not None else None,
            delivery_id=delivery.id if delivery is not None else None,
            kind=failure.kind,
            status=failure.status,
            diagnostic=failure.diagnostic,
            matched_by=how,
            score_added=0.0,
            action="",
            occurred_at=occurred,
            created_at=ctx.now,
        )
        session.add(bounce)
        apply_bounce(session, ctx.config, bounce, subscriber, report_id=incoming.message_id)
        results.append(
            BounceResult(incoming.message_id, address, failure.kind, failure.status, bounce.action)
        )
    return results


def apply_bounce(
    session: Session,
    config: Config,
    bounce: Bounce,
    subscriber: Subscriber | None,
    *,
    report_id: str | None = None,
) -> None:
    """Score one recorded bounce against its subscriber; sets ``bounce.action``."""
    where = f"report {report_id}" if report_id else "the send log"
    if subscriber is None:
        bounce.action = "none: no subscriber has this address"
        return
    if bounce.kind == "complaint":
        if set_status(
            session,
            subscriber,
            "complained",
            actor=ACTOR,
            detail=f"complaint ({bounce.diagnostic}) in {where}",
        ):
            bounce.action = "complained"
        else:
            bounce.action = "none: already complained"
        return
    if bounce.kind not in ("hard", "soft"):
        bounce.action = f"noted: {bounce.kind}, not scored"
        return
    if subscriber.status not in SCORED_STATUSES:
        bounce.action = f"noted: the subscriber is {subscriber.status}"
        return
    rules = config.bounces
    at = bounce.occurred_at
    last = subscriber.last_bounce_at
    if (
        last is not None
        and subscriber.bounce_score
        and at - last > timedelta(days=rules.bounce_reset_days)
    ):
        record_event(
            session,
            subscriber,
            "bounce-score",
            ACTOR,
            f"bounce score {subscriber.bounce_score:g} reset: no bounce for more than "
            f"{rules.bounce_reset_days} days",
        )
        subscriber.bounce_score = 0.0
    weight = rules.hard_weight if bounce.kind == "hard" else rules.soft_weight
    day = datetime(at.year, at.month, at.day, tzinfo=UTC)
    counted_today = session.scalar(
        select(func.coalesce(func.sum(Bounce.score_added), 0.0)).where(
            Bounce.subscriber_id == subscriber.id,
            Bounce.occurred_at >= day,
            Bounce.occurred_at < day + timedelta(days=1),
        )
    )
    added = max(0.0, weight - float(counted_today or 0.0))
    old = subscriber.bounce_score
    if added:
        subscriber.bounce_score = old + added
        bounce.score_added = added
        record_event(
            session,
            subscriber,
            "bounce",
            ACTOR,
            f"{bounce.kind} bounce {bounce.status or '(no code)'} in {where}: "
            f"score {old:g} -> {subscriber.bounce_score:g}",
        )
    if last is None or at > last:
        subscriber.last_bounce_at = at
    no_such_user = bounce.status in NO_SUCH_USER or bool(
        bounce.kind == "hard"
        and re.fullmatch(r"55\d", bounce.status)
        and NO_USER_TEXT.search(bounce.diagnostic)
    )
    threshold = rules.no_such_user_threshold if no_such_user else rules.bounce_threshold
    if subscriber.bounce_score >= threshold:
        set_status(
            session,
            subscriber,
            "bounced",
            actor=ACTOR,
            detail=f"bounce score {subscriber.bounce_score:g} reached {threshold:g} "
            f"({bounce.kind} bounce {bounce.status or 'without a code'})",
        )
        bounce.action = "bounced"
    elif added:
        bounce.action = f"scored: {subscriber.bounce_score:g} of {threshold:g}"
    else:
        bounce.action = "noted: counted once today already"


# --------------------------------------------------------------------------- send-time refusals


def is_recipient_refusal(outcome: Outcome) -> bool:
    """A permanent failure that blames the recipient: 5xx to RCPT TO, or a refusal after
    the message whose enhanced code says the mailbox (5.1.x, 5.2.x) is the problem."""
    if outcome.kind != "failed" or outcome.code is None or outcome.code < 500:
        return False
    if outcome.stage == "rcpt":
        return True
    enhanced = ENHANCED.search(outcome.message or "")
    return outcome.stage == "end" and bool(enhanced) and enhanced.group(2) in ("1", "2")


def refusal_status(outcome: Outcome) -> str:
    enhanced = ENHANCED.search(outcome.message or "")
    return enhanced.group(0) if enhanced else str(outcome.code or "")


def score_pending(session: Session, config: Config) -> int:
    """Score the bounces recorded but not yet scored (refusals at send time)."""
    pending = session.scalars(select(Bounce).where(Bounce.action == "").order_by(Bounce.id)).all()
    for bounce in pending:
        subscriber = session.get(Subscriber, bounce.subscriber_id) if bounce.subscriber_id else None
        apply_bounce(session, config, bounce, subscriber)
    return len(pending)


# --------------------------------------------------------------------------- the mailbox run


def handle_bounce_message(session: Session, ctx: BounceContext, raw: bytes) -> list[BounceResult]:
    """One message from the bounce mailbox: a report is recorded, anything else (an
    auto-reply, a person writing back) is ignored."""
    try:
        incoming = parse(raw)
    except Unreadable as exc:
        return [BounceResult(None, None, None, "", f"ignored: {exc}")]
    verdict = decide(incoming, ctx.ours)
    if verdict.label != "bounce":
        return [
            BounceResult(
                incoming.message_id, None, None, "", f"ignored: not a report ({verdict.reason})"
            )
        ]
    return handle_report(session, ctx, incoming)


def process_bounces(
    store: Store,
    config: Config,
    source: MessageSource,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[BounceResult]:
    """Read every message from ``source`` and record the reports (see
    :func:`~digest_mailer.inbox.process_in_chunks` for commits and crashes)."""
    ctx = BounceContext(config, now=now)
    if not dry_run:
        with store.Session.begin() as session:
            score_pending(session, config)
    return process_in_chunks(
        store,
        source,
        lambda session, raw: handle_bounce_message(session, ctx, raw),
        dry_run=dry_run,
    )


# --------------------------------------------------------------------------- reports


def list_bounces(session: Session, since: datetime | None = None) -> Iterable[dict[str, Any]]:
    query = (
        select(Bounce, Delivery.issue_id)
        .outerjoin(Delivery, Delivery.id == Bounce.delivery_id)
        .order_by(Bounce.occurred_at, Bounce.id)
    )
    if since is not None:
        query = query.where(Bounce.occurred_at >= since)
    for bounce, issue_id in session.execute(query):
        yield {
            "time": bounce.occurred_at.isoformat(),
            "address": bounce.address,
            "kind": bounce.kind,
            "status": bounce.status,
            "issue": issue_id,
            "matched_by": bounce.matched_by,
            "action": bounce.action,
            "diagnostic": bounce.diagnostic,
            "report": bounce.report_message_id or bounce.report_key,
        }


def issue_bounce_counts(session: Session, issue_id: str) -> dict[str, int]:
    """Subscribers of one issue whose delivery bounced (hard or soft), or who complained."""
    counts = {"bounced": 0, "complained": 0}
    for kinds, name in ((("hard", "soft"), "bounced"), (("complaint",), "complained")):
        counts[name] = (
            session.scalar(
                select(func.count(func.distinct(Bounce.address)))
                .join(Delivery, Delivery.id == Bounce.delivery_id)
                .where(Delivery.issue_id == issue_id, Bounce.kind.in_(kinds))
            )
            or 0
        )
    return counts
