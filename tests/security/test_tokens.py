"""Threat: a forged, altered or stretched link acting on somebody (tokens.py).

Tokens have one canonical form, a signed huge id is refused before any database sees
it, and the secret may rotate: the first signs, every one verifies; weak secrets are
refused with one line."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest_mailer.config import Config, NewsletterConfig
from digest_mailer.errors import ConfigError
from digest_mailer.tokens import (
    MAX_ID,
    base36,
    make_token,
    read_token,
    signing_secret,
    token_id,
    verp_address,
    verp_deliveries,
    weak_secret,
)

OLD = b"old-secret-4f0c1d9a8b7e6f5a4b3c2d1e0f9a8b7c"
NEW = b"new-secret-9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


def test_one_canonical_form() -> None:
    token = make_token(NEW, "unsubscribe", 1000)  # "rs" in base 36
    assert read_token(NEW, "unsubscribe", token) == 1000
    number, _, signature = token.partition("-")
    for variant in (
        f"0{number}-{signature}",  # a leading zero
        f"{token}\n",  # a trailing newline ($ would have matched before it)
        f"{token}%0a",
        f" {token}",
        f"{number.upper()}-{signature}",
        f"{token}-",
    ):
        assert read_token(NEW, "unsubscribe", variant) is None, variant
        assert token_id(variant) is None, variant


def test_a_signed_huge_id_is_no_id() -> None:
    huge = make_token(NEW, "unsubscribe", MAX_ID + 1)
    assert read_token(NEW, "unsubscribe", huge) is None
    largest = make_token(NEW, "unsubscribe", MAX_ID)
    assert read_token(NEW, "unsubscribe", largest) == MAX_ID


def test_a_salted_token_matches_its_salt_only() -> None:
    token = make_token(NEW, "unsubscribe", 7, "a1b2c3d4e5f60718")
    assert read_token(NEW, "unsubscribe", token, "a1b2c3d4e5f60718") == 7
    assert read_token(NEW, "unsubscribe", token, "ffffffffffffffff") is None
    assert read_token(NEW, "unsubscribe", token) is None  # nor the unsalted (legacy) form
    legacy = make_token(NEW, "unsubscribe", 7)
    assert read_token(NEW, "unsubscribe", legacy, "a1b2c3d4e5f60718") is None


def test_rotation_first_signs_every_one_verifies() -> None:
    old_link = make_token(OLD, "unsubscribe", 9)
    old_verp = verp_address(OLD, "bounces@lab.test", 31)
    both = NEW + b" " + OLD
    assert make_token(both, "unsubscribe", 9) == make_token(NEW, "unsubscribe", 9)
    assert read_token(both, "unsubscribe", old_link) == 9
    assert verp_deliveries(both, "bounces@lab.test", f"To: <{old_verp}>") == [31]
    assert read_token(NEW, "unsubscribe", old_link) is None  # once the old one is dropped
    assert verp_deliveries(NEW, "bounces@lab.test", old_verp) == []


def _config(monkeypatch: pytest.MonkeyPatch, value: str) -> Config:
    monkeypatch.setenv("DM_TEST_SECRET", value)
    return Config(newsletter=NewsletterConfig(secret_env="DM_TEST_SECRET"))


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("aaaaaaaaaaaaaaaa", "16 characters, fewer than 32"),
        ("a" * 64, "repeats a pattern of 1 character"),
        ("abab" * 16, "repeats a pattern of 2 character"),
        ("secret12" * 6, "repeats a pattern of 8 character"),
        ("0123456" * 5 + "65", "repeats a pattern of 7 character"),
        ("zqmkaawxazxaxqaammaqaxmawxaqkkxaxx", "uses only 7 different characters"),
        ("0123456789" * 4, "repeats a pattern of 10 character"),
        ("password" * 4 + "1", "repeats a pattern of 8 character"),
        ("changeme-" * 3 + "changeme", "repeats a pattern of 9 character"),
        ("abcdefghijklmnopqrstuvwxyzabcdef", "run of neighbouring characters"),
        ("abcdefgh" * 4 + "1", "repeats a pattern of 8 character"),
        ("a1b2c3d4e5f60718293a4b5c6d7e8f90,0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c", "with spaces"),
    ],
)
def test_weak_secrets_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, value: str, why: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        signing_secret(_config(monkeypatch, value))
    message = str(caught.value)
    assert "too weak" in message and why in message and "\n" not in message
    assert value not in message  # the secret itself is never printed


def test_random_secrets_are_strong() -> None:
    import secrets

    assert weak_secret(NEW.decode()) is None
    for n in range(32, 96):  # openssl rand -hex / -base64 style secrets are never refused
        assert weak_secret(secrets.token_hex(n // 2 + 1)) is None
        assert weak_secret(secrets.token_urlsafe(n)) is None


def test_each_rotated_secret_must_be_strong(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="secret 2 of 2 .* too weak"):
        signing_secret(_config(monkeypatch, f"{NEW.decode()}   short"))
    joined = signing_secret(_config(monkeypatch, f"\n{NEW.decode()}\n\t{OLD.decode()}\n"))
    assert joined == NEW + b" " + OLD


@given(st.integers(min_value=0, max_value=MAX_ID), st.text(max_size=40))
def test_any_id_round_trips_and_any_text_is_safe(number: int, junk: str) -> None:
    token = make_token(NEW, "unsubscribe", number)
    assert token_id(token) == number and read_token(NEW, "unsubscribe", token) == number
    assert base36(number) == token.partition("-")[0]
    got = read_token(NEW, "unsubscribe", junk)
    assert got is None or make_token(NEW, "unsubscribe", got) == junk
