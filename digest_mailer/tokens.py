"""Signed tokens for links and return paths: HMAC-SHA256 over a purpose and an id.

A token names what it is for (``unsubscribe``, ``confirm``, …) and the id it acts on; it
cannot be altered, moved to another subscriber or reused for another purpose without the
secret. Verification is constant-time.
"""

import base64
import hashlib
import hmac
import re

from digest_mailer.config import Config
from digest_mailer.errors import ConfigError

SIGNATURE_CHARS = 24  # 144 bits of the HMAC, base64url
TOKEN_RE = re.compile(rf"^([0-9a-z]{{1,13}})-([A-Za-z0-9_-]{{{SIGNATURE_CHARS}}})$")
MIN_SECRET_BYTES = 16


def signing_secret(config: Config) -> bytes:
    """The secret from the environment variable named by ``[newsletter] secret_env``."""
    secret = config.secret("newsletter", "secret_env")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"the secret in {config.newsletter.secret_env} is too short: use at least "
            f"{MIN_SECRET_BYTES} random characters (e.g. `openssl rand -hex 32`)"
        )
    return secret.encode()


def _signature(secret: bytes, purpose: str, number: int) -> str:
    mac = hmac.new(secret, f"{purpose}\0{number}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode()[:SIGNATURE_CHARS]


def make_token(secret: bytes, purpose: str, number: int) -> str:
    """``<id in base 36>-<signature>``: short enough for a URL or an address local part."""
    return f"{_base36(number)}-{_signature(secret, purpose, number)}"


def read_token(secret: bytes, purpose: str, token: str) -> int | None:
    """The id a valid token names, or None for anything forged, altered or malformed."""
    match = TOKEN_RE.match(token or "")
    if match is None:
        return None
    number = int(match.group(1), 36)
    expected = _signature(secret, purpose, number)
    if not hmac.compare_digest(expected.encode(), match.group(2).encode()):
        return None
    return number


# VERP return paths: ``bounces+<id>-<hex>@domain``. Lower-case hex, because some mail
# servers change the case of a local part on the way back.
VERP_SIGNATURE_CHARS = 20  # 80 bits
_VERP_TOKEN = rf"([0-9a-z]{{1,13}})-([0-9a-f]{{{VERP_SIGNATURE_CHARS}}})"


def verp_address(secret: bytes, bounce_address: str, delivery_id: int) -> str:
    """The envelope sender that names one delivery: ``local+TOKEN@domain``."""
    local, _, domain = bounce_address.rpartition("@")
    mac = hmac.new(secret, f"bounce\0{delivery_id}".encode(), hashlib.sha256).hexdigest()
    return f"{local}+{_base36(delivery_id)}-{mac[:VERP_SIGNATURE_CHARS]}@{domain}"


def verp_deliveries(secret: bytes, bounce_address: str, text: str) -> list[int]:
    """The delivery ids of every validly signed VERP address of ``bounce_address`` in
    ``text`` (a report's headers and body), in order of appearance, each once."""
    local, _, domain = bounce_address.rpartition("@")
    if not local:
        return []
    pattern = re.compile(rf"{re.escape(local)}\+{_VERP_TOKEN}@{re.escape(domain)}", re.I)
    found: list[int] = []
    for match in pattern.finditer(text):
        number = int(match.group(1).lower(), 36)
        expected = hmac.new(secret, f"bounce\0{number}".encode(), hashlib.sha256).hexdigest()
        given = match.group(2).lower().encode()
        if hmac.compare_digest(expected[:VERP_SIGNATURE_CHARS].encode(), given):
            if number not in found:
                found.append(number)
    return found


def _base36(number: int) -> str:
    if number < 0:
        raise ValueError("token ids are not negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if number == 0:
            return out
