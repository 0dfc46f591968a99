import datetime as dt
import email
from email import policy

import pytest
from conftest import DATA

from digest_mailer.addresses import UnencodableAddress
from digest_mailer.composer import UNSUBSCRIBE_PLACEHOLDER, compose_file
from digest_mailer.message import (
    MessageTemplate,
    domain_of,
    format_recipient,
    make_message_id,
    one_line,
    preview_message,
)

ISSUE = DATA / "issues" / "digest-vol-3.1.txt"


@pytest.fixture
def composed(newsletter_config):  # type: ignore[no-untyped-def]
    return compose_file(ISSUE, newsletter_config)


def parse(raw: bytes):  # type: ignore[no-untyped-def]
    return email.message_from_bytes(raw, policy=policy.default)


def test_preview_is_a_complete_message(composed, newsletter_config) -> None:  # type: ignore[no-untyped-def]
    raw = preview_message(composed, newsletter_config)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    msg = parse(raw)
    assert msg["From"] == "Transit Policy Weekly <weekly@transit-lab.test>"
    assert msg["To"] == "Sample Reader <reader@example.org>"
    assert msg["Subject"] == composed.subject
    assert msg["List-Id"] == "Transit Policy Weekly <weekly.transit-lab.test>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    unsub = " ".join(msg["List-Unsubscribe"].split())
    assert unsub == (
        "<https://digest.transit-lab.test/u/SAMPLE-TOKEN>, "
        "<mailto:weekly@transit-lab.test?subject=unsubscribe>"
    )
    assert msg["Message-ID"].endswith("@transit-lab.test>")
    assert msg["Date"] == "Tue, 09 Jan 2024 08:00:00 +0000"
    assert msg.get_content_type() == "multipart/alternative"
    text, html = msg.get_payload()
    assert (text.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert text.get_content_charset() == html.get_content_charset() == "utf-8"
    # parsed back from SMTP's CRLF form, as the standard library does for its own messages
    assert text.get_content().replace("\r\n", "\n") == composed.text.replace(
        UNSUBSCRIBE_PLACEHOLDER, "https://digest.transit-lab.test/u/SAMPLE-TOKEN"
    )
    assert html.get_content().replace("\r\n", "\n") == composed.html.replace(
        UNSUBSCRIBE_PLACEHOLDER, "https://digest.transit-lab.test/u/SAMPLE-TOKEN"
    )
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998


def test_render_substitutes_only_per_recipient_parts(composed, newsletter_config) -> None:  # type: ignore[no-untyped-def]
    template = MessageTemplate(
        composed, newsletter_config, date=dt.datetime(2024, 1, 9, tzinfo=dt.UTC)
    )
    a = template.render("ana@corp.test", "Ana", "<a.1@transit-lab.test>", "https://d.test/u/AAA")
    b = template.render("bo@corp.test", "Bo", "<b.2@transit-lab.test>", "https://d.test/u/BBB")
    ma, mb = parse(a), parse(b)
    assert (ma["To"], mb["To"]) == ("Ana <ana@corp.test>", "Bo <bo@corp.test>")
    assert (ma["Message-ID"], mb["Message-ID"]) == (
        "<a.1@transit-lab.test>",
        "<b.2@transit-lab.test>",
    )
    assert "https://d.test/u/AAA" in ma.get_payload()[1].get_content()
    assert "https://d.test/u/BBB" not in ma.get_payload()[1].get_content()
    # everything else is the same bytes
    norm = a.replace(b"ana@corp.test", b"X").replace(b"Ana", b"N").replace(b"a.1", b"I")
    norm = norm.replace(b"AAA", b"T")
    other = b.replace(b"bo@corp.test", b"X").replace(b"Bo", b"N").replace(b"b.2", b"I")
    other = other.replace(b"BBB", b"T")
    assert norm == other


def test_names_are_encoded_and_cannot_inject_headers(composed, newsletter_config) -> None:  # type: ignore[no-untyped-def]
    template = MessageTemplate(composed, newsletter_config)
    raw = template.render(
        "zoe@corp.test", "Zoë Ångström\r\nBcc: victim@corp.test", "<x@t.test>", "https://d.test/u/T"
    )
    msg = parse(raw)
    assert "Bcc" not in msg and b"\r\nBcc:" not in raw
    to = msg["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == (
        "Zoë Ångström Bcc: victim@corp.test",
        "zoe@corp.test",
    )
    assert b"=?utf-8?" in raw.split(b"\r\n\r\n")[0]


def test_subject_prefix_and_mailto_only_without_public_url(composed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[newsletter]\nrequest_address = "req@corp.test"\n', "utf-8")
    config = load_config(path)
    template = MessageTemplate(composed, config, subject_prefix="[TEST] ")
    target = template.unsubscribe_target(None)
    assert target == "mailto:req@corp.test?subject=unsubscribe"
    msg = parse(template.render("a@corp.test", "", make_message_id("corp.test", "1"), target))
    assert msg["Subject"].startswith("[TEST] Transit Policy Weekly")
    assert msg["List-Unsubscribe"] == "<mailto:req@corp.test?subject=unsubscribe>"
    assert "List-Unsubscribe-Post" not in msg
    assert msg["To"] == "a@corp.test"


def test_message_ids_are_unique() -> None:
    ids = {make_message_id("corp.test", "2.4", 7) for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("<2.4.7.") for i in ids)
    # an issue id in other scripts still gives an ASCII Message-ID
    assert make_message_id("corp.test", "２.４", "号").startswith("<-.-.-.")


def test_one_line() -> None:
    assert one_line("a\r\nb\tc\x00d") == "a b c d"


# --------------------------------------------------------------------------- international


def test_format_recipient_writes_domains_as_a_labels_and_keeps_utf8_local_parts() -> None:
    assert format_recipient("user@bücher.test") == "user@xn--bcher-kva.test"
    assert format_recipient("user@straße.test") == "user@xn--strae-oqa.test"  # IDNA 2008
    assert (
        format_recipient("user@bücher.test", "Zoë")
        == "=?utf-8?q?Zo=C3=AB?= <user@xn--bcher-kva.test>"
    )
    assert format_recipient("pöison@attacker.test") == "pöison@attacker.test"  # RFC 6532
    assert format_recipient("たろう@例え.test", "山田 太郎") == (
        "=?utf-8?b?5bGx55SwIOWkqumDjg==?= <たろう@xn--r8jz45g.test>"
    )
    # a name that looks like the stand-in the formatting uses changes nothing
    odd = "x-dm-utf8-address@placeholder.invalid"
    assert format_recipient("pöison@attacker.test", odd) == f'"{odd}" <pöison@attacker.test>'
    # ASCII addresses are as before
    assert format_recipient("ana@corp.test", "Ana Lima") == "Ana Lima <ana@corp.test>"


def test_format_recipient_refuses_a_domain_that_is_not_idna() -> None:
    with pytest.raises(UnencodableAddress, match="not valid IDNA"):
        format_recipient("x@" + "ü" * 60 + ".test")


def test_render_utf8_recipient_with_a_japanese_name(composed, newsletter_config) -> None:  # type: ignore[no-untyped-def]
    template = MessageTemplate(composed, newsletter_config)
    url = "https://d.test/u/T"
    raw = template.render("たろう@例え.test", "山田 太郎\r\nBcc: v@corp.test", "<i@t.test>", url)
    head = raw.split(b"\r\n\r\n")[0]
    to = next(line for line in head.split(b"\r\n") if line.startswith(b"To: "))
    assert to.startswith(b"To: =?utf-8?") and to.endswith("<たろう@xn--r8jz45g.test>".encode())
    msg = email.message_from_string(raw.decode("utf-8"), policy=policy.default)
    (address,) = msg["To"].addresses
    assert (address.display_name, address.addr_spec) == (
        "山田 太郎 Bcc: v@corp.test",
        "たろう@xn--r8jz45g.test",
    )
    assert "Bcc" not in msg
    ascii_raw = template.render("ana@corp.test", "", "<i@t.test>", url)
    assert ascii_raw.split(b"\r\n\r\n")[0].isascii()


def test_an_idn_from_address_goes_out_as_a_labels(composed, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.config import load_config

    path = tmp_path / "c.toml"
    path.write_text('[newsletter]\nfrom_address = "weekly@bücher.test"\n', "utf-8")
    template = MessageTemplate(composed, load_config(path))
    assert template.domain == domain_of("weekly@bücher.test") == "xn--bcher-kva.test"
    message_id = make_message_id(template.domain, "3.1", 1)
    raw = template.render("ana@corp.test", "", message_id, "https://d.test/u/T")
    assert raw.split(b"\r\n\r\n")[0].isascii()
    msg = parse(raw)
    assert msg["From"].addresses[0].addr_spec == "weekly@xn--bcher-kva.test"
    assert msg["Message-ID"].endswith("@xn--bcher-kva.test>")
