"""Threat: an issue carrying a javascript:, vbscript: or data: URL (pasted from a web
page, or planted in a draft) into every inbox and the web archive. Lint stops it."""

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest_mailer import composer, lint
from digest_mailer.config import Config
from digest_mailer.source import parse_issue

DRAFT = (Path(__file__).parent.parent / "data" / "issues" / "frontmatter-vol-3.1.md").read_text(
    "utf-8"
)


def _codes(text: str) -> list[str]:
    composed = composer.compose(parse_issue(text, Path("vol.md")), Config())
    return [f.code for f in lint.lint(composed) if f.level == "error"]


def test_the_clean_draft_has_no_dangerous_url() -> None:
    assert "dangerous-url" not in _codes(DRAFT)


@pytest.mark.parametrize(
    "planted",
    [
        ("---\n", "---\nimage: javascript:alert(1)\n"),  # front matter image URL
        ("---\n", "---\nimage: ' JaVa\tScRiPt:alert(1)'\n"),
        ("---\n", "---\nimage: data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=\n"),
        ("(https://transit.example.org/bus-rules)", "(javascript:alert(document.cookie))"),
        ("(https://transit.example.org/bus-rules)", "(vbscript:msgbox)"),
        ("(https://assembly.example.org/paper-17)", "(data:text/html,<script>x</script>)"),
    ],
    ids=["image", "image-spaced", "image-data", "link", "vbscript", "data-link"],
)
def test_a_dangerous_url_anywhere_is_an_error(planted: tuple[str, str]) -> None:
    old, new = planted
    assert old in DRAFT
    assert "dangerous-url" in _codes(DRAFT.replace(old, new, 1))


def test_prose_mentioning_data_is_not_flagged() -> None:
    text = DRAFT.replace("strongest on routes", "data: the counters agree, strongest on routes")
    assert "dangerous-url" not in _codes(text)


@given(st.sampled_from(["javascript", "vbscript", "data"]), st.text(max_size=8))
def test_dangerous_url_sees_through_case_and_control_characters(scheme: str, junk: str) -> None:
    mixed = "".join(c.upper() if i % 2 else c for i, c in enumerate(scheme))
    spaced = "\t".join(mixed) + ":" + junk
    assert lint.dangerous_url(f" \x01{spaced}")
    assert not lint.dangerous_url(f"https://x.test/{scheme}:{junk}")
