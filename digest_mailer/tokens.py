"""Signed tokens for links and return paths: HMAC-SHA256 over a purpose and an id.

A token names what it is for (``unsubscribe``, ``confirm``, …) and the id it acts on; it
cannot be altered, moved to another subscriber or reused for another purpose without the
secret. Verification is constant-time, and a token has one canonical form: the id in base
36 without leading zeros, the signature, nothing before or after.

The secret's environment variable may hold several secrets separated by whitespace, for
rotation: the first signs, every one verifies. Each must be at least 32 characters with
some variety (no single repeated character or short repeated pattern).
"""

import base64
import hashlib
import hmac
import re

from digest_mailer.config import Config
from digest_mailer.errors import ConfigError

SIGNATURE_CHARS = 24  # 144 bits of the HMAC, base64url
# the id: base 36, no leading zero, below 2**63 (every database's integer)
_ID = r"(0|[1-9a-z][0-9a-z]{0,12})"
TOKEN_RE = re.compile(rf"{_ID}-([A-Za-z0-9_-]{{{SIGNATURE_CHARS}}})")
MAX_ID = 2**63 - 1
MIN_SECRET_CHARS = 32


def weak_secret(secret: str) -> str | None:
    """Why ``secret`` is too weak to sign links, or None."""
    if len(secret) < MIN_SECRET_CHARS:
        return f"it has {len(secret)} characters, fewer than {MIN_SECRET_CHARS}"
    if "," in secret or ";" in secret:
        return "it holds a comma or semicolon: separate several secrets with spaces"
    head = secret[:256]  # bounded work whatever the variable holds
    n = len(head)
    for period in range(1, n // 3 + 1):
        # a pattern repeated at least three times, a character or two aside
        same = sum(head[i] == head[i - period] for i in range(period, n))
        if same >= 0.9 * (n - period):
            return f"it repeats a pattern of {period} character(s)"
    steps = sum(abs(ord(head[i]) - ord(head[i - 1])) <= 1 for i in range(1, n))
    if steps >= 0.8 * (n - 1):
        return "it is mostly a run of neighbouring characters (abcd…, 1234…)"
    if len(set(secret)) < 8:
        return f"it uses only {len(set(secret))} different characters"
    return None


def signing_secret(config: Config) -> bytes:
    """The secrets from the environment variable named by ``[newsletter] secret_env``,
    separated by whitespace: the first signs, all verify (see :func:`signing_keys`)."""
    values = config.secret("newsletter", "secret_env").split()
    for n, secret in enumerate(values, 1):
        reason = weak_secret(secret)
        if reason:
            which = f"secret {n} of {len(values)}" if len(values) > 1 else "the secret"
            raise ConfigError(
                f"{which} in {config.newsletter.secret_env} is too weak ({reason}): use "
                "random text such as the output of `openssl rand -hex 32`"
            )
    return " ".join(values).encode()


def signing_keys(secret: bytes) -> list[bytes]:
    """Every secret that verifies; the first is the one that signs."""
    return secret.split() or [secret]


def _signing_key(secret: bytes) -> bytes:
    return signing_keys(secret)[0]


def sign(key: bytes, *parts: object) -> str:
    """The signature every token of the tool carries: HMAC-SHA256 with ``key`` over
    ``parts`` joined by NUL (the first part names the token's purpose, so no token passes
    for another kind), base64url, :data:`SIGNATURE_CHARS` characters."""
    text = "\0".join(str(part) for part in parts)
    # surrogatepass: whatever a URL decodes to is signed, never an error
    mac = hmac.new(key, text.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SIGNATURE_CHARS]


def signed_by_any(secret: bytes, given: str, *parts: object) -> bool:
    """Whether ``given`` is :func:`sign` of ``parts`` under any of the secrets. Every key
    is tried and compared in constant time: the time does not tell which one matched."""
    offered = given.encode("utf-8", "replace")
    valid = False
    for key in signing_keys(secret):
        valid |= hmac.compare_digest(sign(key, *parts).encode(), offered)
    return valid


def _signature(secret: bytes, purpose: str, number: int, salt: str) -> str:
    # no salt: the form of the links signed before salts existed, still valid for them
    return sign(secret, purpose, number, salt) if salt else sign(secret, purpose, number)


def make_token(secret: bytes, purpose: str, number: int, salt: str = "") -> str:
    """``<id in base 36>-<signature>``: short enough for a URL or an address local part.

    ``salt`` binds the token to one subscriber row (its ``link_salt``): once that person
    is purged, the link matches nobody, even a later row with the same id."""
    return f"{base36(number)}-{_signature(_signing_key(secret), purpose, number, salt)}"


def token_id(token: str) -> int | None:
    """The id a token in canonical form names, before any check of its signature (to find
    the row whose salt it must be checked with); None when it is malformed."""
    match = TOKEN_RE.fullmatch(token or "")
    if match is None:
        return None
    number = int(match.group(1), 36)
    return number if number <= MAX_ID else None


def read_token(secret: bytes, purpose: str, token: str, salt: str = "") -> int | None:
    """The id a valid token names, or None for anything forged, altered, malformed, not
    in its canonical form, or signed with another salt."""
    number = token_id(token)
    if number is None:
        return None
    given = token.partition("-")[2]  # the signature may hold "-" itself
    parts = (purpose, number, salt) if salt else (purpose, number)
    return number if signed_by_any(secret, given, *parts) else None


# The issue an unsubscribe link came in: ``ISSUE.SIGNATURE``, the link's ``?i=`` value.
# Signed for one subscriber with a purpose of its own, so it cannot be altered, moved to
# another issue or another reader's link, or pass for any other token.
ISSUE_PURPOSE = "unsubscribe-issue"
MAX_ISSUE_MARK = 400  # characters of a mark read; a longer one is ignored unread


def _issue_signature(key: bytes, issue_id: str, subscriber_id: int) -> str:
    # the subscriber id (digits) first: the issue id, whatever it holds, is the rest
    return sign(key, ISSUE_PURPOSE, subscriber_id, issue_id)


def issue_mark(secret: bytes, issue_id: str, subscriber_id: int) -> str:
    """``ISSUE.SIGNATURE``: names the issue whose message carried one subscriber's
    unsubscribe link (signed with the first secret)."""
    return f"{issue_id}.{_issue_signature(_signing_key(secret), issue_id, subscriber_id)}"


def read_issue_mark(secret: bytes, mark: str, subscriber_id: int) -> str | None:
    """The issue a mark signed for ``subscriber_id`` names, or None for anything forged,
    altered, signed for someone else, too long or malformed."""
    if not mark or len(mark) > MAX_ISSUE_MARK:
        return None
    issue_id, dot, given = mark.rpartition(".")
    if not dot or not issue_id or len(given) != SIGNATURE_CHARS:
        return None
    valid = signed_by_any(secret, given, ISSUE_PURPOSE, subscriber_id, issue_id)
    return issue_id if valid else None


# VERP return paths: ``bounces+<id>-<hex>@domain``. Lower-case hex, because some mail
# servers change the case of a local part on the way back.
VERP_SIGNATURE_CHARS = 20  # 80 bits
_VERP_TOKEN = rf"([0-9a-z]{{1,13}})-([0-9a-f]{{{VERP_SIGNATURE_CHARS}}})"


def verp_address(secret: bytes, bounce_address: str, delivery_id: int) -> str:
    """The envelope sender that names one delivery: ``local+TOKEN@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    key = _signing_key(secret)
    mac = hmac.new(key, f"bounce\0{delivery_id}".encode(), hashlib.sha256).hexdigest()
    return f"{local}+{base36(delivery_id)}-{mac[:VERP_SIGNATURE_CHARS]}@{domain}"


def verp_deliveries(secret: bytes, bounce_address: str, text: str) -> list[int]:
    """The delivery ids of every validly signed VERP address of ``bounce_address`` in
    ``text`` (a report's headers and body), in order of appearance, each once."""
    local, _, domain = bounce_address.rpartition("@")
    if not local:
        return []
    pattern = re.compile(rf"{re.escape(local)}\+{_VERP_TOKEN}@{re.escape(domain)}", re.I)
    found: list[int] = []
    keys = signing_keys(secret)
    for match in pattern.finditer(text):
        number = int(match.group(1).lower(), 36)
        given = match.group(2).lower().encode()
        valid = False
        for key in keys:
            mac = hmac.new(key, f"bounce\0{number}".encode(), hashlib.sha256).hexdigest()
            valid |= hmac.compare_digest(mac[:VERP_SIGNATURE_CHARS].encode(), given)
        if valid and number <= MAX_ID and number not in found:
            found.append(number)
    return found


def base36(number: int) -> str:
    if number < 0:
        raise ValueError("token ids are not negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
