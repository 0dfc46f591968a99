"""Mail no person wrote: automatic replies, bulk mail, spam, read receipts, challenges.

Each test says why a message was sent by a program (a short reason for the record), or
None: RFC 3834 and vendor auto-reply headers, list and campaign headers, ``Precedence``,
spam flags, read receipts (RFC 8098) and challenge-response or sender-verification mail,
whose codes are never our confirmation. Also here: the senders that are programs (mailer
daemons, no-reply addresses) and what a plain-text delivery report looks like.

Pure: reads a parsed message, imports nothing from the store.
"""

import re
from email.message import Message

from digest_mailer.inbox.quoting import own_text
from digest_mailer.inbox.reading import first_header, walk_parts

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


def report_type(msg: Message) -> str | None:
    """``delivery-status``, ``feedback-report``, ``disposition-notification``… for a
    multipart/report on top."""
    if msg.get_content_type() == "multipart/report":
        return (str(msg.get_param("report-type") or "")).lower() or "unknown"
    return None


def automatic(msg: Message, subject: str) -> str | None:
    """Why this message was sent by a program, or None (RFC 3834 and common practice)."""
    auto = first_header(msg, "Auto-Submitted").lower()
    if auto and auto.split(";")[0].strip() != "no":
        return f"automatic reply (Auto-Submitted: {auto[:60]})"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponse", "X-Autoresponder"):
        if first_header(msg, name):
            return f"automatic reply ({name} header)"
    precedence = first_header(msg, "Precedence").lower()
    if precedence in ("auto_reply", "bulk", "junk", "list"):
        return f"automatic or bulk mail (Precedence: {precedence})"
    if first_header(msg, "List-Id") or first_header(msg, "List-Unsubscribe"):
        return "bulk or mailing-list mail (List-Id or List-Unsubscribe header)"
    if (
        first_header(msg, "Feedback-ID")
        or first_header(msg, "X-Campaign-Id")
        or first_header(msg, "X-Mailgun-Tag")
    ):
        return "bulk mail (campaign headers)"
    if AUTO_SUBJECT.match(subject):
        return f"automatic reply (subject {subject[:60]!r})"
    if first_header(msg, "Return-Path") == "<>":
        return "automatic mail (null return path)"
    return None


def spam(msg: Message) -> str | None:
    if first_header(msg, "X-Spam-Flag").lower().startswith("yes"):
        return "flagged as spam (X-Spam-Flag)"
    if first_header(msg, "X-Spam-Status").lower().startswith("yes"):
        return "flagged as spam (X-Spam-Status)"
    score = re.match(r"[ \t]*(-?\d{1,4}(\.\d{1,4})?)", first_header(msg, "X-Spam-Score"))
    if score and float(score.group(1)) >= 5.0:
        return f"flagged as spam (X-Spam-Score {score.group(1)})"
    return None


def receipt(msg: Message, subject: str, body: str) -> str | None:
    """A read receipt or other disposition notification (RFC 8098)."""
    kind = report_type(msg)
    if kind == "disposition-notification":
        return "read receipt (disposition notification)"
    if any(p.get_content_type() == "message/disposition-notification" for p in walk_parts(msg)):
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
        if first_header(msg, name):
            return f"challenge-response mail ({name} header)"
    if CHALLENGE.search(subject) or CHALLENGE.search(body[:8000]):
        return "challenge-response or sender-verification mail"
    return None
