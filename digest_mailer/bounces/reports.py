"""Reading delivery and complaint reports: which recipients a report says failed.

Pure: reads one parsed message (:class:`~digest_mailer.inbox.classify.Incoming`) and
imports nothing from the store. What a report does to a subscriber is decided elsewhere
(:mod:`digest_mailer.bounces.process`), and only on proof.

- RFC 3464 delivery status notifications (``multipart/report; report-type=
  delivery-status``, and ``global-delivery-status``) from Postfix, Exim, Sendmail,
  Microsoft, Google…: one failure per per-recipient block whose Action is ``failed`` (or
  ``delayed``, a warning that scores nothing);
- RFC 5965 ARF feedback reports: a complaint, unless its Feedback-Type says it is not one
  (``not-spam``, ``virus``, ``auth-failure``);
- the common plain-text notices (qmail, older Exim and Postfix, old sendmail's "Returned
  mail: see transcript for details", Exchange, "Mail delivery delayed") that name the
  failed address and quote an SMTP code.

Every pattern here is linear: no nested quantifiers, line patterns anchored with
``[ \\t]*`` (never ``\\s*``, which crosses lines), addresses found by
:func:`~digest_mailer.addresses.find_addresses`. A report names at most
:data:`MAX_FAILURES` recipients; the rest are counted, not read.
"""

import base64
import binascii
import email
import email.policy
import email.utils
import quopri
import re
from dataclasses import dataclass, field
from email.message import Message

from digest_mailer.addresses import MAX_ADDRESS, address_key, address_spans
from digest_mailer.inbox.classify import Incoming, OurAddresses, decode_words
from digest_mailer.kinds import BounceKind

# "the destination does not exist": bad mailbox (5.1.1), bad system (5.1.2), bad syntax
# (5.1.3), mailbox moved (5.1.6), null MX / no such recipient (5.1.10)
NO_SUCH_USER = frozenset({"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10"})
COMPLAINT_TYPES = frozenset({"abuse", "fraud", "other", ""})
MAX_FAILURES = 100  # recipients read from one report
MAX_TEXT = 256 * 1024  # characters of a report's text that are read

ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
BASIC = re.compile(r"(?<![\d.])([245]\d\d)(?![\d.])")
MESSAGE_ID = re.compile(r"^[ \t]*Message-I[Dd][ \t]*:[ \t]*(<[^<>\s]{1,250}>)", re.M | re.I)
# where a plain-text notice starts quoting the returned message
RETURNED = re.compile(
    r"^[ \t]*(?:-+[ \t]*)?(?:below this line is a copy of the message"
    r"|this is a copy of the message|original message(?: follows)?"
    r"|returned message|undelivered message"
    r"|--- ?below this line)"
    r"|^(?:Return-Path|Received|Received-SPF|DKIM-Signature):[ \t]",
    re.I | re.M,
)
PERMANENT = re.compile(r"permanent|fatal|does not exist|no such user|user unknown", re.I)
DELAYED = re.compile(
    r"delivery (?:has been |is )?delayed|mail delivery delayed|message delayed|delayed mail"
    r"|delivery status notification \(delay\)|warning: could not send message for past"
    r"|will (?:continue|keep) trying|still trying|retry (?:time|period) not yet"
    r"|has not yet been delivered|delivery attempts will continue|will be retried"
    r"|has been delayed|delayed \d{1,3} hours|warning message only",
    re.I,
)
NO_USER_TEXT = re.compile(
    r"no such user|user unknown|unknown user|does not exist|recipient not found|"
    r"mailbox (?:is )?unavailable|no mailbox|doesn't have an? [\w.-]{1,60} account",
    re.I,
)
# old sendmail: "<ana@corp.test>... User unknown" in the transcript
SENDMAIL_USER_UNKNOWN = re.compile(r"\.\.\.[ \t]*(?:user unknown|no such user)", re.I)


@dataclass(frozen=True)
class Failure:
    """One recipient a report says failed. ``address`` is the address to blame
    (Original-Recipient when given: that is what we sent to; else Final-Recipient)."""

    address: str
    kind: BounceKind
    status: str = ""
    diagnostic: str = ""
    final: str = ""

    @property
    def no_such_user(self) -> bool:
        """The report says the destination does not exist (5.1.1/2/3/6/10, or a 55x
        with "no such user" text)."""
        return self.status in NO_SUCH_USER or bool(
            self.kind == BounceKind.HARD
            and re.fullmatch(r"55\d", self.status)
            and NO_USER_TEXT.search(self.diagnostic)
        )


@dataclass
class Report:
    kind: str  # dsn | arf | plain
    failures: list[Failure]
    original_ids: list[str] = field(default_factory=list)
    searchable: str = ""  # headers and text where a VERP address may appear
    left_out: int = 0  # failures past MAX_FAILURES, not read


# --------------------------------------------------------------------------- reading


def _one_line(value: object) -> str:
    return re.sub(r"\s+", " ", decode_words(str(value or ""))).strip()


def _typed_address(value: object) -> str:
    """``rfc822; user@example.org`` -> ``user@example.org``."""
    text = _one_line(value)
    if ";" in text:
        text = text.split(";", 1)[1]
    text = text.strip().strip("<>").strip()
    return text[:MAX_ADDRESS] if "@" in text else ""


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


def _kind_of(action: str, status: str, diagnostic: str) -> BounceKind:
    if action == "delayed":
        return BounceKind.DELAYED
    first = (status or _code(diagnostic) or "5")[0]
    return BounceKind.SOFT if first == "4" else BounceKind.HARD


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
                    chunks.append(raw[:MAX_TEXT].decode(charset, "replace"))
                except (LookupError, UnicodeError):
                    chunks.append(raw[:MAX_TEXT].decode("utf-8", "replace"))
    return "\n".join(chunks)[:MAX_TEXT]


def read_report(incoming: Incoming, ours: OurAddresses) -> Report:
    """The failed recipients a delivery or complaint report names (at most
    :data:`MAX_FAILURES`)."""
    msg = incoming.message
    original = _original_headers(msg)
    text = _text_of(msg)
    ids = []
    if original is not None and original.get("Message-ID"):
        ids.append(_one_line(original.get("Message-ID"))[:255])
    ids += [m for m in MESSAGE_ID.findall(text) if m not in ids]
    # the whole report as sent (every header and report field) plus the decoded text
    searchable = incoming.raw[:MAX_TEXT].decode("utf-8", "replace") + "\n" + text
    if (msg.get_param("report-type") or "").lower() == "feedback-report":  # type: ignore[union-attr]
        report = Report("arf", _arf_failures(msg, original), ids, searchable)
    elif msg.get_content_type() == "multipart/report" and _has_status_part(msg):
        report = Report("dsn", _dsn_failures(msg), ids, searchable)
    else:
        report = Report("plain", _plain_failures(incoming, ours, text), ids, searchable)
    if len(report.failures) > MAX_FAILURES:
        report.left_out = len(report.failures) - MAX_FAILURES
        del report.failures[MAX_FAILURES:]
    return report


STATUS_PARTS = ("message/delivery-status", "message/global-delivery-status")


def _has_status_part(msg: Message) -> bool:
    return any(p.get_content_type() in STATUS_PARTS for p in msg.walk())


def _dsn_failures(msg: Message) -> list[Failure]:
    failures: list[Failure] = []
    for part in msg.walk():
        if part.get_content_type() not in STATUS_PARTS:
            continue
        blocks = _status_blocks(part)
        for block in (blocks[1:] or blocks)[: MAX_FAILURES + 1]:
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
        address = "" if _redacted(address) else address
    kind = BounceKind.COMPLAINT if feedback in COMPLAINT_TYPES else BounceKind.UNKNOWN
    detail = f"feedback report: {feedback or 'no type given'}"
    agent = _one_line(fields.get("User-Agent")) if fields else ""
    return [Failure(address, kind, "", f"{detail} ({agent})" if agent else detail)]


def _redacted(address: str) -> bool:
    """A feedback loop's stand-in for the recipient: ``redacted@…``, ``xxxxxx@…``."""
    local = address.partition("@")[0].lower()
    return "@" not in address or "redacted" in local or not local.strip("x*#-_.")


def _plain_failures(incoming: Incoming, ours: OurAddresses, text: str) -> list[Failure]:
    """Failed addresses in a plain-text notice: X-Failed-Recipients (Exim) or the
    addresses it names before quoting the returned message, each with the first SMTP
    code after it. A notice that only says delivery is delayed gives ``delayed``."""
    msg = incoming.message
    body = text
    cut = RETURNED.search(body)
    if cut:
        body = body[: cut.start()]
    delayed = bool(DELAYED.search(incoming.subject) or DELAYED.search(body[:4000]))
    skip = {address_key(incoming.sender)}
    for name in ("To", "Delivered-To", "X-Original-To"):
        for value in msg.get_all(name) or []:
            skip.add(address_key(email.utils.parseaddr(str(value))[1]))
    listed = [
        a.strip()[:MAX_ADDRESS]
        for value in msg.get_all("X-Failed-Recipients") or []
        for a in str(value).split(",")[: MAX_FAILURES + 1]
        if "@" in a
    ]
    positions: list[tuple[int, str]] = []
    for _, end, address in address_spans(body, limit=MAX_FAILURES + 1 + len(skip)):
        key = address_key(address)[:MAX_ADDRESS]
        if key in skip or address in ours:
            continue
        positions.append((end, key))
    if listed:
        keys = [address_key(a) for a in listed]
        positions = [p for p in positions if p[1] in keys] or [(0, k) for k in keys]
    failures = []
    for i, (end, key) in enumerate(positions):
        stop = positions[i + 1][0] if i + 1 < len(positions) else len(body)
        after = body[end:stop]
        code = _code(after) or _code(body)
        line = next((ln.strip() for ln in after[:4000].splitlines() if _code(ln)), "")
        if not code and SENDMAIL_USER_UNKNOWN.search(after[:2000]):
            code, line = "5.1.1", line or "User unknown"
        if code:
            kind = BounceKind.SOFT if code[0] == "4" else BounceKind.HARD
        else:
            kind = BounceKind.HARD if PERMANENT.search(body) else BounceKind.SOFT
        if delayed and kind == BounceKind.SOFT:
            kind = BounceKind.DELAYED
        failures.append(Failure(key, kind, code, line[:1000]))
    return failures
