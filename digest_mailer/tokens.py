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
