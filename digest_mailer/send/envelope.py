"""What every message of a send is addressed with: the envelope sender (VERP when a
bounce address is set) and the signed one-click unsubscribe link."""

from urllib.parse import quote

from digest_mailer.config import Config
from digest_mailer.tokens import issue_mark, make_token, verp_address

# the ``?i=`` value is left out when the issue id makes it longer than this (a very long
# non-ASCII id): the link still unsubscribes, and the issue is not recorded
MAX_ISSUE_QUERY = 300


def envelope_sender(
    config: Config, secret: bytes | None = None, delivery_id: int | None = None
) -> str:
    """MAIL FROM (the Return-Path): with ``[newsletter] bounce_address`` set, a VERP
    address naming the delivery (``bounces+TOKEN@domain``) when there is one, else the
    bounce address itself; without it, the From address."""
    bounce = config.newsletter.bounce_address
    if not bounce:
        return config.newsletter.from_address
    if secret is None or delivery_id is None:
        return bounce
    return verp_address(secret, bounce, delivery_id)


def unsubscribe_url(
    config: Config,
    secret: bytes,
    subscriber_id: int | None,
    salt: str = "",
    issue_id: str | None = None,
) -> str | None:
    """The signed one-click link for a subscriber (bound to its ``link_salt``), or None
    (mailto only). With ``issue_id`` the link also names the issue that carried it,
    signed for that subscriber (``?i=ISSUE.SIGNATURE``), so an unsubscribe through it is
    attributed to that issue; the token alone still decides who is unsubscribed."""
    base = config.newsletter.public_url.rstrip("/")
    if not base or subscriber_id is None:
        return None
    url = f"{base}/u/{make_token(secret, 'unsubscribe', subscriber_id, salt)}"
    if issue_id:
        mark = quote(issue_mark(secret, issue_id, subscriber_id), safe="")
        if len(mark) <= MAX_ISSUE_QUERY:
            url += f"?i={mark}"
    return url
