"""The classifier against the team's corpus of request messages, and its parts."""

import tomllib

import pytest
from conftest import DATA

from digest_mailer.inbox.classify import (
    OurAddresses,
    Policy,
    Unreadable,
    decide,
    html_to_text,
    own_text,
    parse,
)

CORPUS = DATA / "requests"
EXPECTED = tomllib.loads((CORPUS / "expected.toml").read_text("utf-8"))
OURS = OurAddresses.of("weekly@transit-lab.test", "bounces@transit-lab.test")
POLICY = Policy(OURS)


def test_corpus_is_large_and_covers_every_label() -> None:
    labels = [m["label"] for m in EXPECTED["messages"].values()]
    assert len(labels) >= 60
    assert sorted(set(labels)) == sorted(
        ["subscribe", "unsubscribe", "confirm", "bounce", "ignore", "review"]
    )
    assert sorted(p.name for p in CORPUS.glob("*.eml")) == sorted(EXPECTED["messages"])


@pytest.mark.parametrize("name", sorted(EXPECTED["messages"]))
def test_corpus_message_label(name: str) -> None:
    expected = EXPECTED["messages"][name]
    try:
        verdict = decide(parse((CORPUS / name).read_bytes()), POLICY)
    except Unreadable:
        label, target = "review", None
    else:
        label, target = verdict.label, verdict.target
    assert label == expected["label"], verdict.reason if label != "review" else name
    if "address" in expected:
        assert (target or "").lower() == expected["address"]


def test_quoted_text_attribution_and_signature_are_cut() -> None:
    body = (
        "Please remove me.\n\nSam\n-- \nSam Ortiz | subscribe to our podcast\n"
        "\nOn Tue, 3 Nov 2026 at 10:00, Transit Policy Weekly <weekly@transit-lab.test> wrote:\n"
        "> Forwarded this? To receive Transit Policy Weekly by email, write to us\n"
    )
    assert own_text(body) == "Please remove me.\n\nSam"
    wrapped = "Thanks!\nOn Tue, 3 Nov 2026 at 10:00, Transit Policy Weekly\n<weekly@transit-lab.test> wrote:\n> unsubscribe\n"
    assert own_text(wrapped) == "Thanks!"
    outlook = "Sign me up\n\nFrom: Transit Policy Weekly\nSent: Monday\nTo: me\n\nunsubscribe\n"
    assert own_text(outlook) == "Sign me up"
    japanese = (
        "登録希望です\n\n2026年11月2日(月) 8:00 Weekly <weekly@transit-lab.test>:\n> 配信停止\n"
    )
    assert own_text(japanese) == "登録希望です"


def test_disclaimer_is_cut_but_a_plain_sentence_is_kept() -> None:
    body = "Unsubscribe please.\n\nThis email and any attachments are confidential. Unsubscribe?\n"
    assert own_text(body) == "Unsubscribe please."
    assert own_text("This email is lovely.\n") == "This email is lovely."


def test_html_quotes_are_dropped_and_blocks_become_lines() -> None:
    html = (
        "<div>Add me<br>please</div><blockquote>unsubscribe</blockquote>"
        "<div class='gmail_quote'>remove me</div><p>Thanks</p>"
    )
    text = html_to_text(html)
    assert "unsubscribe" not in text and "remove me" not in text
    assert [line for line in text.splitlines() if line.strip()] == ["Add me", "please", "Thanks"]


def test_our_addresses_include_verp_return_paths() -> None:
    assert "Weekly@Transit-Lab.test" in OURS
    assert "bounces+12-abc@transit-lab.test" in OURS
    assert "weekly+x@transit-lab.test" in OURS
    assert "reader@transit-lab.test" not in OURS


def test_empty_bytes_are_unreadable() -> None:
    with pytest.raises(Unreadable):
        parse(b"  \r\n")
