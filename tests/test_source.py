from pathlib import Path

import pytest
from conftest import DATA

from digest_mailer.errors import InputError
from digest_mailer.source import parse_issue, read_issue


def test_digest_text_maps_to_fields() -> None:
    issue = read_issue(DATA / "issues" / "digest-vol-3.1.txt")
    assert issue.form == "digest-text"
    assert (issue.title, issue.volume, issue.date) == (
        "Transit Policy Weekly",
        "3.1",
        "January 9, 2024",
    )
    assert (issue.image_credit, issue.image_credit_url) == (
        "Lantern Archive", "https://archive.example.org/lantern",
    )  # fmt: skip
    assert len(issue.headlines) == 5 and len(issue.details) == 5
    # a bullet wrapped over three lines is one paragraph
    assert issue.details[0].startswith("**Congestion charge.**")
    assert issue.details[0].endswith("[assembly paper](https://assembly.example.org/paper-17).")
    assert issue.footer_note.startswith("To receive Transit Policy Weekly")
    assert not issue.footer_note.startswith('"')
    assert issue.issue_id == "3.1"


def test_front_matter_and_digest_text_agree() -> None:
    text = read_issue(DATA / "issues" / "digest-vol-3.1.txt")
    front = read_issue(DATA / "issues" / "frontmatter-vol-3.1.md")
    assert front.form == "front-matter"
    for name in ("title", "volume", "date", "headlines", "details", "footer_note",
                 "image_credit", "image_credit_url"):  # fmt: skip
        assert getattr(front, name) == getattr(text, name), name
    assert front.preheader.startswith("Congestion charge")


def test_generic_markdown_takes_title_from_first_heading() -> None:
    issue = read_issue(DATA / "issues" / "article.md")
    assert issue.form == "markdown"
    assert issue.title == "Why the port expansion matters"
    assert issue.body.startswith("The harbour board")
    assert issue.issue_id == "article"


@pytest.mark.parametrize(
    "text",
    [
        "# Digest\nVol: 1.2\nMarch 3, 2024\n## Headlines:\n- One\n- Two\n## Details:\n- A\n- B\n",
        "**Digest**\n\nVolume 1.2\n\n3 March 2024\n\nHEADLINES\n* One\n* Two\n\nDETAILS\n* A\n* B\n",
        "Digest\r\nVol. 1.2\r\nMarch 3rd, 2024\r\nHeadlines:\r\n1. One\r\n2. Two\r\nDetails:\r\n1. A\r\n2. B\r\n",
    ],
    ids=["markdown-headers", "bold-title-upper-sections", "crlf-numbered"],
)
def test_variants_staff_actually_type(text: str) -> None:
    issue = parse_issue(text.replace("\r\n", "\n"), Path("x.txt"))
    assert issue.form == "digest-text"
    assert (issue.title, issue.volume, issue.date) == ("Digest", "1.2", "March 3, 2024")
    assert issue.headlines == ["One", "Two"] and issue.details == ["A", "B"]


def test_footer_without_rule_after_details() -> None:
    issue = parse_issue(
        "Digest\nVol: 1\nHeadlines:\n- H\nDetails:\n- D one\n\n“Write to us at a@b.test.”\n",
        Path("x.txt"),
    )
    assert issue.details == ["D one"]
    assert issue.footer_note == "Write to us at a@b.test."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("---\ntitle: [unclosed\n---\nbody\n", "line 2: the front matter is not valid YAML"),
        ("---\ntitel: Typo\n---\nbody\n", "unknown front matter key 'titel'"),
        ("---\n- a\n- b\n---\nbody\n", "must be key: value lines"),
        ("---\ntitle: {a: 1}\n---\nbody\n", "'title' must be text"),
    ],
)
def test_bad_sources(text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        parse_issue(text, Path("bad.md"))


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        read_issue(tmp_path / "absent.md")
    latin = tmp_path / "latin.txt"
    latin.write_bytes(b"Digest\nVol: 1\ncaf\xe9\n")
    read = read_issue(latin)  # not UTF-8: read as Windows-1252, which says so
    assert read.encoding == "Windows-1252" and "caf\u00e9" in read.body + read.date + read.title
    broken = tmp_path / "broken.txt"
    broken.write_bytes(b"Digest\nVol: 1\ncaf\xe9 \x81\n")  # 0x81 is in neither
    with pytest.raises(InputError, match=r"broken.txt line 3: not UTF-8 or Windows-1252"):
        read_issue(broken)


def test_front_matter_id_names_the_issue(tmp_path: Path) -> None:
    path = tmp_path / "article.md"
    path.write_text("---\nid: 2026-11-article\ntitle: Bus lanes\n---\n\nText.\n")
    source = read_issue(path)
    assert source.issue_id == "2026-11-article" and source.issue_id_source == "its id"
    path.write_text("---\ntitle: Bus lanes\n---\n\nText.\n")
    assert read_issue(path).issue_id_source == "the file name 'article.md'"


ARTICLE = """Separator

Why bus lanes work: evidence from twelve cities

Separator

Cities that painted bus lanes saw **faster journeys** within months. The [report](https://example.org/report) compares twelve.

Separator

Current Issue- Read the full [digest](#) and our [archive](https://example.org/archive).

---

"To receive this digest by email, contact policy@thinktank.test."
"""


def test_the_single_article_shape_takes_its_title_between_separators(tmp_path: Path) -> None:
    """Issue 14, item 1: the draft was titled "Separator" before."""
    source = parse_issue(ARTICLE, tmp_path / "article.txt")
    assert source.form == "article"
    assert source.title == "Why bus lanes work: evidence from twelve cities"
    assert "separator" not in (source.body + source.footer_note).lower()
    assert "**Current issue:** Read the full [digest](#)" in source.body
    assert source.footer_note == "To receive this digest by email, contact policy@thinktank.test."


def test_a_draft_in_no_known_shape_is_an_error_naming_the_shapes(tmp_path: Path) -> None:
    text = (
        "This is a long opening sentence that reads like the body of an article and not at "
        "all like its title, because it goes on and on and ends with a full stop as prose does.\n\n"
        "More text.\n"
    )
    with pytest.raises(InputError, match="no title found.*Vol:.*Separator"):
        parse_issue(text, tmp_path / "draft.txt")
    short = parse_issue("Bus lanes in brief\n\nText.\n", tmp_path / "brief.txt")
    assert short.title == "Bus lanes in brief"


def test_a_huge_or_binary_file_is_one_clear_error(tmp_path: Path) -> None:
    from digest_mailer.errors import InputError
    from digest_mailer.source import MAX_DRAFT_BYTES, read_issue

    huge = tmp_path / "huge.txt"
    with huge.open("wb") as handle:
        handle.truncate(MAX_DRAFT_BYTES + 10)  # sparse: no disk used
    with pytest.raises(InputError, match="over 5 MB"):
        read_issue(huge)
    binary = tmp_path / "ls.txt"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00Title\n\nbody\n")
    with pytest.raises(InputError, match="not a text file"):
        read_issue(binary)
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("Title\n\nSome body text.\n".encode("utf-16"))  # with its BOM
    assert read_issue(utf16).title or read_issue(utf16).body
