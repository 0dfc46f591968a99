"""Understanding a message sent to the digest address: one label per message.

Labels: ``subscribe``, ``unsubscribe``, ``confirm``, ``bounce``, ``ignore``, ``review``.
Only what the sender wrote counts: quoted lines, the "On … wrote:" block and everything
after it, forwarded and original-message blocks, signatures and legal disclaimers are cut
before the text is read. Automatic mail (RFC 3834 and the usual vendor headers), our own
mail, mailer daemons and mail flagged as spam are ignored; delivery and complaint reports
are bounces; anything unclear goes to staff for review.

This module reads and decides; it changes nothing (see :mod:`digest_mailer.requests`).
"""

import email
import email.errors
import email.policy
import email.utils
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message

import lxml.html

from digest_mailer.subscribers import address_key

CONFIRM_TOKEN = re.compile(r"\[token:\s*([0-9a-f]{32})\s*\]", re.I)
CONFIRM_LINK = re.compile(r"/c/([0-9a-f]{32})\b", re.I)
ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+", re.U)

DAEMONS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "maildaemon"}
NO_REPLY = re.compile(r"^(no-?reply|do-?not-?reply|donotreply|bounces?|notifications?)\b", re.I)
AUTO_SUBJECT = re.compile(
    r"^\s*(automatic reply|auto(matic)?[- ]?reply|auto-?response|auto:|out of (the )?office"
    r"|ooo\b|abwesenheitsnotiz|r[ée]ponse automatique|自動応答|自動返信|不在)",
    re.I,
)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed|incomplete)"
    r"|failure notice|returned mail|mail delivery (failed|failure|system)|could not be delivered"
    r"|delivery problem|non-?delivery",
    re.I,
)
SMTP_CODE = re.compile(r"\b[45]\d\d\b|\b[45]\.\d{1,3}\.\d{1,3}\b")
REPLY_PREFIX = re.compile(
    r"^\s*((re|fwd?|aw|wg|sv|vs|tr|rif|antw|返信|転送)\s*(\[\d+\])?\s*[:：]\s*)+", re.I
)

# --------------------------------------------------------------------------- what people write

UNSUBSCRIBE = [
    r"\bun-?\s?subscrib\w*",
    r"\bremove (me|us|my (e-?mail|address|name|e-?mail address))\b",
    r"\bplease remove\b",
    r"\btake (me|us|my (e-?mail|address|name)) off\b",
    r"\b(stop|quit|cease) (sending|e-?mailing|mailing|receiving|getting)\b",
    r"\bno longer (wish|want|like|need) to (receive|get|be on)\b",
    r"\b(don'?t|do not|dont) (want|wish|need) to (receive|get|be on)\b",
    r"\bopt[- ]?out\b",
    r"\bcancel (my|the|this) subscription\b",
    r"\bend my subscription\b",
    r"\b(delete|drop) me\b",
    r"\b(never|didn'?t|did not) (sign(ed)? up|subscribe[d]?|ask(ed)? for (this|it))\b",
    r"^\s*stop\s*[.!]*\s*$",
    r"配信停止",
    r"配信解除",
    r"購読解除",
    r"購読停止",
    r"登録解除",
    r"配信不要",
    r"退会",
    r"送らないで",
]
SUBSCRIBE = [
    r"\bsubscribe\b",
    r"\bsign (me |us )?up\b",
    r"\badd (me|us)\b",
    r"\bplease add\b",
    r"\badd (my|this|the following) [\w -]{0,30}(e-?mail|address)\b",
    r"\b(like|love|want|wish|hoping|hope) to (receive|get|subscribe|join|be added|be on)\b",
    r"\bput (me|us) on\b",
    r"\binclude (me|us)\b",
    r"\bcount me in\b",
    r"\bjoin (the|your) (mailing )?list\b",
    r"\bsend (me|us) (the|your) (digest|newsletter)\b",
    r"\bkeep me on\b",
    r"登録希望",
    r"配信希望",
    r"購読希望",
    r"(登録|配信|購読)を(希望|お願い)",
    r"(登録|購読)したい",
    r"(登録|購読)して(ください|下さい)",
]
CHANGE_OF_ADDRESS = [
    r"\b(change|update|switch|move|replace)\b[^.\n]{0,40}\b(e-?mail|address)\b",
    r"\bnew (e-?mail|address)\b",
    r"\b(e-?mail|address) (has )?changed\b",
    r"アドレス(の)?変更",
    r"新しいアドレス",
]
OTHER_PERSON = [
    r"\b(my|our) (\w+ )?(colleague|colleagues|coworker|co-worker|friend|friends|team|boss"
    r"|assistant|manager|partner|wife|husband|staff|intern|department|director)\b",
    r"同僚",
    r"友人",
    r"部下",
    r"上司",
]


def _compile(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I | re.M)


_UNSUBSCRIBE = _compile(UNSUBSCRIBE)
_SUBSCRIBE = _compile(SUBSCRIBE)
_CHANGE = _compile(CHANGE_OF_ADDRESS)
_OTHER = _compile(OTHER_PERSON)

# --------------------------------------------------------------------------- quoted text

_SEPARATOR = re.compile(
    r"^\s*(-{2,}\s*(original message|forwarded message|weitergeleitete nachricht"
    r"|message d'origine|転送されたメッセージ|元のメッセージ)\s*-*"
    r"|_{8,}\s*$|begin forwarded message:|forwarded message:)",
    re.I,
)
_ATTRIBUTION_END = re.compile(
    r"(wrote|a écrit|schrieb|escribió|scritto|書きました)\s*[:：]\s*$"
    r"|<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$|のメッセージ\s*[:：]?\s*$",
    re.I,
)
_ATTRIBUTION_START = re.compile(r"^\s*(on|le|am|el|il)\s.{4,}", re.I)
_HEADER_FROM = re.compile(r"^\s*\*?(from|von|de|差出人|送信者)\s*\*?\s*[:：]", re.I)
_HEADER_NEXT = re.compile(
    r"^\s*\*?(sent|date|to|subject|gesendet|envoyé|送信日時|日時|宛先|件名)\s*\*?\s*[:：]", re.I
)
_SIGN_OFF = re.compile(
    r"^\s*(sent from my \w+|get outlook for|sent from (mail|outlook|yahoo)|iphoneから送信"
    r"|android(から|で)送信)",
    re.I,
)
_DISCLAIMER = re.compile(
    r"^\s*(\**\s*)?(confidential(ity)?( notice)?\b|disclaimer\b|this (e-?mail|message)"
    r"( and any (attachments?|files))?( \(including any attachments\))?"
    r" (is|are|may) (confidential|intended|privileged)"
    r"|the information (contained )?in this (e-?mail|message)|if you are not the intended"
    r"|this (e-?mail|message) and any (attachments?|files)|本メールは|このメールは機密)",
    re.I,
)
_FOOTER = re.compile(r"you receive this because you subscribed|forwarded this\? to receive", re.I)


def own_text(body: str) -> str:
    """What the sender wrote: quotes, attributions, forwarded blocks, signatures and
    disclaimers cut away."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith(">"):
            continue
        if _SEPARATOR.match(line) or _FOOTER.search(line) or _SIGN_OFF.match(line):
            break
        if stripped in ("--", "-- ", "—"):
            break
        if _DISCLAIMER.match(line):
            break
        if _ATTRIBUTION_END.search(line):
            # a wrapped "On <date>, <name>\n<address> wrote:" starts on the line before
            if kept and _ATTRIBUTION_START.match(kept[-1]) and not kept[-1].endswith("."):
                kept.pop()
            break
        if _ATTRIBUTION_START.match(line) and i + 1 < len(lines):
            if _ATTRIBUTION_END.search(line + " " + lines[i + 1].strip()):
                break
        if _HEADER_FROM.match(line):
            following = [x for x in lines[i + 1 : i + 5] if x.strip()]
            if following and _HEADER_NEXT.match(following[0]):
                break
        kept.append(line.rstrip())
    return "\n".join(kept).strip()


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    return re.sub(r"[ \t]+", " ", text).lower()


def bare_subject(subject: str) -> str:
    return REPLY_PREFIX.sub("", subject).strip()


# --------------------------------------------------------------------------- reading a message


class Unreadable(Exception):
    """The message cannot be parsed well enough to decide anything."""


@dataclass
class Incoming:
    """A parsed message with what the decision needs.

    Parsed with the ``compat32`` policy and headers decoded here on demand: the modern
    policy models every header it touches and costs several times more per message."""

    key: str
    message_id: str | None
    sender: str
    sender_name: str
    subject: str
    date: datetime | None
    message: Message
    raw: bytes
    references: str = ""


def message_key(message_id: str | None, raw: bytes) -> str:
    if message_id:
        return message_id[:255]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded; raw 8-bit header bytes read as UTF-8."""
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = value.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value


def _header(msg: Message, name: str) -> str:
    """The first ``name`` header, unfolded and decoded, or ''."""
    value = msg.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):  # a Header object for raw 8-bit bytes
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    return re.sub(r"\s+", " ", decode_words(value)).strip()


def _raw_header(msg: Message, name: str) -> str:
    value = msg.get(name)
    return re.sub(r"\s+", " ", value if isinstance(value, str) else "").strip()


def parse(raw: bytes) -> Incoming:
    """Parse a message; :class:`Unreadable` when it is not an email at all."""
    if not raw.strip():
        raise Unreadable("empty message")
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # pragma: no cover - the parser is very lenient
        raise Unreadable(f"cannot parse: {exc}") from None
    if not any(True for _ in msg.raw_items()):
        raise Unreadable("no headers")
    message_id = _raw_header(msg, "Message-ID") or None
    if message_id and not re.fullmatch(r"<?[^<>\s]+>?", message_id):
        message_id = None
    name, address = email.utils.parseaddr(_raw_header(msg, "From"))
    date = None
    try:
        date = email.utils.parsedate_to_datetime(_raw_header(msg, "Date"))
        date = date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError):
        date = None
    return Incoming(
        key=message_key(message_id, raw),
        message_id=message_id,
        sender=address.strip(),
        sender_name=decode_words(name).strip(),
        subject=_header(msg, "Subject"),
        date=date,
        message=msg,
        raw=raw,
        references=_raw_header(msg, "References"),
    )


def _decode(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    if not isinstance(payload, bytes):  # pragma: no cover - multipart has no payload bytes
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:  # an unknown charset name
        return payload.decode("utf-8", "replace")


_BLOCK_TAGS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
_QUOTE_XPATH = (
    "//blockquote | //style | //script | //head | //*[contains(@class, 'gmail_quote')]"
    " | //*[contains(@class, 'moz-cite-prefix')] | //*[contains(@class, 'yahoo_quoted')]"
)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body, quoted blocks dropped, blocks on their own lines."""
    if not html.strip():
        return ""
    try:
        doc = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.ParserError):
        return re.sub(r"<[^>]+>", " ", html)
    for element in doc.xpath(_QUOTE_XPATH):
        parent = element.getparent()
        if parent is not None:
            element.drop_tree()
    for element in doc.iter():
        if not isinstance(element.tag, str):
            continue
        if element.tag == "br":
            element.tail = "\n" + (element.tail or "")
        elif element.tag in _BLOCK_TAGS:
            element.tail = "\n" + (element.tail or "")
    text = doc.text_content()
    return re.sub(r"\n\s*\n+", "\n\n", text.replace("\xa0", " "))


class Undecodable(Exception):
    """The body's transfer encoding is broken: what it says cannot be known."""


_BROKEN = (
    email.errors.InvalidBase64CharactersDefect,
    email.errors.InvalidBase64LengthDefect,
    email.errors.InvalidBase64PaddingDefect,
)


def _text_parts(part: Message) -> Iterator[Message]:
    """Text parts in order, not descending into attachments or attached messages."""
    if part.is_multipart():
        if part.get_content_maintype() == "multipart":
            for sub in part.get_payload():
                yield from _text_parts(sub)
        return
    if (part.get("Content-Disposition") or "").lower().startswith("attachment"):
        return
    if part.get_content_type() in ("text/plain", "text/html"):
        yield part


def body_text(msg: Message) -> str:
    """The message's text: text/plain preferred, an HTML-only body converted.
    :class:`Undecodable` when its encoding is broken."""
    parts = list(_text_parts(msg))
    part = next((p for p in parts if p.get_content_subtype() == "plain"), None)
    part = part or (parts[0] if parts else None)
    if part is None:
        return ""
    text = _decode(part)
    broken = [type(d).__name__ for d in part.defects if isinstance(d, _BROKEN)]
    if broken:
        raise Undecodable(f"the body cannot be decoded ({', '.join(broken)})")
    if part.get_content_subtype() == "html":
        text = html_to_text(text)
    return text


def _readable(msg: Message) -> str:
    try:
        return body_text(msg)
    except Undecodable:
        return ""


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Verdict:
    label: str
    reason: str
    target: str | None = None  # the address to act on; the token for ``confirm``
    own: str = ""  # what the sender wrote


@dataclass(frozen=True)
class OurAddresses:
    """The addresses the tool itself sends from, so its own mail is never a request."""

    keys: frozenset[str]

    @classmethod
    def of(cls, *addresses: str) -> "OurAddresses":
        return cls(frozenset(address_key(a) for a in addresses if a))

    def __contains__(self, address: str) -> bool:
        key = address_key(address)
        if key in self.keys:
            return True
        local, _, domain = key.partition("@")
        if "+" in local:  # VERP return paths: bounces+TOKEN@domain
            return f"{local.partition('+')[0]}@{domain}" in self.keys
        return False


def report_type(msg: Message) -> str | None:
    """``delivery-status`` or ``feedback-report`` for a multipart/report anywhere on top."""
    if msg.get_content_type() == "multipart/report":
        return (msg.get_param("report-type") or "").lower() or "unknown"  # type: ignore[union-attr]
    return None


def automatic(msg: Message, subject: str) -> str | None:
    """Why this message was sent by a program, or None (RFC 3834 and common practice)."""
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"automatic reply (Auto-Submitted: {auto})"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Autoresponder"):
        if _header(msg, name):
            return f"automatic reply ({name} header)"
    precedence = _header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return f"automatic or bulk mail (Precedence: {precedence})"
    if _header(msg, "List-Id") or _header(msg, "List-Unsubscribe"):
        return "sent by a mailing list (List-Id)"
    if AUTO_SUBJECT.match(subject):
        return f"automatic reply (subject {subject[:60]!r})"
    if _header(msg, "Return-Path") == "<>":
        return "automatic mail (null return path)"
    return None


def spam(msg: Message) -> str | None:
    if _header(msg, "X-Spam-Flag").lower().startswith("yes"):
        return "flagged as spam (X-Spam-Flag)"
    if _header(msg, "X-Spam-Status").lower().startswith("yes"):
        return "flagged as spam (X-Spam-Status)"
    score = re.match(r"\s*(-?\d+(\.\d+)?)", _header(msg, "X-Spam-Score"))
    if score and float(score.group(1)) >= 5.0:
        return f"flagged as spam (X-Spam-Score {score.group(1)})"
    return None


def _named_addresses(text: str, sender: str, ours: OurAddresses) -> list[str]:
    found: dict[str, str] = {}
    for match in ADDRESS.finditer(text):
        address = match.group(0).strip(".'")
        key = address_key(address)
        if key != address_key(sender) and address not in ours:
            found.setdefault(key, address)
    return list(found.values())


def _spans_removed(pattern: re.Pattern[str], text: str) -> tuple[bool, str]:
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        found = True
        return " " * len(match.group(0))

    rest = pattern.sub(blank, text)
    return found, rest


def decide(incoming: Incoming, ours: OurAddresses) -> Verdict:
    """One label for one message, with a short reason."""
    msg, subject = incoming.message, incoming.subject
    kind = report_type(msg)
    if kind in ("delivery-status", "global-delivery-status"):
        return Verdict("bounce", "delivery status report (RFC 3464)")
    if kind == "feedback-report":
        return Verdict("bounce", "complaint report (ARF, RFC 5965)")
    local = address_key(incoming.sender).partition("@")[0]
    if local in DAEMONS or not incoming.sender:
        if BOUNCE_SUBJECT.search(subject) and SMTP_CODE.search(_readable(msg)):
            return Verdict("bounce", "plain-text delivery failure report")
        if local in DAEMONS:
            return Verdict("ignore", f"from {local}, not a delivery report")
    if incoming.sender and incoming.sender in ours:
        return Verdict("ignore", "sent from our own address")
    if NO_REPLY.match(local):
        return Verdict("ignore", "sent from a no-reply address")
    why = automatic(msg, subject) or spam(msg)
    if why:
        return Verdict("ignore", why)
    if not incoming.sender or "@" not in incoming.sender:
        return Verdict("review", "no sender address")

    try:
        body = body_text(msg)
    except Undecodable as exc:
        return Verdict("review", str(exc))
    own = own_text(body)
    text = normalize(bare_subject(subject) + "\n" + own)
    wants_out, rest = _spans_removed(_UNSUBSCRIBE, text)
    wants_in = bool(_SUBSCRIBE.search(rest))

    token = CONFIRM_TOKEN.search(subject) or CONFIRM_TOKEN.search(body)
    token = token or CONFIRM_LINK.search(body)
    if token and not wants_out:
        return Verdict("confirm", "carries a confirmation token", token.group(1).lower(), own)

    if _CHANGE.search(text):
        return Verdict("review", "asks to change an address", None, own)
    if wants_in and wants_out:
        return Verdict("review", "asks both to subscribe and to unsubscribe", None, own)
    if not wants_in and not wants_out:
        if not own.strip() and not bare_subject(subject):
            return Verdict("review", "nothing written", None, own)
        if "?" in own:
            return Verdict("review", "a question, no subscription request", None, own)
        return Verdict("review", "no subscribe or unsubscribe request found", None, own)
    named = _named_addresses(own, incoming.sender, ours)
    if len(named) > 1:
        return Verdict("review", f"names {len(named)} addresses", None, own)
    other = _OTHER.search(text)
    if wants_out:
        if named:
            return Verdict("review", f"asks to remove another address ({named[0]})", None, own)
        if other:
            return Verdict("review", f"asks to remove someone else ({other.group(0)})", None, own)
        return Verdict("unsubscribe", "asks to unsubscribe", incoming.sender, own)
    if named:
        return Verdict("subscribe", f"asks to add {named[0]}", named[0], own)
    if other:
        return Verdict(
            "review", f"asks to add someone else ({other.group(0)}) but names no address", None, own
        )
    return Verdict("subscribe", "asks to subscribe", incoming.sender, own)
