"""Reading a message sent to the digest address: headers, bodies, charsets.

:func:`parse` turns the bytes into an :class:`Incoming` (sender, subject, date, the
parsed message); :func:`body_text` gives the text a person reads, text/plain preferred
and an HTML-only body converted (:func:`html_to_text`), each part in its declared
charset or that charset's usual superset (:func:`decode_bytes`).

Pure, like the rest of the classifier (:mod:`digest_mailer.inbox.classify`): nothing
from the store. Every bound is a constant below: a hostile message cannot make reading
it slow or deep.
"""

import email
import email.errors
import email.parser
import email.policy
import email.utils
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message

import lxml.etree
import lxml.html

MAX_BODY = 1 << 20  # characters of a body that are cut into own text
MAX_LINE = 1000  # longer lines are never quote markers, attributions or headers
MAX_HTML = 2 << 20  # bytes of HTML handed to the HTML parser
MAX_BOUNDARIES = 100  # multipart parts with a boundary of their own: more is an attack
HEADER_PEEK = 256 * 1024  # bytes read for the headers of a message too large to parse


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
    too_large: bool = False


def message_key(message_id: str | None, raw: bytes) -> str:
    if message_id and len(message_id) <= 255:
        return message_id
    return "sha256:" + hashlib.sha256(raw).hexdigest()


MAX_HEADER = 8192  # characters of one header that are read


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded (each in its charset's usual superset); raw 8-bit
    header bytes read as UTF-8. At most :data:`MAX_HEADER` characters."""
    value = value[:MAX_HEADER].replace("\x00", "")  # PostgreSQL text cannot hold NUL
    if any("\udc80" <= ch <= "\udcff" for ch in value):
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    if "=?" not in value:
        return value
    try:
        parts = decode_header(value)
    except (LookupError, UnicodeError, ValueError, email.errors.HeaderParseError):
        return value
    return "".join(
        chunk if isinstance(chunk, str) else decode_bytes(chunk, charset or "utf-8")
        for chunk, charset in parts
    )


def first_header(msg: Message, name: str) -> str:
    """The first ``name`` header, unfolded and decoded, or ''."""
    value = msg.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):  # a Header object for raw 8-bit bytes
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    return re.sub(r"\s+", " ", decode_words(str(value))).strip()


def _sender_of(msg: Message) -> tuple[str, str]:
    """(display name, address) of the one sender, or ('', '') when the From header is
    missing, repeated, or names more than one mailbox: a request must come from one
    address. The address in angle brackets wins over anything address-like before it."""
    if len(msg.get_all("From") or []) != 1:
        return "", ""
    value = _unicode_header(msg, "From")
    outside = re.sub(r'"[^"]{0,500}"', '""', value)  # quoted display names
    if outside.count("<") > 1 or outside.count(",") > 0 and "<" not in outside:
        return "", ""
    if outside.count("<") == 1 and outside.count(">") == 1:
        address = value[value.rindex("<") + 1 : value.rindex(">")].strip()
        name = value[: value.rindex("<")].strip().strip('"').strip()
        return name, address if address.count("@") == 1 else ""
    try:
        name, address = email.utils.parseaddr(value)
    except (RecursionError, ValueError, IndexError):
        return "", ""
    return name, address if address.count("@") == 1 else ""


def _unicode_header(msg: Message, name: str) -> str:
    """The first ``name`` header as written, unfolded, raw 8-bit bytes read as UTF-8 (RFC
    6532 internationalised addresses), RFC 2047 words left encoded."""
    value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), "")
    value = str(value)[:MAX_HEADER]
    if not value.isascii():
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return re.sub(r"\s+", " ", value.replace("\x00", "")).strip()


def _raw_header(msg: Message, name: str) -> str:
    value = msg.get(name)
    value = value[:MAX_HEADER].replace("\x00", "") if isinstance(value, str) else ""
    return re.sub(r"\s+", " ", value).strip()


def parse(raw: bytes, *, max_bytes: int | None = None) -> Incoming:
    """Parse a message; :class:`Unreadable` when it is not an email at all. A message over
    ``max_bytes`` has only its headers read (``too_large`` is set)."""
    if not raw.strip():
        raise Unreadable("empty message")
    too_large = max_bytes is not None and len(raw) > max_bytes
    if not too_large and raw.count(b"boundary=") + raw.count(b"BOUNDARY=") > MAX_BOUNDARIES:
        raise Unreadable(f"more than {MAX_BOUNDARIES} nested multipart parts")
    try:
        if too_large:
            parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
            msg = parser.parsebytes(raw[:HEADER_PEEK])
        else:
            msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except (RecursionError, ValueError, TypeError, LookupError, email.errors.MessageError) as exc:
        raise Unreadable(f"cannot parse: {type(exc).__name__}") from None
    if not any(True for _ in msg.raw_items()):
        raise Unreadable("no headers")
    message_id = _raw_header(msg, "Message-ID")[:MAX_LINE] or None
    if message_id and not re.fullmatch(r"<?[^<>\s]{1,998}>?", message_id):
        message_id = None
    name, address = _sender_of(msg)
    date = None
    try:
        date = email.utils.parsedate_to_datetime(_raw_header(msg, "Date"))
        date = date.astimezone(UTC) if date.tzinfo else date.replace(tzinfo=UTC)
    except (TypeError, ValueError, IndexError):
        date = None
    return Incoming(
        key=message_key(message_id, raw),
        message_id=message_id,
        sender="" if "\ufffd" in address else address.strip(),
        sender_name=decode_words(name).strip(),
        subject=first_header(msg, "Subject"),
        date=date,
        message=msg,
        raw=raw,
        references=_raw_header(msg, "References")[:MAX_LINE],
        too_large=too_large,
    )


# what mail clients write and what they mean: the superset each label stands for
CHARSET_SUPERSETS = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "shift-jis": "cp932",
    "sjis": "cp932",
    "x-sjis": "cp932",
    "windows-31j": "cp932",
    "iso-2022-jp": "iso2022_jp_ext",
    "euc-kr": "cp949",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "iso-8859-1": "cp1252",
    "latin1": "cp1252",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
}


def decode_bytes(payload: bytes, charset: str | None) -> str:
    """Bytes in the declared charset (or its usual superset); UTF-8 when the label is
    unknown or the bytes do not fit it. NUL bytes are dropped (no text column holds them)."""
    return _decode_bytes(payload.replace(b"\x00", b""), charset)


def _decode_bytes(payload: bytes, charset: str | None) -> str:
    name = (charset or "utf-8").strip().strip('"').lower()
    name = CHARSET_SUPERSETS.get(name, name)
    try:
        return payload.decode(name)
    except (LookupError, UnicodeError):
        pass
    try:
        return payload.decode("utf-8")
    except UnicodeError:
        try:
            return payload.decode(name, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")


def _decode(part: Message) -> str:
    payload = part.get_payload(decode=True) or b""
    if not isinstance(payload, bytes):  # pragma: no cover - multipart has no payload bytes
        return ""
    return decode_bytes(payload[: MAX_BODY * 4], part.get_content_charset())


_BLOCK_TAGS = {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}
_QUOTE_XPATH = (
    "//blockquote | //style | //script | //head | //*[contains(@class, 'gmail_quote')]"
    " | //*[contains(@class, 'moz-cite-prefix')] | //*[contains(@class, 'yahoo_quoted')]"
)


def html_to_text(html: str) -> str:
    """The readable text of an HTML body, quoted blocks dropped, blocks on their own lines."""
    if not html.strip():
        return ""
    html = html[:MAX_HTML]
    try:
        doc = lxml.html.document_fromstring(html)
    except (ValueError, lxml.etree.LxmlError, RecursionError):
        return re.sub(r"<[^<>]*>", " ", html)
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


MAX_DEPTH = 20  # multipart levels read
MAX_PARTS = 200  # parts looked at


def _text_parts(msg: Message) -> Iterator[Message]:
    """Text parts in order, not descending into attachments or attached messages, nor
    deeper than :data:`MAX_DEPTH` (iterative: deep nesting cannot exhaust the stack)."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        if part.is_multipart():
            if part.get_content_maintype() == "multipart" and depth < MAX_DEPTH:
                subs = part.get_payload()
                if isinstance(subs, list):
                    stack.extend((sub, depth + 1) for sub in reversed(subs[:MAX_PARTS]))
            continue
        if str(part.get("Content-Disposition") or "").lower().startswith("attachment"):
            continue
        if part.get_content_type() in ("text/plain", "text/html"):
            yield part


def body_text(msg: Message) -> str:
    """The message's text: text/plain preferred, an HTML-only body converted.
    :class:`Undecodable` when its encoding is broken."""
    parts = list(_text_parts(msg))[:MAX_PARTS]
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


def readable_text(msg: Message) -> str:
    """The body text, or '' when its encoding is broken."""
    try:
        return body_text(msg)
    except Undecodable:
        return ""


def walk_parts(msg: Message) -> Iterator[Message]:
    """Parts, breadth-bounded and iterative (deep nesting cannot exhaust the stack)."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, depth = stack.pop()
        seen += 1
        yield part
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list) and depth < MAX_DEPTH:
            stack.extend((sub, depth + 1) for sub in reversed(payload[:MAX_PARTS]))
