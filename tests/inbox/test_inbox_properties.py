"""Property-based tests: the mailbox readers, the classifier and the report reader on
random and mutated messages (truncated, charset swapped, broken base64, deep nesting,
huge headers, NUL bytes, non-ASCII and IDN addresses). Nothing but the library's own
errors may come out, and every message is read in bounded time."""

import mailbox
import time
from pathlib import Path

from conftest import DATA
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from digest_mailer.addresses import address_spans, find_addresses
from digest_mailer.bounces.reports import read_report
from digest_mailer.inbox.classify import OurAddresses, Policy, Unreadable, decide, own_text, parse
from digest_mailer.inbox.sources import MaildirSource, MboxSource
from digest_mailer.kinds import Label

SAMPLES = sorted((DATA / "requests").glob("*.eml")) + sorted((DATA / "bounces").glob("*.eml"))
SAMPLES += sorted((DATA / "requests" / "outside").glob("*.eml"))
SAMPLES += sorted((DATA / "bounces" / "outside").glob("*.eml"))
RAW = [p.read_bytes() for p in SAMPLES]
POLICY = Policy(OurAddresses.of("digest@policy.test", "bounces@policy.test"), "mx.policy.test")
LIMIT_SECONDS = 2.0  # per message, on this 2-core machine, with a wide margin


def mutate(raw: bytes, how: int, where: float, junk: bytes) -> bytes:
    """One of the damages real mail suffers."""
    at = int(len(raw) * where)
    match how:
        case 0:  # truncated
            return raw[:at]
        case 1:  # charset swapped
            for old, new in (
                (b"utf-8", b"iso-2022-jp"),
                (b"UTF-8", b"big5"),
                (b"us-ascii", b"x-bogus"),
            ):
                raw = raw.replace(old, new)
            return raw.replace(b"charset=", b"charset=ks_c_5601-1987;x=")
        case 2:  # broken base64
            return (
                raw.replace(
                    b"Content-Transfer-Encoding: 7bit", b"Content-Transfer-Encoding: base64"
                )[:at]
                + b"=!*\n"
                + raw[at:]
            )
        case 3:  # NUL bytes and junk spliced in
            return raw[:at] + b"\x00" * 7 + junk + raw[at:]
        case 4:  # a huge header
            return b"X-Huge: " + b"a" * 1_000_000 + b"\r\n" + raw
        case 5:  # deep nesting
            depth = 2000
            head = b"".join(
                b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                for i in range(depth)
            )
            return b"From: a@b.test\r\nMIME-Version: 1.0\r\n" + head + b"\r\nhello\r\n"
        case 6:  # non-ASCII and IDN addresses in From and body
            return (
                "From: Pöison <pöison@bücher.test>\r\nSubject: subscribe 山田@例え.test\r\n".encode()
                + raw[at:]
                + "\r\nplease add me: Email:müller@xn--bcher-kva.test E-mail：名@例.test\r\n".encode()
            )
        case _:  # random bytes in the middle
            return raw[:at] + junk * 50 + raw[at:]


def read_all(raw: bytes) -> None:
    """Parse, decide and (for bounces) read the report: only Unreadable may come out."""
    try:
        incoming = parse(raw, max_bytes=POLICY.max_message_bytes)
    except Unreadable:
        return
    verdict = decide(incoming, POLICY)
    assert verdict.label in set(Label)
    if verdict.label == Label.BOUNCE:
        report = read_report(incoming, POLICY.ours)
        assert len(report.failures) <= 100


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.sampled_from(RAW),
    how=st.integers(0, 7),
    where=st.floats(0, 1),
    junk=st.binary(max_size=200),
)
def test_mutated_messages_are_read_in_bounded_time(
    sample: bytes, how: int, where: float, junk: bytes
) -> None:
    raw = mutate(sample, how, where, junk)
    start = time.perf_counter()
    read_all(raw)
    assert time.perf_counter() - start < LIMIT_SECONDS


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=5000))
@example(b"\x00" * 100)
@example(b"From: \xff\xfe@\xc0.test\r\n\r\n" + b"@" * 3000)
def test_random_bytes_never_raise(raw: bytes) -> None:
    read_all(raw)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=3000))
def test_random_text_as_a_body(text: str) -> None:
    raw = (
        "From: someone@mail.test\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + text
    ).encode("utf-8", "surrogatepass")
    read_all(raw)


def test_worst_case_texts_are_linear() -> None:
    """Texts that made the old patterns quadratic: 80 KB on one line, a run of letters, of
    '@', of '<', of blank lines, of dashes. Each is read well under a second."""
    shapes = {
        "letters": "a" * 80_000,
        "at-signs": "a@" * 40_000,
        "angle": "<a@a@" * 16_000,
        "blank lines": "\n \n" * 30_000,
        "dashes": "-" * 80_000,
        "words": "unsubscribe please remove me " * 3_000,
        "cjk": "購読を" * 30_000,
    }
    for name, text in shapes.items():
        raw = (
            "From: a@mail.test\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            + text
        ).encode()
        start = time.perf_counter()
        read_all(raw)
        own_text(text)
        find_addresses(text)
        assert time.perf_counter() - start < 1.0, name


@given(
    st.text(max_size=500),
    st.sampled_from(["ana@corp.test", "名@例え.test", "x+y@xn--bcher-kva.test"]),
)
def test_an_address_is_found_whatever_its_label(prefix: str, address: str) -> None:
    for label in ("Email:", "E-mail：", "<", "mailto:", " "):
        text = prefix + " " + label + address + "> ."
        assert address in [a for _, _, a in address_spans(text, limit=1000)] or "@" in prefix


@settings(max_examples=30, deadline=None)
@given(st.lists(st.binary(max_size=2000), min_size=1, max_size=5))
def test_mailbox_readers_take_any_bytes(tmp_path_factory, messages: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    folder: Path = tmp_path_factory.mktemp("box")
    box = mailbox.mbox(str(folder / "in.mbox"))
    maildir = mailbox.Maildir(str(folder / "md"))
    for raw in messages:
        box.add(raw)
        maildir.add(raw)
    box.close()
    for source in (MboxSource(folder / "in.mbox"), MaildirSource(folder / "md")):
        try:
            for _, raw in source.messages():
                read_all(raw)
        finally:
            source.close()
