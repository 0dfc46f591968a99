"""DKIM: signatures made through OpenSSL, checked by dkimpy (the independent verifier)."""

import os
import random
import stat
from pathlib import Path

import dkim
import pytest
from conftest import Cli, write_config
from dkim.canonicalization import Relaxed

from digest_mailer.config import load_config
from digest_mailer.errors import ConfigError, InputError
from digest_mailer.signing import (
    DkimSigner,
    GeneratedKey,
    canonical_body,
    generate_key,
    load_private_key,
)

MESSAGE = (
    b"From: Transit Policy Weekly <weekly@transit-lab.test>\r\n"
    b"To: =?utf-8?q?Zo=C3=AB?= <zoe@uni.test>\r\n"
    b"Subject: Transit Policy Weekly\r\n Vol 3.1\r\n"
    b"Date: Fri, 20 Nov 2026 08:00:00 +0000\r\n"
    b"Message-ID: <3.1.1.abc@transit-lab.test>\r\n"
    b"List-Id: Transit Policy Weekly <weekly.transit-lab.test>\r\n"
    b"List-Unsubscribe: <https://digest.transit-lab.test/u/1-abc>,\r\n"
    b" <mailto:weekly@transit-lab.test?subject=unsubscribe>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Five  headlines\tthis week. \r\n"
    b"\r\n"
    b"Read more at https://transit-lab.test/3.1\r\n"
    b"\r\n\r\n"
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> GeneratedKey:
    return generate_key("digest2026", "transit-lab.test", tmp_path_factory.mktemp("keys"))


def verify(data: bytes, key: GeneratedKey) -> bool:
    records = {f"{key.dns_name}.".encode(): key.dns_value.encode()}
    return bool(dkim.verify(data, dnsfunc=lambda name, timeout=5: records.get(name)))


def signer(key: GeneratedKey) -> DkimSigner:
    return DkimSigner("digest2026", "transit-lab.test", load_private_key(key.private_path))


def signature_tags(data: bytes) -> dict[str, str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    first = header.split("\r\nFrom:", 1)[0].removeprefix("DKIM-Signature:")
    flat = "".join(first.split())
    return dict(tag.split("=", 1) for tag in flat.split(";") if tag)


def test_keygen_writes_a_private_key_only_its_owner_reads(key: GeneratedKey) -> None:
    assert stat.S_IMODE(key.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.public_path.stat().st_mode) == 0o644
    assert key.private_path.name == "digest2026.private.pem"
    assert key.dns_name == "digest2026._domainkey.transit-lab.test"
    assert key.dns_value.startswith("v=DKIM1; k=rsa; p=MII")
    assert load_private_key(key.private_path).key_size == 2048
    record = key.dns_record()
    assert record.startswith("digest2026._domainkey.transit-lab.test. IN TXT (")
    strings = record.split('"')[1::2]
    assert all(len(s) <= 255 for s in strings) and "".join(strings) == key.dns_value


def test_keygen_never_overwrites(key: GeneratedKey) -> None:
    before = key.private_path.read_bytes()
    with pytest.raises(InputError, match="already exists"):
        generate_key("digest2026", "transit-lab.test", key.private_path.parent)
    assert key.private_path.read_bytes() == before


def test_a_signed_message_verifies_with_dkimpy(key: GeneratedKey) -> None:
    signed = signer(key).sign(MESSAGE)
    assert signed.endswith(MESSAGE)
    assert verify(signed, key)
    tags = signature_tags(signed)
    assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed"
    assert tags["d"] == "transit-lab.test" and tags["s"] == "digest2026"
    signed_names = tags["h"].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "list-id"):
        assert name in signed_names
    # RFC 8058: both one-click headers signed, and listed once more so none can be added
    assert signed_names.count("list-unsubscribe") == 2
    assert signed_names.count("list-unsubscribe-post") == 2


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.replace(b"Five  headlines", b"Six headlines"),
        lambda m: m.replace(b"Vol 3.1", b"Vol 3.2"),
        lambda m: m.replace(b"/u/1-abc", b"/u/2-abc"),
        lambda m: m.replace(
            b"MIME-Version", b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\nMIME-Version"
        ),
        lambda m: m.replace(b"MIME-Version", b"From: someone@else.test\r\nMIME-Version"),
    ],
    ids=["body", "subject", "unsubscribe-link", "added-one-click", "added-from"],
)
def test_any_change_after_signing_breaks_the_signature(key: GeneratedKey, change) -> None:  # type: ignore[no-untyped-def]
    signed = signer(key).sign(MESSAGE)
    changed = change(signed)
    assert changed != signed
    assert not verify(changed, key)


def test_relaxed_canonicalisation_survives_what_relays_do(key: GeneratedKey) -> None:
    signed = signer(key).sign(MESSAGE)
    head, body = signed.split(b"\r\n\r\n", 1)
    refolded = head.replace(
        b"Subject: Transit Policy Weekly\r\n Vol 3.1", b"SUBJECT:  Transit Policy Weekly Vol 3.1"
    )
    spaced = body.replace(b"this week. \r\n", b"this week.\r\n") + b"\r\n\r\n"
    assert verify(refolded + b"\r\n\r\n" + spaced, key)


def test_body_canonicalisation_matches_dkimpy_on_random_bodies() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        body = bytes(rng.choice(b" \t\r\nab.") for _ in range(rng.randint(0, 40)))
        body = body.replace(b"\r", b"").replace(b"\n", b"\r\n")
        assert canonical_body(body) == Relaxed.canonicalize_body(body), body


def _config(tmp_path: Path, dkim_section: str):  # type: ignore[no-untyped-def]
    return load_config(write_config(tmp_path / "c.toml", "sqlite:///x.db", dkim_section))


def test_config_problems_are_one_clear_line(tmp_path: Path, key: GeneratedKey) -> None:
    assert DkimSigner.from_config(_config(tmp_path, "")) is None
    half = _config(tmp_path, '[dkim]\nselector = "s1"\n')
    with pytest.raises(ConfigError, match="domain, private_key_file not set"):
        DkimSigner.from_config(half)
    missing = _config(
        tmp_path, '[dkim]\nselector = "s1"\ndomain = "d.test"\nprivate_key_file = "no.pem"\n'
    )
    with pytest.raises(ConfigError, match="cannot be read"):
        DkimSigner.from_config(missing)
    loose = tmp_path / "loose.pem"
    loose.write_bytes(key.private_path.read_bytes())
    os.chmod(loose, 0o644)
    readable = _config(
        tmp_path, f'[dkim]\nselector = "s1"\ndomain = "d.test"\nprivate_key_file = "{loose}"\n'
    )
    with pytest.raises(ConfigError, match="chmod 600"):
        DkimSigner.from_config(readable)
    os.chmod(loose, 0o600)
    assert DkimSigner.from_config(readable) is not None
    (tmp_path / "junk.pem").write_text("not a key")
    os.chmod(tmp_path / "junk.pem", 0o600)
    junk = _config(
        tmp_path, '[dkim]\nselector = "s1"\ndomain = "d.test"\nprivate_key_file = "junk.pem"\n'
    )
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        DkimSigner.from_config(junk)
    bad_name = _config(
        tmp_path, f'[dkim]\nselector = "s 1"\ndomain = "d.test"\nprivate_key_file = "{loose}"\n'
    )
    with pytest.raises(ConfigError, match="not a DNS name"):
        DkimSigner.from_config(bad_name)


def test_keygen_command(tmp_path: Path, config_file: Path) -> None:
    cli = Cli(config_file)
    out = tmp_path / "keys"
    out.mkdir()
    result = cli.ok(
        "dkim", "keygen", "--selector", "news", "--domain", "transit-lab.test", "--out", str(out)
    )
    assert "news._domainkey.transit-lab.test. IN TXT" in result.stdout
    assert stat.S_IMODE((out / "news.private.pem").stat().st_mode) == 0o600
    again = cli(
        "dkim", "keygen", "--selector", "news", "--domain", "transit-lab.test", "--out", str(out)
    )
    assert again.exit_code != 0 and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and "Traceback" not in again.output
