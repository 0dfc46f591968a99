"""Likely typos in the domain of an address: ``gmail.con``, ``gmial.com``, ``hotmal.com``.

Pure: no store, no network. The table holds the mailbox providers most people use; a
domain is flagged only when it is one small slip away from one of them:

- one letter added, dropped, changed, or two neighbours swapped (``gmial.com``,
  ``gmai.com``, ``gmaill.com``, ``outlok.com``) in a name of five letters or more;
- in the short names (``aol``, ``gmx``, ``web``, ``live``), where one changed letter often
  gives another real domain (``aon.com``, ``love.com``, ``weg.de``), only two swapped
  neighbours or a doubled letter (``lvie.com``, ``aoll.com``);
- a slip in the ending that gives no ending anyone means: swapped (``.cmo``, ``.ocm``),
  doubled (``.comm``), one letter dropped (``.co``, ``.cm``, ``.om``) or a neighbouring
  key (``.con``, ``.vom``); an ending that is itself a common country (``web.se``,
  ``gmx.at``, ``protonmail.ch``) is never taken for a slip;
- the dot in the wrong place (``gmailc.om``).

The providers themselves and the real domains next to them (``mail.com``, ``ymail.com``,
``gmx.net``) are never flagged. Inputs longer than any of these by more than two
characters cannot be a slip and are answered at once, so no input is slow.
"""

from dataclasses import dataclass
from functools import lru_cache

POPULAR_DOMAINS = (
    "gmail.com",
    "googlemail.com",
    "hotmail.com",
    "outlook.com",
    "live.com",
    "yahoo.com",
    "icloud.com",
    "aol.com",
    "gmx.de",
    "web.de",
    "orange.fr",
    "proton.me",
    "protonmail.com",
)

# real mailbox domains one slip away from a popular one: never flagged
REAL_DOMAINS = frozenset(
    {
        "mail.com",
        "email.com",
        "ymail.com",
        "gmx.com",
        "gmx.net",
        "gmx.at",
        "gmx.ch",
        "cloud.com",
        "wahoo.com",
        "protonmail.ch",
        "pm.me",
        "me.com",
        "mac.com",
    }
)

# endings typed for .com with a neighbouring key (beside the general rules below)
_COM_SLIPS = frozenset({"con", "cpm", "vom", "xom", "cim", "clm", "ckm", "c0m", "cok", "coj"})

_SHORT_NAME = 4  # names this short get only the swap and doubled-letter rules
_LONGEST = max(len(d) for d in POPULAR_DOMAINS)


@dataclass(frozen=True)
class Typo:
    """An address whose domain looks like a slip for a popular one."""

    address: str
    domain: str
    suggestion: str

    @property
    def suggested_address(self) -> str:
        return f"{self.address.rpartition('@')[0]}@{self.suggestion}"

    def describe(self) -> str:
        """``gmail.con looks like a typo for gmail.com (ana@gmail.con → ana@gmail.com?)``"""
        return (
            f"{self.domain} looks like a typo for {self.suggestion} "
            f"({self.address} → {self.suggested_address}?)"
        )


def address_typo(address: str) -> Typo | None:
    """The likely slip in the domain of ``address``, or None."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return None
    suggestion = domain_typo(domain)
    return Typo(address, domain, suggestion) if suggestion else None


def domain_typo(domain: str) -> str | None:
    """The popular domain that ``domain`` is likely a slip for, or None."""
    if len(domain) > _LONGEST + 3:  # the trailing dot below, and two slips at most
        return None
    return _domain_typo(domain)


@lru_cache(maxsize=4096)
def _domain_typo(domain: str) -> str | None:
    domain = domain.strip().rstrip(".").casefold()
    if not domain or domain in POPULAR_DOMAINS or domain in REAL_DOMAINS:
        return None
    if len(domain) > _LONGEST + 2:
        return None
    name, dot, tld = domain.rpartition(".")
    for popular in POPULAR_DOMAINS:
        pname, _, ptld = popular.rpartition(".")
        if dot and name and tld:
            if tld == ptld and _name_slip(name, pname):
                return popular
            if name == pname and _tld_slip(tld, ptld):
                return popular
            if _name_slip(name, pname) and _tld_slip(tld, ptld):
                return popular
        if domain.replace(".", "") == popular.replace(".", "") and domain.count(".") == 1:
            return popular  # the dot slipped: gmailc.om, gmai.lcom
    return None


def _name_slip(name: str, popular: str) -> bool:
    if name == popular or abs(len(name) - len(popular)) > 1:
        return False
    if len(popular) <= _SHORT_NAME:
        return _swapped(name, popular) or _doubled(name, popular)
    return _one_edit(name, popular)


def _tld_slip(tld: str, popular: str) -> bool:
    if tld == popular:
        return False
    if _swapped(tld, popular) or _doubled(tld, popular):
        return True
    if len(tld) == len(popular) - 1 and _one_edit(tld, popular):
        return True  # a letter dropped: .co, .cm, .om; .d for .de (no one-letter endings)
    return popular == "com" and tld in _COM_SLIPS


def _swapped(text: str, popular: str) -> bool:
    """``text`` is ``popular`` with two neighbouring letters swapped."""
    if len(text) != len(popular):
        return False
    diff = [i for i, (a, b) in enumerate(zip(text, popular, strict=True)) if a != b]
    return (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and text[diff[0]] == popular[diff[1]]
        and text[diff[1]] == popular[diff[0]]
    )


def _doubled(text: str, popular: str) -> bool:
    """``text`` is ``popular`` with one letter typed twice."""
    if len(text) != len(popular) + 1:
        return False
    return any(
        text[i] == text[i - 1] and text[:i] + text[i + 1 :] == popular for i in range(1, len(text))
    )


def _one_edit(text: str, popular: str) -> bool:
    """One letter added, dropped or changed, or two neighbours swapped."""
    if text == popular:
        return False
    if len(text) == len(popular):
        diff = sum(1 for a, b in zip(text, popular, strict=True) if a != b)
        return diff == 1 or _swapped(text, popular)
    longer, shorter = (text, popular) if len(text) > len(popular) else (popular, text)
    if len(longer) != len(shorter) + 1:
        return False
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))
