"""An issue's links with click counts on: ``PUBLIC_URL/r/TOKEN`` in place of each http(s)
link, the same for every recipient (pure: no store).

A token names an issue and one of its links, never a person:

    <issue id, UTF-8, base64url without padding>.<link number, base 36>.<signature>

The signature is an HMAC-SHA256 like every other token of the tool
(:mod:`digest_mailer.tokens`: the first secret signs, every one verifies, compared in
constant time, 144 bits) over the purpose ``click``, the link's number, the SHA-256 of
its URL and the issue id. The URL itself is not in the token: ``serve`` looks it up in
``link_clicks`` by issue and number and checks the signature against that stored URL, so
a token made for one URL never leads anywhere else (another issue's link 3, a row that
changed), and no address ever comes from the request. A token has one canonical form
(base64url as Python writes it, no leading zeros, nothing before or after); anything
else is not ours.

A link's number is its place in the issue, counted from 1 in reading order (the image
credit, then the body, then the closing note); a URL that appears twice is one link with
one count. Only what the redirect can answer with as written is counted: http(s) URLs
with a host, in printable ASCII (Markdown links always are: the renderer percent-encodes
them), of at most :data:`MAX_URL` characters. ``mailto:`` links, placeholders, the
unsubscribe link, the "View in your browser" link and images are never rewritten.
"""

import base64
import binascii
import hashlib
import re
from urllib.parse import urlsplit

from markdown_it.common.normalize_url import normalizeLink

from digest_mailer.errors import InputError
from digest_mailer.tokens import SIGNATURE_CHARS, base36, sign, signed_by_any, signing_keys

PURPOSE = "click"
PATH = "/r/"  # where `serve` answers the links
MAX_ISSUE_BYTES = 400  # of an issue id in UTF-8 (an id is at most 100 characters)
MAX_LINK_NUMBER = 2**31 - 1  # an INTEGER on every database
MAX_URL = 8192  # characters of a counted URL; a longer link is left as it is
_ISSUE_CHARS = -(-MAX_ISSUE_BYTES * 4 // 3)  # base64 without padding
TOKEN_RE = re.compile(
    rf"([A-Za-z0-9_-]{{1,{_ISSUE_CHARS}}})\.([1-9a-z][0-9a-z]{{0,5}})\."
    rf"([A-Za-z0-9_-]{{{SIGNATURE_CHARS}}})"
)
MAX_TOKEN = _ISSUE_CHARS + 1 + 6 + 1 + SIGNATURE_CHARS  # longer: not ours, unread


def trackable(url: str) -> bool:
    """Whether ``url`` is an http(s) link the redirect can answer with exactly as it is:
    a scheme http or https, a host, printable ASCII only (no space, no control
    character), at most :data:`MAX_URL` characters."""
    if not url or len(url) > MAX_URL or not all("!" <= c <= "~" for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is no number is no URL)
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _issue_part(issue_id: bytes) -> str:
    return base64.urlsafe_b64encode(issue_id).rstrip(b"=").decode("ascii")


def _signature_parts(issue_id: str, number: int, url: str) -> tuple[object, ...]:
    url_hash = hashlib.sha256(url.encode("utf-8")).hexdigest()
    # the number and the hash have fixed forms, so the issue id last reads one way only
    return (PURPOSE, number, url_hash, issue_id)


def click_token(secret: bytes, issue_id: str, number: int, url: str) -> str:
    """The token of link ``number`` (its URL ``url``) of issue ``issue_id``."""
    raw = issue_id.encode("utf-8")
    if not raw or len(raw) > MAX_ISSUE_BYTES:
        raise InputError(
            f"issue id {issue_id[:40]!r}: with click counts on, an issue id is 1 to "
            f"{MAX_ISSUE_BYTES} bytes"
        )
    if not 1 <= number <= MAX_LINK_NUMBER:
        raise ValueError(f"link numbers are 1 to {MAX_LINK_NUMBER}")
    signature = sign(signing_keys(secret)[0], *_signature_parts(issue_id, number, url))
    return f"{_issue_part(raw)}.{base36(number)}.{signature}"


def read_link(token: str) -> tuple[str, int] | None:
    """The issue id and link number a token in canonical form names, before its
    signature is checked (the URL it must be checked against is looked up by them);
    None for anything malformed, overlong or not in its one canonical form."""
    if len(token) > MAX_TOKEN:
        return None
    match = TOKEN_RE.fullmatch(token)
    if match is None:
        return None
    part = match.group(1)
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        issue_id = raw.decode("utf-8")
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None
    if _issue_part(raw) != part or not raw or len(raw) > MAX_ISSUE_BYTES:
        return None  # not the one form we write (stray bits in the last character)
    number = int(match.group(2), 36)
    return (issue_id, number) if number <= MAX_LINK_NUMBER else None


def token_matches(secret: bytes, token: str, issue_id: str, number: int, url: str) -> bool:
    """Whether ``token`` is the one we sign for link ``number`` of ``issue_id`` leading
    to ``url``, under any of the secrets (each one tried: the time does not tell which)."""
    if read_link(token) != (issue_id, number):
        return False
    given = token.rpartition(".")[2]
    return signed_by_any(secret, given, *_signature_parts(issue_id, number, url))


class LinkTracker:
    """Numbers an issue's links in the order they are met and gives each its counted
    link. :attr:`links` is what the server must know: the URL of link n at index n-1."""

    def __init__(self, public_url: str, secret: bytes, issue_id: str) -> None:
        self.base = public_url.rstrip("/") + PATH
        self.secret = secret
        self.issue_id = issue_id
        self.links: list[str] = []
        self._tokens: dict[str, str] = {}
        click_token(secret, issue_id, 1, "")  # an id that cannot be carried: say so now

    def url(self, href: str) -> str:
        """The counted link for ``href`` (the same each time), or ``href`` unchanged
        when it is not an http(s) link the redirect can carry as written."""
        target = href.strip()
        if target and not trackable(target):  # an image credit from the front matter
            target = normalizeLink(target)  # percent-encoded as Markdown links are
        if not trackable(target) or target.startswith(self.base):
            return href
        token = self._tokens.get(target)
        if token is None:
            self.links.append(target)
            token = click_token(self.secret, self.issue_id, len(self.links), target)
            self._tokens[target] = token
        return self.base + token
