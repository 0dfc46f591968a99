"""Understanding a message sent to the digest address: one label per message.

Labels (:class:`~digest_mailer.kinds.Label`): ``subscribe``, ``unsubscribe``, ``confirm``,
``bounce``, ``ignore``, ``review``. Harm comes first: anything that could change the wrong
person's subscription goes to staff.

- Only what the sender wrote counts (:mod:`~digest_mailer.inbox.quoting`): quoted lines,
  the "On … wrote:" block and everything after it, forwarded and original-message blocks,
  signatures and legal disclaimers are cut before the text is read; the first
  :data:`~digest_mailer.inbox.quoting.MAX_OWN_TEXT` characters are kept and the first
  :data:`MAX_INTENT_TEXT` read for what the sender asks.
- Automatic mail (RFC 3834 and vendor headers), read receipts (RFC 8098), challenge-
  response mail, our own mail, mailer daemons, mail flagged as spam, and bulk mail
  (list headers, ``Precedence: bulk``, or unsubscribe instructions of its own) are ignored
  (:mod:`~digest_mailer.inbox.automatic`).
- Delivery and complaint reports are bounces.
- Requests are read with the lexicons of :mod:`digest_mailer.inbox.lexicon` (seven
  languages). A request about someone else (a colleague, a named person, another
  address) is held for review, as is one whose sender failed DMARC at our server
  (:mod:`~digest_mailer.inbox.authentication`).
- A confirmation needs a token (:mod:`~digest_mailer.inbox.confirm_tokens`); whether it
  is ours is for the store to say.

This module is the decision (:func:`decide`) and the public entry of the classifier: the
names of its parts (:mod:`~digest_mailer.inbox.reading` parses a message and decodes its
bodies) are importable from here too.

Pure: the classifier reads and decides, changes nothing and imports nothing from the
store (see :mod:`digest_mailer.inbox.actions`). Every pattern is linear in its input:
bounded gaps, and the line patterns run only on lines of at most :data:`MAX_LINE`
characters.
"""

import re
import unicodedata
from dataclasses import dataclass

from digest_mailer.addresses import address_key, find_addresses
from digest_mailer.inbox.authentication import (
    AuthResult,
    authenticated_sender,
    failed_authentication,
    our_authentication_results,
)
from digest_mailer.inbox.automatic import (
    AUTO_SUBJECT,
    BOUNCE_SUBJECT,
    CHALLENGE,
    CHALLENGE_HEADERS,
    DAEMONS,
    NO_REPLY,
    RECEIPT_SUBJECT,
    RECEIPT_TEXT,
    SMTP_CODE,
    automatic,
    challenge,
    receipt,
    report_type,
    spam,
)
from digest_mailer.inbox.confirm_tokens import CONFIRM_LINK, CONFIRM_TOKEN, TOKEN_SHAPE, find_tokens
from digest_mailer.inbox.lexicon import LANGUAGES
from digest_mailer.inbox.quoting import (
    MAX_OWN_TEXT,
    REPLY_PREFIX,
    bare_subject,
    normalize,
    own_text,
)
from digest_mailer.inbox.reading import (
    CHARSET_SUPERSETS,
    HEADER_PEEK,
    MAX_BODY,
    MAX_BOUNDARIES,
    MAX_DEPTH,
    MAX_HEADER,
    MAX_HTML,
    MAX_LINE,
    MAX_PARTS,
    Incoming,
    Undecodable,
    Unreadable,
    body_text,
    decode_bytes,
    decode_words,
    html_to_text,
    message_key,
    parse,
    readable_text,
)
from digest_mailer.kinds import Label

__all__ = [  # the parts' names, importable from here as before the split
    "AUTO_SUBJECT", "BOUNCE_SUBJECT", "BULK_FOOTER", "CHALLENGE", "CHALLENGE_HEADERS",
    "CHANGE_OF_ADDRESS", "CHARSET_SUPERSETS", "CONFIRM_LINK", "CONFIRM_TOKEN", "DAEMONS",
    "HEADER_PEEK", "MAX_BODY", "MAX_BOUNDARIES", "MAX_DEPTH", "MAX_HEADER", "MAX_HTML",
    "MAX_INTENT_TEXT", "MAX_LINE", "MAX_OWN_TEXT", "MAX_PARTS", "NO_REPLY", "PITCH",
    "RECEIPT_SUBJECT", "RECEIPT_TEXT", "REPLY_PREFIX", "SMTP_CODE", "TOKEN_SHAPE",
    "AuthResult", "Incoming", "OurAddresses", "Policy", "Undecodable", "Unreadable",
    "Verdict", "authenticated_sender", "automatic", "bare_subject", "body_text", "challenge",
    "decide", "decode_bytes", "decode_words", "failed_authentication", "html_to_text",
    "message_key", "normalize", "our_authentication_results", "own_text", "parse",
    "readable_text", "receipt", "report_type", "spam",
]  # fmt: skip

# characters of the sender's own text read for what the sender asks: a request is short,
# and the lexicons' patterns cost about 2 ms a kilobyte together
MAX_INTENT_TEXT = 8 * 1024

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

    tokens = find_tokens(subject, body)
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
