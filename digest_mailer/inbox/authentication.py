"""What our own mail server says about a message's sender: ``Authentication-Results``.

Only the header our server wrote counts (its ``authserv_id``, ``[inbox] authserv_id``):
anyone can write such a header, so our server must remove those arriving from outside
(RFC 8601 section 5). From it: whether the sender failed DMARC (or both SPF and DKIM),
which holds a request for review, and whether the sender's exact domain passed, which
proves the From address was not forged.

Pure: reads a parsed message, imports nothing from the store.
"""

import re
from dataclasses import dataclass
from email.message import Message

from digest_mailer.inbox.reading import MAX_HEADER


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
