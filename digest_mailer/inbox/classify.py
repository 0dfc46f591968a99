"""Understanding a message sent to the digest address: one label per message.

Labels (:class:`~digest_mailer.kinds.Label`): ``subscribe``, ``unsubscribe``, ``confirm``,
``bounce``, ``ignore``, ``review``. Harm comes first: anything that could change the wrong
person's subscription goes to staff.

- Only what the sender wrote counts: quoted lines, the "On … wrote:" block and everything
  after it, forwarded and original-message blocks, signatures and legal disclaimers (in
  English, German, French, Japanese…) are cut before the text is read; the first
  :data:`MAX_OWN_TEXT` characters are kept and the first :data:`MAX_INTENT_TEXT` read
  for what the sender asks.
- Automatic mail (RFC 3834 and vendor headers), read receipts (RFC 8098), challenge-
  response mail, our own mail, mailer daemons, mail flagged as spam, and bulk mail
  (list headers, ``Precedence: bulk``, or unsubscribe instructions of its own) are ignored.
- Delivery and complaint reports are bounces.
- Requests are read with the lexicons of :mod:`digest_mailer.inbox.lexicon` (seven
  languages). A request about someone else (a colleague, a named person, another
  address) is held for review, as is one whose sender failed DMARC at our server.
- A confirmation needs a token; whether it is ours is for the store to say.

Pure: this module reads and decides, changes nothing and imports nothing from the store
(see :mod:`digest_mailer.inbox.actions`). Every pattern is linear in its input: bounded
gaps, and the line patterns run only on lines of at most :data:`MAX_LINE` characters.
"""

import email
import email.errors
import email.parser
import email.policy
import email.utils
import hashlib
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header
from email.message import Message

import lxml.etree
import lxml.html

from digest_mailer.addresses import address_key, find_addresses
from digest_mailer.inbox.lexicon import LANGUAGES
from digest_mailer.kinds import Label

MAX_OWN_TEXT = 64 * 1024  # characters of the sender's own text that are kept
# characters of it read for what the sender asks: a request is short, and the lexicons'
# patterns cost about 2 ms a kilobyte together
MAX_INTENT_TEXT = 8 * 1024
MAX_BODY = 1 << 20  # characters of a body that are cut into own text
MAX_LINE = 1000  # longer lines are never quote markers, attributions or headers
MAX_HTML = 2 << 20  # bytes of HTML handed to the HTML parser
MAX_BOUNDARIES = 100  # multipart parts with a boundary of their own: more is an attack
HEADER_PEEK = 256 * 1024  # bytes read for the headers of a message too large to parse

# our tokens: [token: 32 hex] in the subject, /c/32-hex in the link; anything token-like
# of another length is a confirmation attempt that can only fail
CONFIRM_TOKEN = re.compile(r"\[token:[ \t]{0,5}([0-9a-z]{1,64})[ \t]{0,5}\]", re.I)
CONFIRM_LINK = re.compile(r"(?:/|%2f)c(?:/|%2f)([0-9a-z]{1,64})(?![0-9a-z])", re.I)
TOKEN_SHAPE = re.compile(r"[0-9a-f]{32}")

DAEMONS = {"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon", "maildaemon"}
NO_REPLY = re.compile(r"^(no-?reply|do-?not-?reply|donotreply|bounces?|notifications?)\b", re.I)
AUTO_SUBJECT = re.compile(
    r"^[ \t]*(automatic reply|auto(matic)?[- ]?reply|auto-?response|auto:|out of (the )?office"
    r"|ooo\b|abwesenheitsnotiz|r[ée]ponse automatique|respuesta autom[áa]tica|自動応答|自動返信"
    r"|不在|자동 ?응답|부재|自动回复|自動回覆)",
    re.I,
)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery (status notification|failure|has failed|incomplete)"
    r"|failure notice|returned mail|mail delivery (failed|failure|system|delayed)"
    r"|could not be delivered|delivery problem|non-?delivery|delivery delayed"
    r"|warning: message|delayed mail|unzustellbar|nicht zugestellt|non remis"
    r"|[ée]chec de (?:la )?remise|no se (?:ha )?podido entregar|no entregado"
    r"|退信|退回|未能(?:成功)?投递|无法投递|無法投遞|投递失败|投遞失敗|配信不能|配信エラー"
    r"|送信エラー|不達|전송 ?실패|반송|발송 ?실패",
    re.I,
)
SMTP_CODE = re.compile(
    r"\b[45]\d\d\b|\b[45]\.\d{1,3}\.\d{1,3}\b|user unknown|no such user|delivery (?:is )?delayed"
    r"|has been delayed|will be retried|has not yet been delivered",
    re.I,
)
REPLY_PREFIX = re.compile(
    r"^[ \t]*(?:(?:re|fwd?|aw|wg|sv|vs|tr|rif|antw|返信|転送|답장|회신|回复|回覆|转发|轉寄)"
    r"[ \t]*(?:\[\d{1,4}\])?[ \t]*[:：][ \t]*){1,10}",
    re.I,
)
# read receipts (RFC 8098 and the subjects clients give them)
RECEIPT_SUBJECT = re.compile(
    r"^[ \t]*(?:read|gelesen|lu|le[íi]do|lido|letto|gelezen|読みました|開封済み|開封"
    r"|읽음|已读|已讀|not read|nicht gelesen|non lu|no le[íi]do)[ \t]*[:：]",
    re.I,
)
RECEIPT_TEXT = re.compile(
    r"was read on|has been read|was displayed|wurde (?:am .{0,40})?gelesen|a été lu|fue leído"
    r"|read receipt|lesebestätigung|accusé de lecture|confirmación de lectura"
    r"|開封確認|開封されました"
    r"|읽음 확인|已读回执|已讀回條|was deleted without being read",
    re.I,
)
# challenge-response and sender-verification systems
CHALLENGE = re.compile(
    r"verify (?:that )?you(?:'re| are) (?:a )?(?:human|real|not a robot)|challenge[- ]response"
    r"|sender verification|verify your (?:e-?mail )?(?:address|message)|approve (?:this )?sender"
    r"|(?:whitelist|allowlist|safe ?list) (?:yourself|request)|your message (?:is|has been) held"
    r"|to (?:get|have) your (?:e-?mail|message) delivered|spam ?arrest|boxtrapper|mailblocks"
    r"|confirm (?:that )?you sent",
    re.I,
)
CHALLENGE_HEADERS = ("X-Boxtrapper", "X-Spamarrest-Noauth", "X-Challenge", "X-Verification")

# --------------------------------------------------------------------------- what people write


def _compile(patterns: list[str]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.I | re.M)


_UNSUBSCRIBE = _compile([p for lang in LANGUAGES for p in lang.unsubscribe])
_SUBSCRIBE = _compile([p for lang in LANGUAGES for p in lang.subscribe])
_THIRD = _compile([p for lang in LANGUAGES for p in lang.third_person])
_SELF = _compile([p for lang in LANGUAGES for p in lang.self_words])
CHANGE_OF_ADDRESS = [
    r"\b(?:change|update|switch|move|replace)\b[^.\n]{0,40}\b(?:e-?mail|address)\b",
    r"\b(?:e-?mail|address) (?:has )?changed\b",
    r"アドレス(?:の)?変更",
    r"\badresse (?:hat sich )?geändert\b|\b(?:ändern|aktualisieren) sie meine\b",
    r"\bchangement d'adresse\b|\bchanger (?:mon|d')adresse\b",
    r"\bcambio de (?:direcci[óo]n|correo)\b|\bcambiar mi (?:direcci[óo]n|correo)\b",
    r"주소 ?변경",
    r"(?:更改|变更|變更|更換|更换)(?:邮箱|郵箱|信箱|地址)",
]
_CHANGE = _compile(CHANGE_OF_ADDRESS)
# "send it to my new address x@y", "please use my personal address", "subscribe me at"
_SELF_AT = _compile(
    [
        r"\b(?:my|this is my) (?:new |other |personal |private |work |home |gmail |own )?"
        r"(?:e-?mail|address|e-?mail address) (?:is|:)",
        r"\b(?:use|to|at|add) my (?:new |other |personal |private |work |home |own |office )?"
        r"(?:e-?mail|address|e-?mail address|mailbox|inbox)\b",
        r"\b(?:subscribe|sign up|add) me (?:at|with|as|using)\b",
        r"\bsend (?:it|the digest|the newsletter) to me at\b",
        r"\bmeine[rnm]? (?:neue[rnm]? |private[rnm]? |dienstliche[rnm]? |geschäftliche[rnm]? )?"
        r"(?:dienst|e-?mail-?)?adresse\b",
        r"\bma (?:nouvelle |autre )?adresse\b|\bmon (?:nouvel |autre )?(?:e-?mail|courriel)\b",
        r"\bmi (?:nueva |otra )?(?:direcci[óo]n|correo)\b",
        r"(?:私の|こちらの|会社の|新しい|別の)(?:メール)?アドレス",
        r"제 (?:새 |회사 |다른 )?(?:이메일 |메일 )?주소",
        r"我的(?:公司|工作|私人|新的?|另一个|另一個)?(?:信箱|邮箱|郵箱|地址|電郵|电邮)",
    ]
)
# somebody else named: "add Jane Doe", "remove Mr. Smith" (case is kept for this one)
_NAMED = re.compile(
    r"\b(?:add|remove|unsubscribe|subscribe|include|delete|take off)\s"
    r"(?:(?:mr|mrs|ms|dr|prof)\.?\s)?[A-Z][a-z]{1,20}(?:\s[A-Z][a-z]{1,20})?\b"
)
# bulk and marketing mail: unsubscribe instructions addressed to the reader
BULK_FOOTER = _compile(
    [
        # instructions to the reader, not a reader's wish ("I want to unsubscribe")
        r"\bto (?:unsubscribe|opt[- ]out|stop receiving)[^.\n]{0,40}?\b(?:click|reply|visit"
        r"|send|go to|use|e-?mail|write|follow|here|below|link|at any time)\b",
        r"\byou (?:can|may) (?:always |also )?(?:unsubscribe|opt[- ]out|stop receiving)",
        r"\breply (?:with )?(?:\"|')?(?:unsubscribe|stop|remove|no)\b",
        r"\bif you (?:(?:would|do) not|don'?t|no longer) (?:wish|want|like) to (?:receive|hear)",
        r"\b(?:click|tap) (?:here )?to (?:unsubscribe|opt[- ]out)",
        r"\bunsubscribe (?:here|link|below|at any time)\b",
        r"\bmanage (?:your )?(?:preferences|subscriptions?)\b",
        r"\bthis (?:e-?mail|message) was sent to\b",
        r"\byou (?:are )?receiv(?:e|ing) this (?:e-?mail|message|newsletter) because\b",
        r"配信停止(?:は|をご希望の(?:方|場合)は)",
        r"(?:wenn|falls) sie (?:keine|diese)\b[^.\n]{0,40}\b(?:mehr )?(?:erhalten|wünschen)",
        r"\bpour vous d[ée]sabonner\b|\bsi vous ne souhaitez plus recevoir\b",
        r"\bpara darse de baja\b|\bsi no desea recibir\b",
        r"수신(?:을 )?거부(?:하시려면|는)|退订请|退訂請",
        r"(?:如|若)(?:不想|不希望|不愿|不願|需)(?:再)?(?:收到|接收|退订|退訂)[^\n]{0,30}",
        r"回复[“\"']?(?:退订|TD|td)[”\"']?|回覆[“\"']?退訂[”\"']?",
    ]
)
PITCH = _compile(
    [
        r"\b(?:seo|backlinks?|guest post|link building|web design|lead generation|marketing"
        r" services|rank(?:ing)? (?:higher|on google)|first page of google|special offer"
        r"|limited time|discount|free (?:trial|quote|consultation)|our (?:services|agency|team"
        r" of experts)|partnership opportunity|increase (?:your )?(?:traffic|sales))\b",
    ]
)

# --------------------------------------------------------------------------- quoted text

_SEPARATOR = re.compile(
    r"^[ \t]*(-{2,}[ \t]*(original message|forwarded message|weitergeleitete nachricht"
    r"|ursprüngliche nachricht|message d'origine|message transféré|mensaje original"
    r"|mensaje reenviado|転送されたメッセージ|元のメッセージ|원본 메시지|전달된 메시지"
    r"|原始邮件|原始郵件|转发的邮件)"
    r"|_{8,}[ \t]*$|begin forwarded message:|forwarded message:)",
    re.I,
)
_ATTRIBUTION_END = re.compile(
    r"(wrote|a écrit|schrieb|escribió|scritto|書きました|작성|写道|寫道)[ \t]*[:：][ \t]*$"
    r"|<[^<>\s@]{1,64}@[^<>\s]{1,255}>[ \t]*[:：][ \t]*$|のメッセージ[ \t]*[:：]?[ \t]*$",
    re.I,
)
_ATTRIBUTION_START = re.compile(r"^[ \t]*(on|le|am|el|il)\s.{4,}", re.I)
_HEADER_FROM = re.compile(
    r"^[ \t]*\*?(from|von|de|差出人|送信者|보낸 ?사람|发件人|寄件者)[ \t]*\*?[ \t]*[:：]", re.I
)
_HEADER_NEXT = re.compile(
    r"^[ \t]*\*?(sent|date|to|subject|gesendet|envoyé|enviado|送信日時|日時|宛先|件名|보낸 날짜"
    r"|받는 ?사람|제목|发送时间|收件人|主题|寄件日期|主旨)[ \t]*\*?[ \t]*[:：]",
    re.I,
)
_SIGN_OFF = re.compile(
    r"^[ \t]*(sent from my \w+|get outlook for|sent from (mail|outlook|yahoo)|iphoneから送信"
    r"|android(から|で)送信|von meinem \w+ gesendet|envoyé de mon \w+|enviado desde mi \w+"
    r"|发自我的|從我的 \w+ 傳送|iphone에서 보냄)",
    re.I,
)
_DISCLAIMER = re.compile(
    r"^[ \t]*(\**[ \t]*)?(confidential(ity)?( notice)?\b|disclaimer\b|legal notice\b"
    r"|this (e-?mail|message|communication)( and any (attachments?|files))?"
    r"( \(including any attachments\))? (is|are|may|contains?) (be |also )?(confidential"
    r"|intended|privileged|protected|legally|subject to)"
    r"|the information (contained )?in this (e-?mail|message)|if you are not the intended"
    r"|this (e-?mail|message) and any (attachments?|files)|please consider the environment"
    r"|diese (e-?mail|nachricht) (enthält|ist|kann)|vertraulichkeitshinweis|haftungsausschluss"
    r"|wenn sie nicht der (richtige|beabsichtigte) (adressat|empfänger)"
    r"|ce (message|courriel|e-?mail) (est|et|peut|contient)|avertissement\b|avis de confidentialité"
    r"|si vous n'êtes pas (le )?destinataire|este (mensaje|correo) (es|y|puede|contiene)"
    r"|aviso (legal|de confidencialidad)"
    r"|本メールは|このメールは|本電子メール|このメッセージは|【?機密|免責事項|秘密保持"
    r"|본 (메일|이메일)은|이 (메일|이메일)은|本邮件|本郵件|此邮件|此郵件|免责声明|免責聲明"
    r"|【(?:ご注意|注意|免責|機密|秘密))",
    re.I,
)
_FOOTER = re.compile(
    r"you receive this because you subscribed|forwarded this\? to receive|"
    r"to unsubscribe from this (digest|newsletter)",
    re.I,
)


def own_text(body: str) -> str:
    """What the sender wrote: quotes, attributions, forwarded blocks, signatures and
    disclaimers cut away; at most :data:`MAX_OWN_TEXT` characters."""
    lines = body[:MAX_BODY].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    size = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith((">", "＞")):
            continue
        if len(line) <= MAX_LINE:
            if _SEPARATOR.match(line) or _FOOTER.search(line) or _SIGN_OFF.match(line):
                break
            if stripped in ("--", "-- ", "—", "__"):
                break
            if _DISCLAIMER.match(line):
                break
            if _ATTRIBUTION_END.search(line):
                # a wrapped "On <date>, <name>\n<address> wrote:" starts on the line before
                if kept and _ATTRIBUTION_START.match(kept[-1]) and not kept[-1].endswith("."):
                    kept.pop()
                break
            if _ATTRIBUTION_START.match(line) and i + 1 < len(lines):
                joined = line + " " + lines[i + 1].strip()
                if len(joined) <= MAX_LINE and _ATTRIBUTION_END.search(joined):
                    break
            if _HEADER_FROM.match(line):
                following = [x for x in lines[i + 1 : i + 5] if x.strip()]
                if following and len(following[0]) <= MAX_LINE and _HEADER_NEXT.match(following[0]):
                    break
        kept.append(line.rstrip())
        size += len(line) + 1
        if size >= MAX_OWN_TEXT:
            break
    return "\n".join(kept).strip()[:MAX_OWN_TEXT]


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).replace("’", "'").replace("‘", "'")
    return re.sub(r"[ \t]+", " ", text).lower()


def bare_subject(subject: str) -> str:
    return REPLY_PREFIX.sub("", subject[:MAX_LINE]).strip()


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


def _header(msg: Message, name: str) -> str:
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
        subject=_header(msg, "Subject"),
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


# --------------------------------------------------------------------------- deciding


@dataclass(frozen=True)
class Verdict:
    label: Label
    reason: str
    target: str | None = None  # the address to act on; the token for ``confirm``
    own: str = ""  # what the sender wrote
    # how our own server authenticated the sender's domain ("dmarc", "dkim"), or ""
    authenticated: str = ""


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


@dataclass(frozen=True)
class Policy:
    """What deciding needs besides the message: our addresses, the mail server whose
    ``Authentication-Results`` we trust (``[inbox] authserv_id``; empty: none), and the
    largest message whose body is read."""

    ours: OurAddresses
    authserv_id: str = ""
    max_message_bytes: int = 10_000_000


def report_type(msg: Message) -> str | None:
    """``delivery-status``, ``feedback-report``, ``disposition-notification``… for a
    multipart/report on top."""
    if msg.get_content_type() == "multipart/report":
        return (str(msg.get_param("report-type") or "")).lower() or "unknown"
    return None


def automatic(msg: Message, subject: str) -> str | None:
    """Why this message was sent by a program, or None (RFC 3834 and common practice)."""
    auto = _header(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"automatic reply (Auto-Submitted: {auto[:60]})"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Autoresponder"):
        if _header(msg, name):
            return f"automatic reply ({name} header)"
    precedence = _header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return f"automatic or bulk mail (Precedence: {precedence})"
    if _header(msg, "List-Id") or _header(msg, "List-Unsubscribe"):
        return "bulk or mailing-list mail (List-Id or List-Unsubscribe header)"
    if (
        _header(msg, "Feedback-ID")
        or _header(msg, "X-Campaign-Id")
        or _header(msg, "X-Mailgun-Tag")
    ):
        return "bulk mail (campaign headers)"
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
    score = re.match(r"[ \t]*(-?\d{1,4}(\.\d{1,4})?)", _header(msg, "X-Spam-Score"))
    if score and float(score.group(1)) >= 5.0:
        return f"flagged as spam (X-Spam-Score {score.group(1)})"
    return None


def receipt(msg: Message, subject: str, body: str) -> str | None:
    """A read receipt or other disposition notification (RFC 8098)."""
    kind = report_type(msg)
    if kind == "disposition-notification":
        return "read receipt (disposition notification)"
    if any(p.get_content_type() == "message/disposition-notification" for p in _walk(msg)):
        return "read receipt (disposition notification)"
    if RECEIPT_SUBJECT.match(subject) and (
        RECEIPT_TEXT.search(body[:4000]) or len(own_text(body).strip()) < 400
    ):
        return f"read receipt (subject {subject[:60]!r})"
    return None


def challenge(msg: Message, subject: str, body: str) -> str | None:
    """A challenge-response or sender-verification mail: a program asks us to prove we
    are human. Its codes are its own, never our confirmation."""
    for name in CHALLENGE_HEADERS:
        if _header(msg, name):
            return f"challenge-response mail ({name} header)"
    if CHALLENGE.search(subject) or CHALLENGE.search(body[:8000]):
        return "challenge-response or sender-verification mail"
    return None


def _strip_comments(text: str) -> str:
    """``text`` without RFC 5322 comments (nested parentheses), quoted strings kept: a
    comment says anything its writer wants ("domain of dmarc=pass header.from=…")."""
    out: list[str] = []
    depth, quoted, escaped = 0, False, False
    for ch in text:
        if escaped:
            escaped = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\":
            escaped = True
            if depth == 0:
                out.append(ch)
            continue
        if quoted:
            out.append(ch)
            quoted = ch != '"'
            continue
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
            quoted = ch == '"'
    return "".join(out)


@dataclass(frozen=True)
class AuthResult:
    method: str  # dmarc, dkim, spf (exactly; x- methods are not these)
    result: str  # pass, fail, none…
    properties: dict[str, str]


def our_authentication_results(msg: Message, authserv_id: str) -> list[AuthResult] | None:
    """The results in the topmost ``Authentication-Results`` header that our own server
    (``authserv_id``) wrote, comments removed; None when there is none. Our server must
    remove such headers arriving from outside (RFC 8601 section 5), as Postfix with
    OpenDMARC, Exim and rspamd do: then the first one carrying its name is its own."""
    if not authserv_id:
        return None
    wanted = authserv_id.strip().lower()
    for value in msg.get_all("Authentication-Results") or []:
        parts = _strip_comments(re.sub(r"\s+", " ", str(value)[:MAX_HEADER])).split(";")
        head = parts[0].split()
        if not head or head[0].lower() != wanted:
            continue
        results = []
        for resinfo in parts[1:]:
            tokens = resinfo.split()
            if not tokens or "=" not in tokens[0]:
                continue
            method, _, result = tokens[0].partition("=")
            properties = {}
            for token in tokens[1:]:
                key, equals, val = token.partition("=")
                if equals:
                    properties.setdefault(key.lower(), val.strip('"').lower())
            results.append(AuthResult(method.lower(), result.lower(), properties))
        return results
    return None


def failed_authentication(msg: Message, authserv_id: str) -> str | None:
    """Why our own server's ``Authentication-Results`` say the sender is not who the
    From header claims: DMARC failed, or both SPF and DKIM failed. Headers added by any
    other server are not trusted (anyone can write one)."""
    results = our_authentication_results(msg, authserv_id)
    if not results:
        return None
    first: dict[str, str] = {}
    for r in results:
        first.setdefault(r.method, r.result)
    if first.get("dmarc") == "fail":
        return f"the sender failed DMARC at {authserv_id}"
    spf_failed = first.get("spf") in ("fail", "softfail")
    dkim_failed = first.get("dkim", "none") in ("fail", "none", "neutral", "permerror")
    if spf_failed and dkim_failed:
        return f"the sender failed SPF and DKIM at {authserv_id}"
    return None


def authenticated_sender(msg: Message, authserv_id: str, sender: str) -> str:
    """``dmarc`` or ``dkim`` when our own server's results say the sender's exact domain
    passed: DMARC with ``header.from`` that domain, or a DKIM signature whose ``d=`` (or
    ``i=``) is that domain. A parent domain is not enough (``d=test`` signs nothing of
    corp.test's). Proof the From address was not forged; '' otherwise."""
    if "@" not in sender:
        return ""
    domain = sender.rpartition("@")[2].lower().rstrip(".")
    for r in our_authentication_results(msg, authserv_id) or []:
        if r.result != "pass" or r.method not in ("dmarc", "dkim"):
            continue
        if r.method == "dmarc":
            where = r.properties.get("header.from", "")
        else:
            where = r.properties.get("header.d") or r.properties.get("header.i", "")
        if where.rpartition("@")[2].rstrip(".") == domain:
            return r.method
    return ""


def _walk(msg: Message) -> Iterator[Message]:
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


def _spans_removed(pattern: re.Pattern[str], text: str) -> tuple[bool, str]:
    found = False

    def blank(match: re.Match[str]) -> str:
        nonlocal found
        found = True
        return " " * len(match.group(0))

    rest = pattern.sub(blank, text)
    return found, rest


_NAMED_PERSON = re.compile(
    r"\b(?:add|remove|unsubscribe|subscribe|include|delete|take off|sign up)[ \t]"
    r"(?:(?:mr|mrs|ms|dr|prof)\.?[ \t])?"
    r"(?!(?:Me|Us|My|Our|The|This|That|It|From|Myself|Your|All|Please|Thanks|Thank)\b)"
    r"[A-Z][a-z]{1,20}(?:[ \t][A-Z][a-z]{1,20})?\b"
)
_SELF_OBJECT = _compile(
    [
        r"\b(?:add|sign|put|include|subscribe|count) me\b",
        r"\bi(?:'d| would)? (?:like|love|want|wish) to (?:subscribe|receive|get|join|sign up)",
        r"私を|私も|私に|저를|저도|저에게|把我|将我|將我|给我|給我",
        r"\bmich\b|\binscrivez-moi\b|\babonnez-moi\b|\bagr[ée]guenme\b|\bincl[úu]yanme\b",
    ]
)


_SENTENCE_END = re.compile(r"(?<=[.!?。！？])|\n")
# complaints phrased as questions ("Why do I keep getting this?") ask nothing of staff
_RHETORICAL = re.compile(
    r"[ \t¿]*(?:why|how come|what is this|who gave|warum|wieso|pourquoi|por ?qu[ée]|"
    r"なぜ|どうして|为什么|為什麼|왜)",
    re.I,
)


def _separate_question(text: str) -> str:
    """A question in the sender's text that is not the request itself ("Please remove
    me. Is the October issue online?"): staff should answer it, so the message waits for
    them. "Could you please unsubscribe me?" is the request, not a separate question."""
    for sentence in _SENTENCE_END.split(text):
        if "?" not in sentence and "？" not in sentence and "¿" not in sentence:
            continue
        if _RHETORICAL.match(sentence):
            continue
        if not (_UNSUBSCRIBE.search(sentence) or _SUBSCRIBE.search(sentence)):
            return sentence.strip()[:80]
    return ""


def _tokens(subject: str, body: str) -> list[str]:
    found = [m.group(1).lower() for m in CONFIRM_TOKEN.finditer(subject[:MAX_LINE])]
    text = body[:MAX_BODY]
    found += [m.group(1).lower() for m in CONFIRM_TOKEN.finditer(text)]
    found += [m.group(1).lower() for m in CONFIRM_LINK.finditer(text)]
    return list(dict.fromkeys(found))


def decide(incoming: Incoming, policy: Policy) -> Verdict:
    """One label for one message, with a short reason."""
    msg, subject, ours = incoming.message, incoming.subject, policy.ours
    if incoming.too_large:
        return Verdict(
            Label.REVIEW,
            f"the message is {len(incoming.raw):,} bytes, over [inbox] max_message_bytes "
            f"({policy.max_message_bytes:,}): its body was not read",
        )
    kind = report_type(msg)
    if kind in ("delivery-status", "global-delivery-status"):
        return Verdict(Label.BOUNCE, "delivery status report (RFC 3464)")
    if kind == "feedback-report":
        return Verdict(Label.BOUNCE, "complaint report (ARF, RFC 5965)")
    if kind == "disposition-notification":
        return Verdict(Label.IGNORE, "read receipt (disposition notification)")
    local = address_key(incoming.sender).partition("@")[0]
    if local in DAEMONS or not incoming.sender:
        if BOUNCE_SUBJECT.search(subject) and SMTP_CODE.search(readable_text(msg)[:MAX_BODY]):
            return Verdict(Label.BOUNCE, "plain-text delivery report")
        if local in DAEMONS:
            return Verdict(Label.IGNORE, f"from {local}, not a delivery report")
    if incoming.sender and incoming.sender in ours:
        return Verdict(Label.IGNORE, "sent from our own address")
    if NO_REPLY.match(local):
        return Verdict(Label.IGNORE, "sent from a no-reply address")
    why = automatic(msg, subject) or spam(msg)
    if why:
        return Verdict(Label.IGNORE, why)
    if not incoming.sender or "@" not in incoming.sender:
        return Verdict(Label.REVIEW, "no sender address")

    try:
        body = body_text(msg)
    except Undecodable as exc:
        return Verdict(Label.REVIEW, str(exc))
    why = receipt(msg, subject, body) or challenge(msg, subject, body)
    if why:
        return Verdict(Label.IGNORE, why)
    own = own_text(body)
    folded = unicodedata.normalize("NFKC", bare_subject(subject) + "\n" + own[:MAX_INTENT_TEXT])
    text = normalize(folded)
    bulk, text = _spans_removed(BULK_FOOTER, text)
    wants_out, rest = _spans_removed(_UNSUBSCRIBE, text)
    wants_in = bool(_SUBSCRIBE.search(rest))

    tokens = _tokens(subject, body)
    if tokens and not wants_out:
        return Verdict(Label.CONFIRM, "carries a confirmation token", tokens[0], own)

    if bulk and (PITCH.search(text) or not (wants_in or wants_out)):
        return Verdict(Label.IGNORE, "bulk or marketing mail (its own unsubscribe wording)")
    if PITCH.search(text) and not _SELF_OBJECT.search(text):
        return Verdict(Label.IGNORE, "a sales pitch, not a request about the digest")
    if _CHANGE.search(text):
        return Verdict(Label.REVIEW, "asks to change an address", None, own)
    if wants_in and wants_out:
        return Verdict(Label.REVIEW, "asks both to subscribe and to unsubscribe", None, own)
    if not wants_in and not wants_out:
        if not own.strip() and not bare_subject(subject):
            return Verdict(Label.REVIEW, "nothing written", None, own)
        if "?" in own or "？" in own:
            return Verdict(Label.REVIEW, "a question, no subscription request", None, own)
        return Verdict(Label.REVIEW, "no subscribe or unsubscribe request found", None, own)
    question = _separate_question(normalize(own[:MAX_INTENT_TEXT]))
    if question:
        return Verdict(
            Label.REVIEW, f"asks a question as well, for staff to answer ({question!r})", None, own
        )
    why = failed_authentication(msg, policy.authserv_id)
    if why:
        return Verdict(Label.REVIEW, f"{why}: the request may be forged", None, own)
    sender = address_key(incoming.sender)
    named = [a for a in find_addresses(folded) if address_key(a) != sender and a not in ours]
    if len(named) > 1:
        return Verdict(Label.REVIEW, f"names {len(named)} addresses", None, own)
    third = _THIRD.search(text)
    person = _NAMED_PERSON.search(folded)
    if wants_out:
        if named:
            return Verdict(Label.REVIEW, f"asks to remove another address ({named[0]})", None, own)
        if third or person:
            who = (third or person).group(0)  # type: ignore[union-attr]
            return Verdict(Label.REVIEW, f"may be about someone else ({who.strip()})", None, own)
        return Verdict(
            Label.UNSUBSCRIBE, "asks to unsubscribe", incoming.sender, own,
            authenticated_sender(msg, policy.authserv_id, incoming.sender),
        )  # fmt: skip
    if named:
        if _SELF_AT.search(text):
            return Verdict(Label.SUBSCRIBE, f"asks for themselves at {named[0]}", named[0], own)
        return Verdict(Label.REVIEW, f"asks to add another address ({named[0]})", None, own)
    if (third or person) and not _SELF_OBJECT.search(text):
        who = (third or person).group(0)  # type: ignore[union-attr]
        return Verdict(Label.REVIEW, f"may be about someone else ({who.strip()})", None, own)
    return Verdict(Label.SUBSCRIBE, "asks to subscribe", incoming.sender, own)
