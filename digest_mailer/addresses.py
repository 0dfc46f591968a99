"""Email addresses: validation, keys, their SMTP form, and finding them in text.

Pure: imports nothing from the store, so the parts that read mail (classification,
report parsing) can use it.

- :func:`normalize_address` gives email-validator's normalised form, which is what the
  store keeps: the domain lower-cased and in Unicode (``user@bücher.test``), the local
  part as written.
- :func:`wire_address` gives the form for the envelope and headers: the domain in ASCII
  (A-labels, ``user@xn--bcher-kva.test``), and whether the local part still needs
  SMTPUTF8 (RFC 6531) because it is not ASCII (IDNA 2008, as email-validator checks).
- :func:`find_addresses` scans text in linear time: it looks for ``@`` and grows each
  side within the lengths RFC 5321 allows, so no input makes it slow.
"""

from dataclasses import dataclass
from functools import lru_cache

import idna
from email_validator import EmailNotValidError, validate_email

from digest_mailer.errors import InputError, UnencodableAddress

MAX_ADDRESS = 320  # the columns that hold an address
MAX_LOCAL = 64  # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 255


@lru_cache(maxsize=4096)
def _validate(address: str, allow_test_domains: bool) -> str:
    return validate_email(
        address, check_deliverability=False, test_environment=allow_test_domains
    ).normalized


def normalize_address(address: str, *, allow_test_domains: bool = False) -> str:
    """The address in canonical form (domain lower-cased, IDNA), or :class:`InputError`."""
    text = address.strip()
    if not text:
        raise InputError("empty email address")
    if len(text) > MAX_ADDRESS:
        raise InputError(f"{text[:40]!r}… is not a valid email address: it is too long")
    try:
        return _validate(text, allow_test_domains)
    except EmailNotValidError as exc:
        hint = ""
        if not allow_test_domains and text.lower().rstrip(".").endswith(".test"):
            hint = " (set [subscribers] allow_test_domains = true for trials)"
        raise InputError(f"{text!r} is not a valid email address: {exc}{hint}") from None


def address_key(address: str) -> str:
    """The unique key of an address: the same mailbox whatever its capitalisation."""
    return address.casefold()


def mailbox_key(address: str) -> str:
    """One key for every ``+tag`` variant of a mailbox (``ana+x@corp.test`` ->
    ``ana@corp.test``): what rate limits count by."""
    local, _, domain = address_key(address).rpartition("@")
    return f"{local.partition('+')[0]}@{domain}" if local else address_key(address)


def domain_key(address: str) -> str:
    return address_key(address).rpartition("@")[2]


@dataclass(frozen=True)
class SMTPAddress:
    """An address as it goes on the wire: ``text`` has an ASCII domain; ``utf8`` says the
    local part is not ASCII, so the server must offer SMTPUTF8."""

    text: str
    utf8: bool


@lru_cache(maxsize=8192)
def wire_address(address: str) -> SMTPAddress:
    """The envelope/header form of ``address``: the domain as A-labels, encoded the way
    email-validator checked it when the address was stored: IDNA 2008 (UTS 46,
    non-transitional, the ``idna`` package). Python's own ``"idna"`` codec is IDNA 2003:
    it maps ``ß`` to ``ss``, so ``user@straße.test`` would go to ``strasse.test``, another
    domain. Raises :class:`UnencodableAddress`."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise UnencodableAddress(f"{address!r} has no local part and domain")
    if domain.isascii():
        return SMTPAddress(address, not local.isascii())
    try:
        ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError is one
        raise UnencodableAddress(f"the domain of {address!r} is not valid IDNA: {exc}") from None
    return SMTPAddress(f"{local}@{ascii_domain}", not local.isascii())


def clip(text: str | None, size: int) -> str:
    """``text`` cut to a column's size."""
    return (text or "")[:size]


MAX_NAME = 200  # a display name's column, and what reaches a header


def display_name(text: str | None) -> str:
    """A person's name as the store keeps it, however it came in (staff, a file, an email,
    the web): one line, no control characters, at most :data:`MAX_NAME` characters."""
    printable = "".join(ch if ch.isprintable() else " " for ch in (text or "")[: MAX_NAME * 4])
    return " ".join(printable.split())[:MAX_NAME]


# --------------------------------------------------------------------------- finding

_LOCAL_SPECIALS = frozenset(".+-_'!#$%&*/=?^`{|}~")
_DOMAIN_SPECIALS = frozenset(".-")


def _local_char(ch: str) -> bool:
    return ch.isalnum() or ch in _LOCAL_SPECIALS


def _domain_char(ch: str) -> bool:
    return ch.isalnum() or ch in _DOMAIN_SPECIALS


def address_spans(text: str, *, limit: int = 100) -> list[tuple[int, int, str]]:
    """``(start, end, address)`` for address-like strings in ``text``, in order, each
    address once, at most ``limit``.

    Linear time: each ``@`` grows left over local-part characters (at most 64) and right
    over domain characters (at most 255). A label before the address (``Email:``,
    ``E-mail：``, ``<``) is never part of it, because ``:`` and ``<`` are not address
    characters. Leading dots, trailing dots and hyphens are dropped; the domain needs a
    dot."""
    found: list[tuple[int, int, str]] = []
    seen: set[str] = set()
    n = len(text)
    at = text.find("@")
    while at != -1 and len(found) < limit:
        start = at
        while start > 0 and at - start < MAX_LOCAL and _local_char(text[start - 1]):
            start -= 1
        end = at + 1
        while end < n and end - at <= MAX_DOMAIN and _domain_char(text[end]):
            end += 1
        local = text[start:at].lstrip(".'")
        domain = text[at + 1 : end].rstrip(".-")
        if local and "." in domain and not domain.startswith((".", "-")):
            address = f"{local}@{domain}"
            key = address_key(address)
            if key not in seen:
                seen.add(key)
                found.append((at - len(local), at + 1 + len(domain), address))
        at = text.find("@", max(end, at + 1))
    return found


def find_addresses(text: str, *, limit: int = 100) -> list[str]:
    """The addresses :func:`address_spans` finds, without their places."""
    return [address for _, _, address in address_spans(text, limit=limit)]
