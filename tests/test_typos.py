"""Domain typos (pure: no database)."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest_mailer.typos import POPULAR_DOMAINS, REAL_DOMAINS, address_typo, domain_typo


@pytest.mark.parametrize(
    ("domain", "meant"),
    [
        ("gmail.con", "gmail.com"),
        ("gmial.com", "gmail.com"),
        ("gmai.com", "gmail.com"),
        ("gmaill.com", "gmail.com"),
        ("gmail.cmo", "gmail.com"),
        ("gmail.ocm", "gmail.com"),
        ("gmail.co", "gmail.com"),
        ("gmailc.om", "gmail.com"),
        ("gmial.con", "gmail.com"),  # a slip in the name and a bad ending
        ("GMAIL.CON", "gmail.com"),
        ("gmail.con.", "gmail.com"),
        ("hotmial.com", "hotmail.com"),
        ("hotmal.com", "hotmail.com"),
        ("outlok.com", "outlook.com"),
        ("outloo.com", "outlook.com"),
        ("yaho.com", "yahoo.com"),
        ("yahoo.co", "yahoo.com"),
        ("iclod.com", "icloud.com"),
        ("icloud.cm", "icloud.com"),
        ("googlemial.com", "googlemail.com"),
        ("protonmail.con", "protonmail.com"),
        ("proton.em", "proton.me"),
        ("orange.rf", "orange.fr"),
        ("gmx.ed", "gmx.de"),
        ("wbe.de", "web.de"),
        ("lvie.com", "live.com"),
        ("aoll.com", "aol.com"),
        ("aol.con", "aol.com"),
    ],
)
def test_flags_slips_of_popular_domains(domain: str, meant: str) -> None:
    assert domain_typo(domain) == meant


@pytest.mark.parametrize(
    "domain",
    [
        *POPULAR_DOMAINS,
        "gmx.net",
        "mail.com",
        "email.com",
        "ymail.com",
        "gmx.at",
        "protonmail.ch",
        # other countries' endings are real domains of the same providers
        "hotmail.fr",
        "hotmail.co.uk",
        "yahoo.de",
        "yahoo.co.jp",
        "live.ca",
        "web.se",
        "outlook.de",
        # one changed letter in a short name is usually another real domain
        "aon.com",
        "love.com",
        "olive.com",
        "weg.de",
        # unrelated
        "corp.test",
        "example.org",
        "transit-lab.test",
        "gmail.com.example.org",
        "",
        ".",
        "com",
    ],
)
def test_leaves_real_domains_alone(domain: str) -> None:
    assert domain_typo(domain) is None


def test_address_typo_names_the_likely_address() -> None:
    typo = address_typo("ana@gmail.con")
    assert typo is not None
    assert typo.suggested_address == "ana@gmail.com"
    assert typo.describe() == (
        "gmail.con looks like a typo for gmail.com (ana@gmail.con → ana@gmail.com?)"
    )
    assert address_typo("ana@gmail.com") is None
    assert address_typo("gmail.con") is None
    assert address_typo("@gmail.con") is None


popular = st.sampled_from(POPULAR_DOMAINS)


@given(popular, st.sampled_from(["", "."]), st.booleans())
def test_never_flags_a_popular_domain(domain: str, dot: str, upper: bool) -> None:
    written = (domain.upper() if upper else domain) + dot
    assert domain_typo(written) is None
    assert address_typo(f"someone@{written}") is None


@given(st.text(max_size=40))
def test_any_suggestion_is_a_popular_domain_other_than_the_input(text: str) -> None:
    suggestion = domain_typo(text)
    assert suggestion is None or (
        suggestion in POPULAR_DOMAINS
        and suggestion != text.strip().rstrip(".").casefold()
        and text.strip().rstrip(".").casefold() not in REAL_DOMAINS
    )


@given(popular, st.data())
def test_swapping_two_letters_of_a_long_name_is_flagged(domain: str, data: st.DataObject) -> None:
    name, _, tld = domain.partition(".")
    if len(name) < 5:
        return
    i = data.draw(st.integers(0, len(name) - 2))
    if name[i] == name[i + 1]:
        return
    swapped = name[:i] + name[i + 1] + name[i] + name[i + 2 :]
    assert domain_typo(f"{swapped}.{tld}") == domain


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1, max_size=50), st.integers(100, 20_000), popular)
def test_long_inputs_are_answered_at_once(text: str, repeat: int, domain: str) -> None:
    long = text * repeat
    for candidate in (long, domain + long, long + domain, long + "@" + domain):
        start = time.perf_counter()
        assert domain_typo(candidate) is None
        address_typo(candidate)
        assert time.perf_counter() - start < 0.05
