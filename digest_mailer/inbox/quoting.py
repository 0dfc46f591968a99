"""Finding what the sender wrote: the request text of a message.

Quoted lines, the "On … wrote:" block and everything after it, forwarded and
original-message blocks, signatures and legal disclaimers (in English, German, French,
Japanese…) are cut before the text is read (:func:`own_text`).
Reply and forward prefixes come off the subject (:func:`bare_subject`).

Pure: text in, text out. Every pattern is linear in its input: the line patterns run only
on lines of at most :data:`~digest_mailer.inbox.reading.MAX_LINE` characters.
"""

import re
import unicodedata

from digest_mailer.inbox.reading import MAX_BODY, MAX_LINE

MAX_OWN_TEXT = 64 * 1024  # characters of the sender's own text that are kept
REPLY_PREFIX = re.compile(
    r"^[ \t]*(?:(?:re|fwd?|aw|wg|sv|vs|tr|rif|antw|返信|転送|답장|회신|回复|回覆|转发|轉寄)"
    r"[ \t]*(?:\[\d{1,4}\])?[ \t]*[:：][ \t]*){1,10}",
    re.I,
)

# lines where what the sender wrote ends
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
