"""The email message for an issue: built once, personalised per recipient by substitution.

:class:`MessageTemplate` builds one ``EmailMessage`` (policy SMTP, CRLF,
multipart/alternative: text then HTML, UTF-8, quoted-printable) with placeholders, and
serialises it once. :meth:`MessageTemplate.render` then fills in To, Message-ID, the
List-Unsubscribe header and the unsubscribe link: static body lines stay encoded, only
lines that hold the link are encoded again. Nothing is re-rendered, re-inlined or rebuilt.
With a :class:`~digest_mailer.signing.DkimSigner` each finished message is DKIM-signed.
"""

import binascii
import datetime as dt
import hashlib
import html
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, formataddr
from urllib.parse import urlsplit

from digest_mailer.addresses import UnencodableAddress, display_name, wire_address
from digest_mailer.composer import UNSUBSCRIBE_PLACEHOLDER, ComposedIssue, one_line
from digest_mailer.config import Config, is_loopback
from digest_mailer.signing import DkimSigner

_TO = "x-dm-to-placeholder@placeholder.invalid"
_MSGID = "x-dm-msgid-placeholder@placeholder.invalid"
_LIST_UNSUB = "<https://x-dm-list-unsubscribe-placeholder.invalid>"
_TEXT = "x-dm-text-body-placeholder"
_HTML = "x-dm-html-body-placeholder"


_STAND_IN = "x-dm-utf8-address@placeholder.invalid"


def domain_of(address: str) -> str:
    """The domain of ``address`` as it goes into headers (A-labels), for Message-IDs."""
    domain = address.rpartition("@")[2]
    if not domain.isascii():
        try:
            domain = wire_address(f"x@{domain}").text[2:]
        except UnencodableAddress:
            pass  # left as it is; the sender refuses an address it cannot write
    return domain or "localhost"


def make_message_id(domain: str, *parts: object) -> str:
    """A unique Message-ID on the sender's domain: readable parts plus 64 random bits."""
    local = ".".join(str(p) for p in parts if p not in (None, ""))
    return f"<{_id_safe(local)}.{secrets.token_hex(8)}@{domain}>"


def _id_safe(local: str) -> str:
    return "".join(ch if ch.isascii() and ch.isalnum() or ch in "-_." else "-" for ch in local)


def message_id_maker(domain: str, *parts: object) -> Callable[[int], str]:
    """:func:`make_message_id` for many messages with the same leading parts (an issue's
    send), the last part a number: the readable prefix is made safe once."""
    prefix = _id_safe(".".join(str(p) for p in parts if p not in (None, "")))
    token_hex = secrets.token_hex

    def make(number: int) -> str:
        return f"<{prefix}.{number}.{token_hex(8)}@{domain}>"

    return make


def format_recipient(address: str, name: str = "") -> str:
    """The To header value. The domain is written as A-labels (``user@xn--bcher-kva.test``);
    a non-ASCII local part stays UTF-8 (RFC 6532: such a message may only go out with
    SMTPUTF8, which the transport checks); a non-ASCII display name is RFC 2047 encoded.
    Raises :class:`~digest_mailer.addresses.UnencodableAddress` (an ``InputError``) for a
    domain that is not valid IDNA. An ASCII address costs one ``isascii()``.

    The name is cut to :data:`MAX_NAME` characters and an encoded name is folded into
    encoded words of at most 75 characters, so no line of the header passes RFC 5322's
    998 octets (servers answer "500 Line too long")."""
    name = display_name(name)
    if address.isascii():
        wire_text, utf8 = address, False
    else:
        wire = wire_address(address)  # cached
        wire_text, utf8 = wire.text, wire.utf8
    if name and (not name.isascii() or "=?" in name):
        # encoded words of at most 75 characters (RFC 2047), folded; a name that looks
        # like an encoded word itself is encoded too, so no reader decodes it into text
        # the sender never wrote
        encoded = Header(name, "utf-8", header_name="To").encode(maxlinelen=76, linesep="\r\n")
        return f"{encoded} <{wire_text}>"
    if not utf8:
        return formataddr((name, wire_text))
    # formataddr insists on an ASCII address: format around a stand-in, then put it back
    head, _, tail = formataddr((name, _STAND_IN)).rpartition(_STAND_IN)
    return f"{head}{wire_text}{tail}"


def one_click_allowed(public_url: str) -> bool:
    """RFC 8058 one-click (List-Unsubscribe-Post) only with an https link, or an http one
    to this machine for trials."""
    parts = urlsplit(public_url)
    if "\\" in public_url or "@" in parts.netloc or any(c.isspace() for c in public_url):
        # parsers disagree on such hosts
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and is_loopback(parts.hostname or "")


def list_unsubscribe(unsubscribe_url: str, request_address: str) -> str:
    """``List-Unsubscribe``: the one-click https link (when there is one) and a mailto."""
    mailto = f"<mailto:{request_address}?subject=unsubscribe>"
    if _web_link(unsubscribe_url):
        return f"<{unsubscribe_url}>,\r\n {mailto}"
    return mailto


def _web_link(url: str) -> bool:
    return url[:8].lower().startswith(("https://", "http://"))


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends; ``text`` has bare LF line ends."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


@dataclass
class _Body:
    """A body part split into pre-encoded static runs and lines holding the placeholder."""

    pieces: list[bytes | str]

    @classmethod
    def build(cls, text: str) -> "_Body":
        text = text.replace("\r\n", "\n")
        if not text.endswith("\n"):
            text += "\n"
        pieces: list[bytes | str] = []
        static: list[str] = []
        for line in text.split("\n")[:-1]:
            if UNSUBSCRIBE_PLACEHOLDER in line:
                if static:
                    pieces.append(_qp("\n".join(static) + "\n"))
                    static = []
                pieces.append(line + "\n")
            else:
                static.append(line)
        if static:
            pieces.append(_qp("\n".join(static) + "\n"))
        return cls(pieces)

    def render(self, url: str) -> bytes:
        return b"".join(
            p if isinstance(p, bytes) else _qp(p.replace(UNSUBSCRIBE_PLACEHOLDER, url))
            for p in self.pieces
        )


class MessageTemplate:
    """One issue's message. Build it once per send; :meth:`render` per recipient."""

    def __init__(
        self,
        composed: ComposedIssue,
        config: Config,
        *,
        subject_prefix: str = "",
        date: dt.datetime | None = None,
        signer: DkimSigner | None = None,
    ) -> None:
        nl = config.newsletter
        self.config = config
        self.signer = signer
        self.domain = domain_of(nl.from_address)
        self.has_one_click = bool(nl.public_url) and one_click_allowed(nl.public_url)
        msg = EmailMessage(policy=SMTP)
        from_address = nl.from_address
        if not from_address.isascii():  # the domain as A-labels, as in the envelope
            from_address = wire_address(from_address).text
        msg["From"] = Address(display_name=one_line(nl.from_name), addr_spec=from_address)
        msg["To"] = _TO
        msg["Subject"] = one_line(subject_prefix + composed.subject)
        msg["Date"] = format_datetime(date or dt.datetime.now(dt.UTC))
        msg["Message-ID"] = f"<{_MSGID}>"
        if nl.reply_to:
            msg["Reply-To"] = nl.reply_to
        msg["List-Id"] = f"{one_line(nl.title)} <{nl.list_id}>"
        msg["List-Unsubscribe"] = _LIST_UNSUB
        if self.has_one_click:
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg.set_content(_TEXT, charset="utf-8", cte="quoted-printable")
        msg.add_alternative(_HTML, subtype="html", charset="utf-8", cte="quoted-printable")
        msg.set_boundary(f"=_digest_{composed.fingerprint[:24]}")
        skeleton = msg.as_bytes(policy=SMTP)
        for placeholder in (_TO, _MSGID, _LIST_UNSUB, _TEXT + "\r\n", _HTML + "\r\n"):
            if skeleton.count(placeholder.encode()) != 1:  # pragma: no cover - a bug guard
                raise AssertionError(f"placeholder {placeholder!r} not found once")
        self._head, rest = skeleton.split(_TO.encode())
        self._after_to, rest = rest.split(_MSGID.encode())
        self._after_msgid, rest = rest.split(_LIST_UNSUB.encode())
        self._after_unsub, rest = rest.split(_TEXT.encode() + b"\r\n")
        self._after_text, self._tail = rest.split(_HTML.encode() + b"\r\n")
        self._text = _Body.build(composed.text)
        self._html = _Body.build(composed.html)
        # RFC 8058: the Post header only beside an http(s) link in List-Unsubscribe (a test
        # copy to an address that is no subscriber has the mailto alone)
        post = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        self._after_unsub_mailto_only = self._after_unsub.replace(post, b"", 1)

    def unsubscribe_target(self, token_url: str | None) -> str:
        """The link readers click: the signed web link, else the mailto request."""
        if token_url:
            return token_url
        return f"mailto:{self.config.newsletter.request_address}?subject=unsubscribe"

    def render(self, address: str, name: str, message_id: str, unsubscribe_url: str) -> bytes:
        """The complete message for one recipient, CRLF line ends, ready for SMTP DATA;
        DKIM-signed after the substitution when the template has a signer."""
        message_id = message_id.strip("<>")
        data = b"".join(
            (
                self._head,
                format_recipient(address, name).encode("utf-8"),
                self._after_to,
                message_id.encode("ascii"),
                self._after_msgid,
                list_unsubscribe(unsubscribe_url, self.config.newsletter.request_address).encode(
                    "ascii"
                ),
                self._after_unsub if _web_link(unsubscribe_url) else self._after_unsub_mailto_only,
                self._text.render(unsubscribe_url),
                self._after_text,
                self._html.render(html.escape(unsubscribe_url, quote=True)),
                self._tail,
            )
        )
        return self.signer.sign(data) if self.signer is not None else data


def preview_message(composed: ComposedIssue, config: Config) -> bytes:
    """A complete sample message, byte-identical for the same input and config."""
    day = composed.source.parsed_date or dt.date(2000, 1, 1)
    date = dt.datetime(day.year, day.month, day.day, 8, 0, tzinfo=dt.UTC)
    template = MessageTemplate(composed, config, date=date)
    nl = config.newsletter
    sample = hashlib.sha256(composed.fingerprint.encode()).hexdigest()[:16]
    url = f"{nl.public_url.rstrip('/')}/u/SAMPLE-TOKEN" if nl.public_url else None
    return template.render(
        "reader@example.org",
        "Sample Reader",
        f"preview.{sample}@{template.domain}",
        template.unsubscribe_target(url),
    )
