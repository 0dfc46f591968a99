"""The archive's pages and feed, from published issues: the same bytes whether ``serve``
answers them or ``archive export`` writes them.

Every link between archive pages is relative (``ID/``, ``../``, ``../web.css``,
``feed.atom``), so the pages work at ``/archive/`` under ``serve`` and in any folder of
the think-tank's website. Canonical links and ``og:url`` need an absolute address: the
``base`` handed in (``archive export --base-url``, or ``[newsletter] public_url`` +
``/archive/``); without one they are left out.

The feed is Atom 1.0 (RFC 4287), written with the standard library's ElementTree in a
fixed order, so an export is byte-for-byte the same each time. Entry ids are tag URIs
(RFC 4151) on the request address's domain: they stay the same when the site moves.
"""

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from digest_mailer.archive.paths import archive_slug
from digest_mailer.archive.render import PublicIssue, shorten
from digest_mailer.composer import render_template, template_environment
from digest_mailer.config import Config

ATOM = "http://www.w3.org/2005/Atom"
INDEX_HEADLINES = 3  # headlines shown per issue on the index page
TAG_YEAR = 2026  # the date in tag: URIs (RFC 4151): when this archive's ids were minted
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # the feed's updated time with no issue in it


def _stamp(when: datetime | None) -> str:
    when = when or EPOCH
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# characters XML 1.0 cannot hold (a draft's stray control character would break the feed)
_NOT_XML = dict.fromkeys(
    [*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0xFFFE, 0xFFFF, *range(0xD800, 0xE000)]
)


def _xml_text(text: str | None) -> str | None:
    return text.translate(_NOT_XML) if text else text


@dataclass
class _Link:
    href: str
    title: str
    meta: str
    headlines: list[str]


def _meta(issue: PublicIssue) -> str:
    parts = [f"Vol {issue.volume}" if issue.volume else "", issue.issue_date]
    return " · ".join(p for p in parts if p)


class ArchiveSite:
    """Renders the index, each issue's page and the feed for ``issues`` (newest first)."""

    def __init__(self, config: Config, base: str = "") -> None:
        self.config = config
        self.base = base.rstrip("/") + "/" if base else ""
        self.env = template_environment(config)
        nl = config.newsletter
        self.subscribe_href = f"{nl.public_url.rstrip('/')}/subscribe" if nl.public_url else ""
        self.domain = (nl.request_address.rpartition("@")[2] or "localhost").lower()

    def _values(self, **context: Any) -> dict[str, Any]:
        nl = self.config.newsletter
        return {
            "newsletter": nl.title,
            "request_address": nl.request_address,
            "language": nl.language,
            "subscribe_href": self.subscribe_href,
            **context,
        }

    def index_page(self, issues: list[PublicIssue]) -> str:
        links = [
            _Link(f"{archive_slug(i.issue_id)}/", i.title, _meta(i), i.headlines[:INDEX_HEADLINES])
            for i in issues
        ]
        nl = self.config.newsletter
        description = shorten(
            f"Past issues of {nl.title}" + (f": {issues[0].title}" if issues else "")
        )
        return render_template(
            self.env,
            "web/archive_index.html.j2",
            self._values(
                issues=links,
                description=description,
                canonical=self.base,
                feed_href="feed.atom",
                stylesheet="web.css",
            ),
        )

    def issue_page(self, issues: list[PublicIssue], position: int) -> str:
        issue = issues[position]

        def link(other: PublicIssue) -> _Link:
            return _Link(f"../{archive_slug(other.issue_id)}/", other.title, _meta(other), [])

        newer = link(issues[position - 1]) if position > 0 else None
        older = link(issues[position + 1]) if position + 1 < len(issues) else None
        view = {
            "title": issue.title,
            "meta": _meta(issue),
            "description": issue.description,
            "body_html": issue.body_html,
        }
        canonical = f"{self.base}{archive_slug(issue.issue_id)}/" if self.base else ""
        return render_template(
            self.env,
            "web/archive_issue.html.j2",
            self._values(
                issue=view,
                newer=newer,
                older=older,
                canonical=canonical,
                index_href="../",
                feed_href="../feed.atom",
                stylesheet="../web.css",
            ),
        )

    def feed(self, issues: list[PublicIssue], xml_base: str = "") -> bytes:
        """Atom 1.0. ``xml_base``: what relative links resolve against (the archive's
        address); default the absolute base, else links are relative to the feed."""
        nl = self.config.newsletter
        feed = ET.Element("feed", {"xmlns": ATOM, "xml:lang": nl.language})
        base = xml_base or self.base
        if base:
            feed.set("xml:base", base)
        ET.SubElement(feed, "id").text = f"tag:{self.domain},{TAG_YEAR}:archive"
        ET.SubElement(feed, "title").text = nl.title
        updated = max((i.updated_at or i.issued_at or EPOCH for i in issues), default=EPOCH)
        ET.SubElement(feed, "updated").text = _stamp(updated)
        author = ET.SubElement(feed, "author")
        ET.SubElement(author, "name").text = nl.from_name or nl.title
        ET.SubElement(feed, "link", {"rel": "alternate", "type": "text/html", "href": "./"})
        ET.SubElement(feed, "link", {"rel": "self", "href": "feed.atom"})
        ET.SubElement(feed, "generator").text = "digest-mailer"
        for issue in issues:
            entry = ET.SubElement(feed, "entry")
            ET.SubElement(entry, "id").text = f"tag:{self.domain},{TAG_YEAR}:issue:{issue.issue_id}"
            title = issue.title + (f" ({_meta(issue)})" if _meta(issue) else "")
            ET.SubElement(entry, "title").text = title
            ET.SubElement(entry, "published").text = _stamp(issue.issued_at)
            ET.SubElement(entry, "updated").text = _stamp(issue.updated_at or issue.issued_at)
            href = f"{archive_slug(issue.issue_id)}/"
            ET.SubElement(entry, "link", {"rel": "alternate", "type": "text/html", "href": href})
            summary = "; ".join(issue.headlines) or issue.description
            ET.SubElement(entry, "summary").text = summary
            ET.SubElement(entry, "content", {"type": "html"}).text = issue.body_html
        for node in feed.iter():
            node.text = _xml_text(node.text)
        ET.indent(feed)
        body = ET.tostring(feed, "utf-8", xml_declaration=False)
        return b'<?xml version="1.0" encoding="utf-8"?>\n' + body + b"\n"
