import re
from pathlib import Path

import lxml.html
import pytest
from conftest import DATA

from digest_mailer import composer
from digest_mailer.composer import UNSUBSCRIBE_PLACEHOLDER, TemplateError, compose_file
from digest_mailer.config import load_config
from digest_mailer.lint import GMAIL_CLIP_BYTES, lint

ISSUES = DATA / "issues"
DIGEST_FORMS = ["digest-vol-3.1.txt", "frontmatter-vol-3.1.md"]
TEXT_TAGS = ("p", "li", "h1", "h2", "h3", "a", "strong", "em", "blockquote")


def doc(html: str):  # type: ignore[no-untyped-def]
    return lxml.html.document_fromstring(html)


@pytest.mark.parametrize("name", DIGEST_FORMS)
def test_digest_layout_structure(name: str, newsletter_config) -> None:  # type: ignore[no-untyped-def]
    composed = compose_file(ISSUES / name, newsletter_config)
    root = doc(composed.html)
    assert root.get("lang") == "en"
    assert root.xpath("//meta[@charset='utf-8']")
    assert root.xpath("//meta[@name='viewport']")
    assert root.findtext(".//title") == composed.subject
    assert len(root.xpath("//li[contains(@class,'headline')]")) == 5
    assert len(root.xpath("//p[contains(@class,'detail')]")) == 5
    # bold phrases and links survive; the placeholder link keeps its text but no link
    details = root.xpath("//p[contains(@class,'detail')]")
    assert details[0].xpath(".//strong")[0].text_content() == "Congestion charge."
    hrefs = [a.get("href") for a in root.xpath("//a")]
    assert "https://assembly.example.org/paper-17" in hrefs
    assert "#" not in hrefs and "" not in hrefs
    assert "maintenance funding" in details[3].text_content()
    assert not details[3].xpath(".//a[contains(., 'maintenance funding')]")
    # email-safe: no script, no external CSS, the only <style> holds what cannot be
    # inlined: the colour schemes (:root) and the @media rules (phones, dark mode)
    assert not root.xpath("//script") and not root.xpath("//link[@rel='stylesheet']")
    styles = root.xpath("//style")
    assert len(styles) == 1 and styles[0].text.strip().startswith(":root {color-scheme")
    rules = styles[0].text.split("}", 1)[1]
    assert rules.strip().startswith("@media") and "max-width: 620px" in rules
    assert "prefers-color-scheme: dark" in rules
    # every visible text element carries its style inline
    for element in root.xpath("//body//*"):
        if element.tag in TEXT_TAGS:
            assert element.get("style"), lxml.html.tostring(element)[:80]
    # classes kept for the media query; the 600px table layout for screen readers too
    container = root.xpath("//table[contains(@class,'container')]")[0]
    assert container.get("width") == "600" and "width:600px" in container.get("style")
    assert all(t.get("role") == "presentation" for t in root.xpath("//table"))
    preheader = root.xpath("//div[contains(@class,'preheader')]")[0]
    style = preheader.get("style").replace(" ", "")
    assert "display:none" in style and "max-height:0" in style and "overflow:hidden" in style
    assert "font-size" not in style and "color" not in style
    assert preheader.text_content().strip() == composed.preheader
    footer = root.xpath("//td[contains(@class,'footer')]")[0]
    # the closing paragraph already says where to write (issue 14, item 6): one instruction
    assert root.xpath("//a[starts-with(@href,'mailto:weekly@transit-lab.test')]")
    assert "Forwarded this?" not in footer.text_content()
    assert footer.xpath(f".//a[@href='{UNSUBSCRIBE_PLACEHOLDER}']")
    assert "Transit Lab, 9 Depot Road, Rivertown" in footer.text_content()
    assert composed.html_bytes < GMAIL_CLIP_BYTES


def test_both_forms_render_the_same_layout(newsletter_config) -> None:  # type: ignore[no-untyped-def]
    text = compose_file(ISSUES / "digest-vol-3.1.txt", newsletter_config)
    front = compose_file(ISSUES / "frontmatter-vol-3.1.md", newsletter_config)
    assert text.subject == front.subject == "Transit Policy Weekly, Vol 3.1 — January 9, 2024"

    def body(html: str) -> str:
        root = doc(html)
        for div in root.xpath("//div[contains(@class,'preheader')]"):
            div.drop_tree()
        return lxml.html.tostring(root.body, encoding="unicode")

    assert body(text.html) == body(front.html)
    assert text.text == front.text


def test_output_is_deterministic(newsletter_config) -> None:  # type: ignore[no-untyped-def]
    from digest_mailer.message import preview_message

    first = compose_file(ISSUES / "digest-vol-3.1.txt", newsletter_config)
    second = compose_file(ISSUES / "digest-vol-3.1.txt", newsletter_config)
    assert first.html == second.html and first.text == second.text
    assert first.fingerprint == second.fingerprint
    assert preview_message(first, newsletter_config) == preview_message(second, newsletter_config)


def test_fingerprint_follows_content(newsletter_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    original = (ISSUES / "digest-vol-3.1.txt").read_text("utf-8")
    changed = tmp_path / "x.txt"
    changed.write_text(original.replace("31 to 12", "31 to 13"), "utf-8")
    a = compose_file(ISSUES / "digest-vol-3.1.txt", newsletter_config)
    b = compose_file(changed, newsletter_config)
    assert a.fingerprint != b.fingerprint and len(a.fingerprint) == 64


def test_text_part(newsletter_config) -> None:  # type: ignore[no-untyped-def]
    text = compose_file(ISSUES / "digest-vol-3.1.txt", newsletter_config).text
    lines = text.splitlines()
    # with public_url set, the same "View in your browser" link for everyone comes first
    assert lines[0] == "View in your browser: https://digest.transit-lab.test/archive/3.1/"
    lines = lines[2:]
    assert lines[0] == "Transit Policy Weekly" and set(lines[1]) == {"="}
    assert "HEADLINES" in lines and "DETAILS" in lines
    assert "**" not in text and "](" not in text
    references = [line for line in lines if re.match(r"^\[\d+\] ", line)]
    assert references[0] == "[1] https://transit.example.org/bus-rules"
    assert len(references) == 4  # the bus rules link is used twice, numbered once
    assert "signal priority" in text and "rules [1] give buses" in text
    for line in lines:
        if line not in references:
            assert len(line) <= 78, line
    assert f"Unsubscribe: {UNSUBSCRIBE_PLACEHOLDER}" in lines
    assert "-- " in lines  # signature delimiter
    assert "- Region approves congestion charge pilot" in lines


def test_generic_markdown(newsletter_config) -> None:  # type: ignore[no-untyped-def]
    composed = compose_file(ISSUES / "article.md", newsletter_config)
    root = doc(composed.html)
    assert root.xpath("//h1")[0].text_content() == "Why the port expansion matters"
    assert root.xpath("//h2")[0].text_content() == "What changes"
    assert len(root.xpath("//ol/li")) == 2 and root.xpath("//blockquote")
    assert not root.xpath("//b")  # raw HTML in the source is text, never markup
    assert "<b>summary</b>" in root.text_content()
    assert "WHAT CHANGES" in composed.text and "1. Larger ships" in composed.text
    codes = {f.code for f in lint(composed)}
    assert "no-preheader" in codes


def test_lint_reports_placeholders_and_is_clean_otherwise(newsletter_config) -> None:  # type: ignore[no-untyped-def]
    findings = lint(compose_file(ISSUES / "digest-vol-3.1.txt", newsletter_config))
    assert [(f.level, f.code) for f in findings] == [
        ("warning", "placeholder-link"),
        ("warning", "credit-without-image"),  # the sample credits an image it does not have
    ]
    assert "'maintenance funding'" in findings[0].message


def test_image_credits_never_link_to_a_placeholder(newsletter_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14, item 5: no href="#" in the HTML, no <#> in the text."""
    draft = tmp_path / "vol-9.txt"
    draft.write_text(
        "Digest\nVol: 9\nJanuary 2, 2027\nImage: https://img.example.org/a.jpg\n"
        "Image Source: [Harbour Photos](#)\n\nHeadlines:\n- One\n\nDetails:\n- Two\n"
    )
    composed = compose_file(draft, newsletter_config)
    assert 'href="#"' not in composed.html and "<#>" not in composed.text
    assert "Harbour Photos" in composed.html and "Harbour Photos" in composed.text
    assert "placeholder-link" in {f.code for f in lint(composed)}
    draft.write_text(draft.read_text().replace("Image: https://img.example.org/a.jpg\n", ""))
    composed = compose_file(draft, newsletter_config)
    assert "Harbour Photos" not in composed.html and "Harbour Photos" not in composed.text
    assert "credit-without-image" in {f.code for f in lint(composed)}


def _source(tmp_path: Path, body: str, front: str = "preheader: p") -> Path:
    path = tmp_path / "issue.md"
    path.write_text(f"---\ntitle: T\n{front}\n---\n{body}\n", "utf-8")
    return path


def test_lint_size_subject_links_images(newsletter_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    para = "Lorem ipsum dolor sit amet, **consectetur** adipiscing elit sed do. " * 10
    big = compose_file(_source(tmp_path, "\n\n".join([para] * 160)), newsletter_config)
    assert big.html_bytes > GMAIL_CLIP_BYTES
    assert ("error", "html-too-large") in {(f.level, f.code) for f in lint(big)}
    one = compose_file(_source(tmp_path, para), newsletter_config).html_bytes
    per = compose_file(_source(tmp_path, para + "\n\n" + para), newsletter_config).html_bytes - one
    count = 1 + (96_000 - one) // per
    near = compose_file(_source(tmp_path, "\n\n".join([para] * count)), newsletter_config)
    assert 90_000 < near.html_bytes <= GMAIL_CLIP_BYTES, near.html_bytes
    assert ("warning", "html-large") in {(f.level, f.code) for f in lint(near)}
    odd = compose_file(
        _source(
            tmp_path,
            "[rel](/about) [js](javascript:alert(1)) [ftp](ftp://x.test/f) ![](img/a.png)",
            "subject: " + "S" * 90,
        ),
        newsletter_config,
    )
    found = {(f.code, f.message) for f in lint(odd)}
    messages = " | ".join(m for _, m in found)
    assert "link 'rel' is relative (/about)" in messages
    assert "link 'ftp' is not http(s) or mailto" in messages
    assert ("subject-long", "subject is 90 characters (over 78; clients cut it)") in found
    assert "image 'img/a.png' has no alt text" in messages
    assert "image 'img/a.png' has a relative address" in messages


def _staff_templates(tmp_path: Path, name: str, content: str) -> Path:
    folder = tmp_path / "staff-templates"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(content, "utf-8")
    config = tmp_path / "staff.toml"
    config.write_text('[newsletter]\ntemplates = "staff-templates"\n', "utf-8")
    return config


def test_staff_template_without_unsubscribe_is_an_error(tmp_path: Path) -> None:
    config = load_config(_staff_templates(tmp_path, "footer.html.j2", "<tr><td>Bye</td></tr>\n"))
    composed = compose_file(ISSUES / "digest-vol-3.1.txt", config)
    assert "Bye" in composed.html
    errors = [f for f in lint(composed) if f.level == "error"]
    assert [f.code for f in errors] == ["no-unsubscribe"]


def test_template_errors_name_file_and_line(tmp_path: Path) -> None:
    config = load_config(_staff_templates(tmp_path, "footer.html.j2", "<tr>\n{% if x %}\n</tr>\n"))
    with pytest.raises(TemplateError, match=r"footer.html.j2 line 3: .*endif"):
        compose_file(ISSUES / "digest-vol-3.1.txt", config)
    config = load_config(_staff_templates(tmp_path, "footer.html.j2", "<tr>\n{{ nope }}</tr>\n"))
    with pytest.raises(TemplateError, match=r"footer.html.j2 line 2: 'nope' is undefined"):
        compose_file(ISSUES / "digest-vol-3.1.txt", config)
    bad = tmp_path / "missing.toml"
    bad.write_text('[newsletter]\ntemplates = "nowhere"\n', "utf-8")
    with pytest.raises(TemplateError, match="no folder"):
        compose_file(ISSUES / "digest-vol-3.1.txt", load_config(bad))


def test_title_and_text_are_escaped(newsletter_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "x.md"
    path.write_text("---\ntitle: Tom & Jerry <script>\npreheader: a\n---\nBody\n", "utf-8")
    composed = compose_file(path, newsletter_config)
    assert "<script>" not in composed.html and "Tom &amp; Jerry &lt;script&gt;" in composed.html


def test_wrap_keeps_urls_whole() -> None:
    url = "https://example.org/" + "a" * 90
    assert composer.wrap(f"see {url} now", "- ", "  ").splitlines() == [
        "- see",
        f"  {url}",
        "  now",
    ]


def test_one_subscribe_instruction(newsletter_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14, item 6: a closing paragraph naming another address is a warning naming
    the setting; without any address the footer gives the instruction."""
    draft = tmp_path / "vol-9.txt"
    base = "Digest\nVol: 9\nJanuary 2, 2027\n\nHeadlines:\n- One\n\nDetails:\n- Two\n\n---\n\n"
    draft.write_text(base + '"To receive this digest by email, contact policy@thinktank.test."\n')
    composed = compose_file(draft, newsletter_config)
    found = [f for f in lint(composed) if f.code == "two-subscribe-addresses"]
    assert found and 'request_address = "policy@thinktank.test"' in found[0].message
    draft.write_text(base + '"Thank you for reading."\n')
    composed = compose_file(draft, newsletter_config)
    assert "Forwarded this?" in composed.html and "Forwarded this?" in composed.text
    assert "two-subscribe-addresses" not in {f.code for f in lint(composed)}


STRUCTURE = """Transit Digest
Vol: 9
January 2, 2027

Headline:
- Buses run late
- Buses run late
- [the report](https://example.org/report)

Details:
- One.
- Two.
"""


def test_structural_lint_names_the_lines(newsletter_config, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 14, item 2: each rule with a draft written for it."""
    draft = tmp_path / "vol-9.txt"
    draft.write_text(STRUCTURE)
    found = {(f.level, f.code): f.message for f in lint(compose_file(draft, newsletter_config))}
    assert (
        "line 5" in found[("warning", "section-label")]
        and "Headlines:" in found[("warning", "section-label")]
    )
    assert found[("warning", "duplicate-headline")] == "line 7: the same headline as line 6"
    assert found[("warning", "link-only-bullet")].startswith("line 8:")
    assert found[("warning", "count-mismatch")] == "3 headlines but 2 details"
    assert ("warning", "no-volume") not in found
    draft.write_text(STRUCTURE.replace("Vol: 9\n", "").replace("Headline:", "Headlines:"))
    found = {(f.level, f.code): f.message for f in lint(compose_file(draft, newsletter_config))}
    assert "the file name 'vol-9.txt'" in found[("warning", "no-volume")]
    assert ("warning", "section-label") not in found
    empty = "Transit Digest\nVol: 9\n\nHeadlines:\n\nDetails:\n- One.\n"
    draft.write_text(empty)
    found = {(f.level, f.code): f.message for f in lint(compose_file(draft, newsletter_config))}
    assert found[("error", "empty-section")] == "line 4: the Headlines: section is empty"
    draft.write_text("Transit Digest\nVol: 9\n\nDetails:\n- One.\n")
    codes = {(f.level, f.code) for f in lint(compose_file(draft, newsletter_config))}
    assert ("warning", "no-headlines") in codes
    draft.write_text("Headlines:\n- One\n\nDetails:\n- Two\n")
    codes = {(f.level, f.code) for f in lint(compose_file(draft, newsletter_config))}
    assert ("error", "no-title") in codes
