"""What every message of a send is addressed with: the envelope sender (VERP when a
bounce address is set) and the signed one-click unsubscribe link."""

from digest_mailer.config import Config
from digest_mailer.tokens import make_token, verp_address


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
    config: Config, secret: bytes, subscriber_id: int | None, salt: str = ""
) -> str | None:
    """The signed one-click link for a subscriber (bound to its ``link_salt``), or None
    (mailto only)."""
    base = config.newsletter.public_url.rstrip("/")
    if not base or subscriber_id is None:
        return None
    return f"{base}/u/{make_token(secret, 'unsubscribe', subscriber_id, salt)}"
