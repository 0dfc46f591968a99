"""What an issue's public page holds, made from the composed issue (no store here).

:func:`archive_draft` renders the issue's body for the web from the same parts as the
email (``templates/archive_body.html.j2``): the masthead, intro, headlines, details,
article body and closing note, but no footer, so no unsubscribe link, token, address or
name. The page keeps the strict Content-Security-Policy: the body is plain HTML with no
inline style (the email's inlined CSS is not used), and an image hosted anywhere but the
archive's own site becomes a link to it.
"""

import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from digest_mailer.composer import (
    ComposedIssue,
    build_context,
    plain_inline,
    render_template,
    template_environment,
)
from digest_mailer.config import Config

DESCRIPTION_CHARS = 200  # of a page's meta description (search results show about 160)

# control characters and noncharacters: nothing a page title or a feed should carry
_CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F,
                           *range(0x80, 0xA0), 0xFFFE, 0xFFFF])  # fmt: skip
_IMG = re.compile(r"<img\b[^>]*>")
_ATTRIBUTE = re.compile(r'\b(src|alt)="([^"]*)"')


def clean(text: str) -> str:
    """``text`` without control characters (a draft's stray byte stays out of titles)."""
    return text.translate(_CONTROLS)


def images_as_links(body_html: str, public_url: str) -> str:
    """Each image of the body not on the archive's own site becomes a link to it: the
    archive, its feed and its export load nothing from elsewhere (no tracking pixel)."""

    def swap(match: re.Match[str]) -> str:
        attributes = dict(_ATTRIBUTE.findall(match.group(0)))
        src, alt = attributes.get("src", ""), attributes.get("alt", "")
        if same_site_image(html.unescape(src), public_url):
            return match.group(0)
        return f'<a href="{src}">Image{": " + alt if alt else ""}</a>'

    return _IMG.sub(swap, body_html)


@dataclass
class ArchiveDraft:
    """An issue's archive page as the send writes it (once)."""

    issue_id: str
    title: str
    subject: str
    volume: str
    issue_date: str
    description: str
    headlines: list[str]
    body_html: str
    body_text: str


@dataclass
class PublicIssue:
    """One published issue, as the archive pages, the feed and the export show it."""

    issue_id: str
    title: str
    subject: str
    volume: str
    issue_date: str
    description: str
    headlines: list[str] = field(default_factory=list)
    body_html: str = ""
    body_text: str = ""
    issued_at: datetime | None = None
    updated_at: datetime | None = None


def shorten(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when too long."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] or text[: limit - 1]
    return cut + "…"


def same_site_image(image: str, public_url: str) -> bool:
    """An image the archive may show under its Content-Security-Policy (``img-src
    'self'``): one on the archive's own site."""
    if not image or not public_url:
        return False
    img, site = urlsplit(image), urlsplit(public_url)
    return (img.scheme, img.netloc) == (site.scheme, site.netloc) and img.scheme == "https"


def _without_view_link(text: str) -> str:
    """The text part without its "View in your browser" line (the page is that view)."""
    if text.startswith("View in your browser:"):
        return text.partition("\n\n")[2]
    return text


def archive_draft(composed: ComposedIssue, config: Config) -> ArchiveDraft:
    """The archive page of ``composed``: its body for the web, with nothing personal."""
    context: dict[str, Any]
    # the links as written, never the counted /r/ links of the message ([tracking] clicks)
    context, _ = build_context(composed.source, config)
    text_as_written = composed.original_text or composed.text
    context["image_inline"] = same_site_image(context["image"], config.newsletter.public_url)
    env = template_environment(config)
    body_html = render_template(env, "archive_body.html.j2", context)
    body_html = images_as_links(clean(body_html), config.newsletter.public_url)
    source = composed.source
    headlines = [clean(plain_inline(h)) for h in source.headlines]
    description = composed.preheader or "; ".join(headlines) or plain_inline(source.body[:2000])
    return ArchiveDraft(
        issue_id=composed.issue_id,
        title=clean(context["title"]),
        subject=clean(composed.subject),
        volume=clean(str(source.volume or "")),
        issue_date=clean(str(source.date or "")),
        description=shorten(clean(description)),
        headlines=headlines,
        body_html=body_html,
        body_text=clean(_without_view_link(text_as_written).split("\n-- \n", 1)[0]),
    )
